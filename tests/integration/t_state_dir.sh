#!/bin/bash
# The state directory is ready before anything else starts: created with its
# missing parents (mode 0750) when missing; one that cannot be created or
# written is refused at start (exit 1, one line naming it, nothing
# registered); -state-dir "" turns persistence off, said once.
. "$(dirname "$0")/lib.sh"
start_consul || finish
printf '{"consul": {"address": "127.0.0.1:%s"}, "service": {"name": "web", "port": 80}}\n' "$CONSUL_PORT" > "$T/svc.json"
run_once() { # STATE_DIR -> output and status of a sidecar that must not start
    out=$(timeout 20 "$BIN/consul-sidecar" -config "$T/svc.json" -consul-addr "127.0.0.1:$CONSUL_PORT" \
          -listen 127.0.0.1:0 -state-dir "$1" 2>&1); rc=$?
}

# Cannot be created: a file where a parent directory should be.
touch "$T/a-file"
run_once "$T/a-file/state"
expect_eq "a parent that is a file: exit status" 1 "$rc"
expect_contains "the directory and the reason named" "state directory '$T/a-file/state': cannot create it: Not a directory" "$out"
expect_eq "one line" 1 "$(printf '%s\n' "$out" | grep -c .)"
# Cannot be written: /proc refuses new files even to root; a directory
# without write permission does for anyone else.
if [ "$(id -u)" = 0 ]; then ro=/proc; else mkdir "$T/ro" && chmod 500 "$T/ro"; ro=$T/ro; fi
run_once "$ro"
expect_eq "an unwritable directory: exit status" 1 "$rc"
expect_contains "the directory and the reason named" "state directory '$ro': cannot write in it:" "$out"
expect_eq "one line" 1 "$(printf '%s\n' "$out" | grep -c .)"
expect_eq "nothing was registered" "{}" "$(curl -s "$CONSUL/v1/agent/services")"

# Missing: created, parents too, mode 0750; the sidecar runs and registers.
start_sidecar made "$T/svc.json" -state-dir "$T/new/deeper/state" || finish
wait_for 10 "web registered" sh -c "curl -s $CONSUL/v1/agent/services | grep -q '\"web\"'"
expect_eq "created with mode 0750" 750 "$(stat -c %a "$T/new/deeper/state")"
expect_eq "its parents too" 750 "$(stat -c %a "$T/new/deeper")"
expect_eq "no write-test file left" 0 "$(find "$T/new/deeper/state" -name '.write-test*' | wc -l)"
stop_pid "$SIDECAR_PID" TERM

# "": persistence off, said once, and the sidecar runs.
start_sidecar off "$T/svc.json" -state-dir "" || finish
wait_for 10 "off: running" log_has off "Status endpoint listening"
expect_eq "persistence off, said once" 1 "$(grep -c 'State directory: none' "$T/off.log")"
finish
