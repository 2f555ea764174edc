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
finish
