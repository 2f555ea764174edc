#!/bin/bash
# Under systemd: make install puts the binary, the man page and the unit
# where Debian expects them (DESTDIR honoured, ExecStart following PREFIX);
# systemd-analyze verifies the unit and rates its exposure at most 4.0
# ("OK"); and the sidecar speaks Type=notify: READY=1 once its service is
# registered and its upstream synced, RELOADING=1 then READY=1 on SIGHUP,
# STOPPING=1 on SIGTERM.
. "$(dirname "$0")/lib.sh"
command -v systemd-analyze >/dev/null || { fail "systemd-analyze not installed (make deps installs systemd)"; finish; }

make -s -C "$ROOT" install DESTDIR="$T/root" PREFIX=/usr > "$T/install.log" 2>&1 || fail "make install: $(cat "$T/install.log")"
for f in usr/bin/consul-sidecar usr/share/man/man1/consul-sidecar.1 lib/systemd/system/consul-sidecar.service; do
    [ -f "$T/root/$f" ] && ok || fail "make install did not put /$f in DESTDIR"
done
unit=$T/root/lib/systemd/system/consul-sidecar.service
expect_contains "ExecStart follows PREFIX" "ExecStart=/usr/bin/consul-sidecar " "$(cat "$unit")"
# verify checks that ExecStart exists and that man:consul-sidecar(1) opens:
# point both at DESTDIR.
mkdir -p "$T/v"
sed "s|ExecStart=/usr/bin/|ExecStart=$T/root/usr/bin/|" "$unit" > "$T/v/consul-sidecar.service"
out=$(MANPATH="$T/root/usr/share/man" systemd-analyze verify "$T/v/consul-sidecar.service" 2>&1); rc=$?
expect_eq "systemd-analyze verify: exit status ($out)" 0 "$rc"
expect_eq "systemd-analyze verify: nothing to say" "" "$out"
out=$(systemd-analyze security --offline=yes --threshold=40 "$T/v/consul-sidecar.service" 2>&1); rc=$?
expect_eq "systemd-analyze security: at most 4.0" 0 "$rc"
level=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for consul-sidecar.service: \([0-9.]*\) \([A-Z]*\).*/\1 \2/p')
expect_contains "exposure rated OK or better ($level)" "OK" "$level"
awk -v l="${level%% *}" 'BEGIN { exit !(l != "" && l <= 4.0) }' && ok || fail "exposure $level is over 4.0"

# Type=notify, with a socket standing in for systemd's.
start_consul || finish
start_kong || finish
kong_services 1
cat > "$T/sidecar.json" <<JSON
{"consul": {"address": "127.0.0.1:$CONSUL_PORT"}, "node": "kong-1", "drain": "0s",
 "service": {"name": "web", "port": 80},
 "upstreams": [$UPS],
 "proxy": {"kong": {"admin_url": "$KONG", "writer": "per-node"}},
 "watch": {"quiescence": {"min": "0s", "max": "0s"}}}
JSON
start_bg sink "$BIN/notifysink" "$T/notify.sock"
wait_for 10 "the notify socket" test -S "$T/notify.sock" || finish
NOTIFY_SOCKET="$T/notify.sock" start_sidecar sidecar "$T/sidecar.json" || finish
wait_for 20 "READY=1" grep -q 'READY=1' "$T/sink.log" || finish
# Nothing is undone in between: what READY promised holds when it is read.
expect_contains "registered when ready" '"web"' "$(curl -s "$CONSUL/v1/agent/services")"
expect_eq "synced when ready" "127.0.0.1:9001=1" "$(kong_targets s1)"
expect_contains "the status line" "READY=1|STATUS=1 service(s) registered, 1 upstream(s) synced" "$(cat "$T/sink.log")"
kill -HUP "$SIDECAR_PID"
ready_twice() { [ "$(grep -c '^READY=1$' "$T/sink.log")" -ge 1 ]; }
wait_for 10 "READY=1 after the reload" ready_twice || finish
expect_eq "RELOADING=1 then READY=1" "RELOADING=1 READY=1" "$(grep -o '^RELOADING=1$\|^READY=1$' "$T/sink.log" | tr '\n' ' ' | sed 's/ $//')"
stop_pid "$SIDECAR_PID" TERM
wait_for 5 "STOPPING=1" grep -q '^STOPPING=1$' "$T/sink.log"
expect_eq "ready told once at start" 1 "$(grep -c 'STATUS=' "$T/sink.log")"
finish
