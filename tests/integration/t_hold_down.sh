#!/bin/bash
# Emptying an upstream needs Consul's positive, stable word: every instance
# critical is held for hold_down and only then applied (real HAProxy); an
# agent that goes away during the hold breaks the confirmation, so the
# upstream is not emptied on the strength of the answer from before the
# outage; the hold starts again once Consul answers.
. "$(dirname "$0")/lib.sh"
start_consul || finish
for b in a b; do start_backend "orders-$b" || finish; eval "PORT_$b=$BACKEND_PORT"; done
register_instance node-1 orders-a orders "$PORT_a"
register_instance node-1 orders-b orders "$PORT_b"
start_haproxy || finish
cat > "$T/sidecar.json" <<JSON
{"consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "30s"}, "node": "node-1", "drain": "0s",
 "upstreams": [{"service": "orders", "proxy": "haproxy"}],
 "proxy": {"haproxy": {"runtime": "unix://$HAPROXY_SOCK", "backend_prefix": "be_"}},
 "watch": {"wait": "5s", "quiescence": {"min": "0s", "max": "0s"}, "hold_down": "2s"}}
JSON
hap_servers() { haproxy_cmd "show servers state be_orders" | awk '$4 ~ /^cs-/ { print $4 }' | sort | tr '\n' ' ' | sed 's/ $//'; }
ms() { echo $(( $(date +%s%N) / 1000000 )); }
start_sidecar sidecar "$T/sidecar.json" || finish
wait_for 10 "serving both" serves_exactly "$FRONT" "orders-a orders-b"
# One instance critical: removed at once (the other still serves).
set_check node-1 orders-a-ttl fail
wait_for 10 "critical instance removed" serves_exactly "$FRONT" "orders-b"
both=$(hap_servers)
# The last one critical too: held, not applied at once.
set_check node-1 orders-b-ttl fail
wait_for 5 "hold announced" log_has sidecar "keeping 1 target(s) for the hold-down period"
# The agent goes away during the hold, for longer than hold_down.
curl -s -X POST "$CONTROL/agents/node-1/down" >/dev/null
wait_for 10 "outage seen" log_has sidecar "keeping the last known good targets"
sleep 3   # past hold_down while Consul cannot confirm: nothing may change
expect_eq "not emptied while Consul is away" "$both" "$(hap_servers)"
expect_eq "still routing" "orders-b" "$(served_by "$FRONT" 6)"
# Consul answers again, still with no healthy instance: a new hold, then empty.
t_up=$(ms)
curl -s -X POST "$CONTROL/agents/node-1/up" >/dev/null
backend_empty() { [ -z "$(hap_servers)" ]; }
wait_for 15 "emptied after a fresh hold" backend_empty
held=$(( $(ms) - t_up ))
[ "$held" -ge 1900 ] && ok || fail "emptied ${held} ms after Consul came back, before a full hold_down (2000 ms)"
# One instance passes again: back at once.
set_check node-1 orders-b-ttl pass
wait_for 10 "recovered instance routed" serves_exactly "$FRONT" "orders-b"

# A replacement HAProxy cannot take (a host name) arrives in the same answer
# as the removal of the old instance (the sidecar was down meanwhile): the
# add fails, so the old server stays rather than leaving the backend empty.
stop_pid "$SIDECAR_PID" KILL
curl -sf -X PUT "$(agent_url node-1)/v1/agent/service/register" -d "{\"ID\":\"orders-h\",\"Name\":\"orders\",\"Address\":\"localhost\",\"Port\":$PORT_a,\"Check\":{\"CheckID\":\"orders-h-ttl\",\"TTL\":\"10m\",\"Status\":\"passing\"}}" >/dev/null
deregister_instance node-1 orders-b
start_sidecar sidecar2 "$T/sidecar.json" || finish
wait_for 10 "the add refused" log_has sidecar2 "host names are not supported"
expect_eq "old server kept" "cs-127.0.0.1:$PORT_b" "$(hap_servers)"
expect_eq "still routing to it" "orders-b" "$(served_by "$FRONT" 6)"
finish
