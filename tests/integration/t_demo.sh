#!/bin/bash
# `make demo` is the README's first command: the scripted story must pass
# with HAProxy gateways and with Kong gateways, and leave nothing running.
. "$(dirname "$0")/lib.sh"
for proxy in haproxy kong; do
    DEMO_DIR=$T/demo-$proxy PROXY=$proxy timeout 300 bash "$ROOT/demo/demo.sh" run > "$T/demo-$proxy.log" 2>&1
    rc=$?
    expect_eq "demo ($proxy) exit status" 0 "$rc"
    expect_contains "demo ($proxy) summary" "Summary" "$(cat "$T/demo-$proxy.log")"
    expect_not_contains "demo ($proxy) no failed step" "FAILED" "$(cat "$T/demo-$proxy.log")"
    expect_eq "demo ($proxy) stopped everything it started" no "$([ -f "$T/demo-$proxy/pids" ] && echo yes || echo no)"
done
# demo-up leaves everything running; demo-down stops exactly that.
DEMO_DIR=$T/demo-up timeout 300 bash "$ROOT/demo/demo.sh" up > "$T/demo-up.log" 2>&1
expect_eq "demo up exit status" 0 "$?"
pids=$(awk '{print $1}' "$T/demo-up/pids")
alive=0; for p in $pids; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
expect_eq "everything still running after demo-up" "$(echo $pids | wc -w)" "$alive"
expect_contains "instructions printed" "make demo-down" "$(cat "$T/demo-up.log")"
DEMO_DIR=$T/demo-up bash "$ROOT/demo/demo.sh" down > "$T/demo-down.log" 2>&1
# Orphans nobody has reaped yet show as zombies: they are gone.
alive=0; for p in $pids; do
    st=$(ps -o stat= -p "$p" 2>/dev/null | tr -d ' ')
    [ -n "$st" ] && [ "${st#Z}" = "$st" ] && alive=$((alive + 1))
done
expect_eq "nothing left after demo-down" 0 "$alive"
finish
