#!/bin/bash
# Catalog -> HAProxy, with real traffic through a real HAProxy: instances
# added receive traffic, critical or warning ones stop receiving it, Consul
# down or answering garbage changes nothing, a restarted HAProxy gets its
# servers back, a sidecar restarted while Consul is down restores the proxy
# from its state file, and the hand-made server is never touched.
. "$(dirname "$0")/lib.sh"
start_consul || finish
for b in orders-1 orders-2 orders-3; do start_backend $b || finish; eval "PORT_${b#orders-}=$BACKEND_PORT"; done
register_instance node-1 orders-1 orders "$PORT_1"
register_instance node-1 orders-2 orders "$PORT_2"
start_haproxy || finish
cat > "$T/sidecar.json" <<JSON
{
  "consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "1s"},
  "drain": "0s",
  "upstreams": [{"service": "orders", "name": "orders", "proxy": "haproxy"}],
  "proxy": {"haproxy": {"runtime": "unix://$HAPROXY_SOCK", "backend_prefix": "be_"}},
  "watch": {"wait": "30s", "quiescence": {"min": "50ms", "max": "200ms"}, "hold_down": "2s"}
}
JSON
start_sidecar sidecar "$T/sidecar.json" || finish
wait_for 10 "two instances serve" serves_exactly "$FRONT" "orders-1 orders-2"

register_instance node-1 orders-3 orders "$PORT_3"
wait_for 5 "added instance receives traffic" serves_exactly "$FRONT" "orders-1 orders-2 orders-3"

set_check node-1 orders-2-ttl fail
wait_for 5 "critical instance removed" serves_exactly "$FRONT" "orders-1 orders-3"
set_check node-1 orders-3-ttl warn
wait_for 5 "warning instance removed (passing_only)" serves_exactly "$FRONT" "orders-1"
set_check node-1 orders-3-ttl pass
set_check node-1 orders-2-ttl pass
wait_for 5 "instances back" serves_exactly "$FRONT" "orders-1 orders-2 orders-3"

# Consul answers garbage, then 500s: nothing changes.
curl -s -X POST "$CONTROL/faults" -d '{"path":"/v1/health/service","count":3,"kind":"garbage"}' >/dev/null
curl -s -X POST "$CONTROL/faults" -d '{"path":"/v1/health/service","count":3,"kind":"status","status":500,"body":"No cluster leader"}' >/dev/null
deregister_instance node-1 orders-3   # wakes the watch into the faults
for i in 1 2 3 4; do
    serves=$(served_by "$FRONT" 9)
    case "$serves" in *orders-1*orders-2*) ok ;; *) fail "faulty Consul answers changed traffic: $serves" ;; esac
done
wait_for 10 "real change applied once Consul answers again" serves_exactly "$FRONT" "orders-1 orders-2"

# Consul down for a while: traffic unchanged, sidecar alive.
curl -s -X POST "$CONTROL/agents/node-1/down" >/dev/null
for i in 1 2 3; do
    expect_eq "traffic while Consul is down ($i)" "orders-1 orders-2" "$(served_by "$FRONT" 8)"
    sleep 0.5  # observing that nothing changes over time
done
kill -0 "$SIDECAR_PID" && ok || fail "sidecar exited while Consul was down"
curl -s -X POST "$CONTROL/agents/node-1/up" >/dev/null

# HAProxy restarted: dynamic servers are lost; the periodic read-back restores them.
stop_pid "$HAPROXY_PID" TERM
start_bg haproxy2 haproxy -db -f "$T/haproxy.cfg"; HAPROXY_PID=$LAST_PID
wait_for 15 "servers re-added after HAProxy restart" serves_exactly "$FRONT" "orders-1 orders-2"

# Sidecar killed, HAProxy restarted and Consul down: restored from state.
stop_pid "$SIDECAR_PID" KILL
curl -s -X POST "$CONTROL/agents/node-1/down" >/dev/null
stop_pid "$HAPROXY_PID" TERM
start_bg haproxy3 haproxy -db -f "$T/haproxy.cfg"; HAPROXY_PID=$LAST_PID
wait_for 10 "haproxy socket back" test -S "$HAPROXY_SOCK"
start_sidecar sidecar2 "$T/sidecar.json" -state-dir "$T/state-sidecar" || finish
wait_for 10 "restored from state while Consul is down" serves_exactly "$FRONT" "orders-1 orders-2"
expect_contains "restore logged" "restoring 2 saved target(s)" "$(cat "$T/sidecar2.log")"

state=$(haproxy_cmd "show servers state be_orders")
expect_contains "hand-made server untouched" " manual " "$state"
finish
