#!/bin/bash
# Consul's per-client connection limit (README "Guarantees" 8): past it the
# agent resets or closes new connections at once (older agents: the client
# sees a reset or an empty reply) or answers 429. The sidecar, whose watches, cluster view and
# registrar all need connections, logs it ONCE for the client (not once per
# watch), backs off, keeps its targets, and logs once more when a new
# connection is accepted again; then every upstream catches up.
. "$(dirname "$0")/lib.sh"
start_consul --agent node-1 --agent apps || finish
start_kong || finish
for s in orders billing users; do register_instance apps "$s-1" "$s" 9001; done
cat > "$T/sidecar.json" <<JSON
{"consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "1s"}, "node": "node-1", "drain": "0s",
 "service": {"name": "gw", "id": "gw-1", "port": 8000},
 "upstreams": [{"service": "orders", "proxy": "kong"}, {"service": "billing", "proxy": "kong"},
               {"service": "users", "proxy": "kong"}],
 "proxy": {"kong": {"admin_url": "$KONG", "writer": "per-node"}},
 "watch": {"wait": "2s", "quiescence": {"min": "0s", "max": "0s"}}}
JSON
refused() { curl -s "$CONTROL/state" | grep -o '"name":"node-1"[^]]*"refused_conns":[0-9]*' | grep -o '[0-9]*$'; }
many_refused() { [ "$(refused)" -ge "$1" ]; }
all_synced() {
    kong_targets_are orders "127.0.0.1:$1=1" && kong_targets_are billing "127.0.0.1:$1=1" &&
        kong_targets_are users "127.0.0.1:$1=1"
}

# mode PORT: one run against an agent limiting to 2 connections.
run_mode() {
    _mode=$1 _port=$2
    LIMIT_LINE="Consul is limiting connections from this address"
    curl -s -X POST "$CONTROL/agents/node-1/limit" -d "{\"max_conns\":2,\"mode\":\"$_mode\"}" >/dev/null
    start_sidecar "sidecar-$_mode" "$T/sidecar.json" || finish
    _log=$T/sidecar-$_mode.log
    # Three upstream long-polls, the cluster view's and the registrar need
    # more than 2 connections: requests of every module are refused, for as
    # long as the limit stays.
    wait_for 30 "$_mode: the limit logged" log_has "sidecar-$_mode" "$LIMIT_LINE"
    _at_line=$(refused)
    wait_for 30 "$_mode: still limited" many_refused $((_at_line + 10))
    expect_eq "$_mode: the limit logged once for the client" 1 "$(count_lines "$_log" "$LIMIT_LINE")"
    expect_eq "$_mode: no per-watch error lines" 0 "$(grep -vF "$LIMIT_LINE" "$_log" | grep -cE "Upstream '[a-z]+': GET |Empty reply|reset by peer|[: ]429[ )]")"
    expect_not_contains "$_mode: not taken for the agent being down" "Consul agent unreachable" "$(cat "$_log")"
    # Lifted: a new connection is accepted, one line says so, all catch up.
    curl -s -X POST "$CONTROL/agents/node-1/limit" -d '{"max_conns":0}' >/dev/null
    for s in orders billing users; do register_instance apps "$s-1" "$s" "$_port"; done
    wait_for 40 "$_mode: every upstream synced after the limit" all_synced "$_port"
    wait_for 40 "$_mode: recovery logged" log_has "sidecar-$_mode" "accepts our connections again"
    expect_eq "$_mode: still one limit line" 1 "$(count_lines "$_log" "$LIMIT_LINE")"
    expect_eq "$_mode: one recovery line" 1 "$(count_lines "$_log" "accepts our connections again")"
    stop_pid "$SIDECAR_PID" TERM
}
run_mode reset 9002
grep -q "$LIMIT_LINE (.* closed a new connection at once: .*Connection reset by peer)" "$T/sidecar-reset.log" && ok ||
    fail "reset: the line does not say the new connection was reset"
run_mode close 9003
grep -q "$LIMIT_LINE (.* closed a new connection at once: " "$T/sidecar-close.log" && ok ||
    fail "close: the line does not say the new connection was closed"
run_mode 429 9004
grep -q "$LIMIT_LINE (HTTP 429 from" "$T/sidecar-429.log" && ok || fail "429: the line does not name the 429"
finish
