#!/bin/bash
# Catalog -> HAProxy, with real traffic through a real HAProxy: instances
# added receive traffic, critical or warning ones stop receiving it, Consul
# down or answering garbage changes nothing, a restarted HAProxy gets its
# servers back, a sidecar restarted while Consul is down restores the proxy
# from its state file, and the hand-made server is never touched. On a
# second backend (be_slow, warning instances kept): a warning instance is
# re-weighted to its Weights.Warning, and a removed server's sessions in
# flight finish before it is deleted (bounded by drain_timeout), without
# holding back the changes that follow.
. "$(dirname "$0")/lib.sh"

# be_slow's frontend listens on a unix socket: no port to pick.
SLOW_SOCK=$T/slow-front.sock
HAPROXY_EXTRA="frontend fe_slow
    bind unix@$SLOW_SOCK
    default_backend be_slow
backend be_slow
    balance roundrobin"
# slow_get PATH: one request through fe_slow, printed as "CODE BODY".
slow_get() { curl -s --max-time 20 -w ' %{http_code}' --unix-socket "$SLOW_SOCK" "http://slow$1" | tr -d '\n'; }
slow_serves_only() { [ "$(for i in 1 2 3 4 5 6; do slow_get /; echo; done | sort -u | tr -d '\n')" = "$1 200" ]; }
# server_field BACKEND SERVER COLUMN: one column of show servers state
# (8 = srv_uweight, 7 = srv_admin_state); empty when the server is absent.
server_field() { haproxy_cmd "show servers state $1" | awk -v s="$2" -v c="$3" '$4 == s { print $c }'; }
server_weight_is() { [ "$(server_field "$1" "$2" 8)" = "$3" ]; }
server_absent() { [ -z "$(server_field "$1" "$2" 4)" ]; }
# server_draining / server_ready BACKEND SERVER: forced drain (admin 0x08) / admin state 0.
server_draining() { _a=$(server_field "$1" "$2" 7); [ -n "$_a" ] && [ $(( _a & 8 )) -eq 8 ]; }
server_ready() { [ "$(server_field "$1" "$2" 7)" = 0 ]; }
# server_sessions BACKEND SERVER: its scur in show stat.
server_sessions() { haproxy_cmd "show stat $1 4 -1" | awk -F, -v s="$2" '$2 == s { print $5 }'; }
server_busy() { [ "$(server_sessions "$1" "$2")" -gt 0 ] 2>/dev/null; }
# answered FILE: a slow request's output is complete (its status code written last).
answered() { grep -q ' [0-9][0-9][0-9]$' "$1" 2>/dev/null; }
# register_weighted AGENT ID SERVICE PORT PASSING WARNING
register_weighted() {
    curl -sf -X PUT "$(agent_url "$1")/v1/agent/service/register" \
        -d "{\"ID\":\"$2\",\"Name\":\"$3\",\"Address\":\"127.0.0.1\",\"Port\":$4,\"Weights\":{\"Passing\":$5,\"Warning\":$6},\"Check\":{\"CheckID\":\"$2-ttl\",\"TTL\":\"10m\",\"Status\":\"passing\"}}" >/dev/null
}
start_consul || finish
for b in orders-1 orders-2 orders-3; do start_backend $b || finish; eval "PORT_${b#orders-}=$BACKEND_PORT"; done
register_instance node-1 orders-1 orders "$PORT_1"
register_instance node-1 orders-2 orders "$PORT_2"
start_haproxy || finish
cat > "$T/sidecar.json" <<JSON
{
  "consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "1s"},
  "drain": "0s",
  "upstreams": [{"service": "orders", "name": "orders", "proxy": "haproxy"},
                {"service": "slow", "name": "slow", "proxy": "haproxy", "passing_only": false}],
  "proxy": {"haproxy": {"runtime": "unix://$HAPROXY_SOCK", "backend_prefix": "be_",
                        "drain_timeout": "6s"}},
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

# ---- be_slow: weights and draining ----
curl -s -X POST "$CONTROL/agents/node-1/up" >/dev/null
for b in slow-1 slow-2; do start_backend $b || finish; eval "SPORT_${b#slow-}=$BACKEND_PORT"; done
S1=cs-127.0.0.1:$SPORT_1; S2=cs-127.0.0.1:$SPORT_2
register_weighted node-1 slow-1 slow "$SPORT_1" 10 3
wait_for 10 "slow-1 serves through be_slow" slow_serves_only slow-1
expect_eq "passing weight is Weights.Passing" 10 "$(server_field be_slow "$S1" 8)"
set_check node-1 slow-1-ttl warn
wait_for 5 "warning instance re-weighted to Weights.Warning (set server weight)" server_weight_is be_slow "$S1" 3
expect_eq "still serving while warning" "slow-1 200" "$(slow_get /)"
set_check node-1 slow-1-ttl pass
wait_for 5 "back to Weights.Passing" server_weight_is be_slow "$S1" 10

# A long request in flight through a server being removed completes; the
# server is deleted once it has, not before; a change meanwhile is not held
# back by the drain.
start_bg long1 bash -c "curl -s --max-time 20 -w ' %{http_code}' --unix-socket '$SLOW_SOCK' http://slow/_backend/slow/4000 > '$T/long1.out'"
LONG1=$LAST_PID
wait_for 5 "the long request is in flight on slow-1" server_busy be_slow "$S1"
register_weighted node-1 slow-2 slow "$SPORT_2" 10 3
deregister_instance node-1 slow-1
wait_for 5 "new requests go to slow-2 only" slow_serves_only slow-2
if kill -0 "$LONG1" 2>/dev/null; then
    server_draining be_slow "$S1" && ok || fail "removed server not kept, draining, while its session runs"
else
    fail "the long request ended before the removal could be observed"
fi
set_check node-1 slow-2-ttl warn
wait_for 3 "a change during the drain applied" server_weight_is be_slow "$S2" 3
kill -0 "$LONG1" 2>/dev/null && ok || fail "the weight change waited for the drain to end"
set_check node-1 slow-2-ttl pass
wait_for 3 "and back" server_weight_is be_slow "$S2" 10
wait_for 10 "long request finished" answered "$T/long1.out"
expect_eq "the long request through the removed server completed" "slow-1 200" "$(tr -d '\n' < "$T/long1.out")"
wait_for 5 "removed server deleted after its session ended" server_absent be_slow "$S1"

# A session longer than drain_timeout (6s) is not waited for beyond it.
start_bg long2 bash -c "curl -s --max-time 20 -w ' %{http_code}' --unix-socket '$SLOW_SOCK' http://slow/_backend/slow/15000 > '$T/long2.out'"
wait_for 5 "the long request is in flight on slow-2" server_busy be_slow "$S2"
register_weighted node-1 slow-1 slow "$SPORT_1" 10 3
t0=$(date +%s%N)
deregister_instance node-1 slow-2
wait_for 14 "server deleted once drain_timeout passed" server_absent be_slow "$S2"
el=$(( ($(date +%s%N) - t0) / 1000000 ))
if [ "$el" -ge 5800 ] && [ "$el" -le 11000 ]; then ok; else
    fail "server with a 15 s session deleted after ${el} ms (drain_timeout 6s)"; fi
wait_for 5 "the cut request returned" answered "$T/long2.out"
expect_not_contains "the session beyond drain_timeout was cut" "slow-2 200" "$(tr -d '\n' < "$T/long2.out")"
expect_eq "slow-1 serves again" "slow-1 200" "$(slow_get /)"

# An instance back while its server drains: the pending removal is
# dropped, the server serves again and stays once its session has ended.
start_bg long3 bash -c "curl -s --max-time 20 -w ' %{http_code}' --unix-socket '$SLOW_SOCK' http://slow/_backend/slow/3000 > '$T/long3.out'"
wait_for 5 "the long request is in flight on slow-1" server_busy be_slow "$S1"
register_weighted node-1 slow-2 slow "$SPORT_2" 10 3
wait_for 5 "slow-2 back" server_weight_is be_slow "$S2" 10
deregister_instance node-1 slow-1
wait_for 5 "slow-1 draining" server_draining be_slow "$S1"
register_weighted node-1 slow-1 slow "$SPORT_1" 10 3
wait_for 5 "slow-1 serving again" server_ready be_slow "$S1"
wait_for 10 "its long request finished" answered "$T/long3.out"
expect_eq "the long request completed" "slow-1 200" "$(tr -d '\n' < "$T/long3.out")"
sleep 1   # past the next looks at sessions: measuring that no delete follows
server_ready be_slow "$S1" && ok || fail "the server added back was deleted or parked after its session"
expect_eq "both serve" "slow-1 200slow-2 200" "$(for i in 1 2 3 4 5 6; do slow_get /; echo; done | sort -u | tr -d '\n')"
finish
