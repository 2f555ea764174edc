#!/bin/bash
# An agent restart's rejoin window (README "Guarantees" 7; consul-template
# and fabio emptied upstreams here): the sidecar's agent restarts (every
# connection dropped) and, for longer than hold_down, answers every health
# and catalog query with an empty list, X-Consul-KnownLeader: false, and no
# leader. Real HAProxy with two healthy instances registered through another
# agent: the backend is never emptied and traffic keeps reaching both during
# the window; after it nothing was applied, and a real change flows again.
. "$(dirname "$0")/lib.sh"
start_consul --agent node-1 --agent apps || finish
for b in a b; do start_backend "orders-$b" || finish; eval "PORT_$b=$BACKEND_PORT"; done
register_instance apps orders-a orders "$PORT_a"
register_instance apps orders-b orders "$PORT_b"
start_haproxy || finish
cat > "$T/sidecar.json" <<JSON
{"consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "30s"}, "node": "node-1", "drain": "0s",
 "service": {"name": "gateway", "id": "gw-1", "port": 8000},
 "upstreams": [{"service": "orders", "proxy": "haproxy"}],
 "proxy": {"haproxy": {"runtime": "unix://$HAPROXY_SOCK", "backend_prefix": "be_"}},
 "watch": {"wait": "2s", "quiescence": {"min": "0s", "max": "0s"}, "hold_down": "1s"}}
JSON
hap_servers() { haproxy_cmd "show servers state be_orders" | awk '$4 ~ /^cs-/ { print $4 }' | sort | tr '\n' ' ' | sed 's/ $//'; }
start_sidecar sidecar "$T/sidecar.json" || finish
wait_for 10 "serving both" serves_exactly "$FRONT" "orders-a orders-b"
wait_for 10 "leader known" log_has sidecar "New leader elected: 10.0.0.1:8300"
both=$(hap_servers)
applied=$(count_lines "$T/sidecar.log" "applying")

# The double answers empty for 5 s after the restart: five hold_downs.
curl -s -X POST "$CONTROL/agents/node-1/restart" -d '{"persist": true, "rejoin_ms": 5000}' >/dev/null
t_end=$(( $(date +%s%N) / 1000000 + 4500 ))
wait_for 4 "the empty answer without a leader reached the sidecar" \
    log_has sidecar "Consul answered no instances without a known leader; keeping 2 target(s)"
curl -s "$(agent_url node-1)/v1/health/service/orders" > "$T/rejoin-answer.json"
expect_eq "the agent is still rejoining (empty answer)" "[]" "$(cat "$T/rejoin-answer.json")"
samples=0
while [ $(( $(date +%s%N) / 1000000 )) -lt $t_end ]; do
    expect_eq "backend kept during the rejoin window" "$both" "$(hap_servers)"
    expect_eq "traffic reaches both instances during the rejoin window" "orders-a orders-b" "$(served_by "$FRONT" 6)"
    samples=$((samples + 1))
done
[ "$samples" -ge 3 ] && ok || fail "only $samples sample(s) taken during the rejoin window"
wait_for 10 "no leader seen while rejoining" log_has sidecar "[WARN] sidecar: No cluster leader"

# Rejoined: normal answers again (the leader comes back), nothing changed.
wait_for 15 "leader back after the rejoin" sh -c "[ \$(grep -c 'New leader elected: 10.0.0.1:8300' '$T/sidecar.log') -ge 2 ]"
curl -s "$(agent_url node-1)/v1/health/service/orders" | grep -q orders-a && ok || fail "the double still answers empty after the window"
expect_eq "nothing applied through the rejoin" "$applied" "$(count_lines "$T/sidecar.log" "applying")"
expect_eq "backend unchanged after the rejoin" "$both" "$(hap_servers)"
expect_eq "traffic unchanged after the rejoin" "orders-a orders-b" "$(served_by "$FRONT" 6)"
# And the watch follows real changes again.
set_check apps orders-a-ttl fail
wait_for 10 "a real change applied after the rejoin" serves_exactly "$FRONT" "orders-b"
finish
