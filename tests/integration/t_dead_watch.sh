#!/bin/bash
# Dead watches beyond the upstreams' (README "Guarantees" 1): the cluster
# view's blocking query on /v1/catalog/nodes and the elected Kong writer's
# blocking read of its lock key. The agent accepts each and never answers
# (a delay fault on that path only); each is cancelled after wait + wait/16
# + 5 s and reissued, with one WARN line and a step of
# consul_sidecar_watch_restarts_total, and the sidecar carries on (the
# cluster view still logs events, the writer keeps its lock and writes).
. "$(dirname "$0")/lib.sh"
start_consul || finish
start_kong || finish
register_instance node-1 orders-1 orders 9001
cat > "$T/sidecar.json" <<JSON
{"consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "30s"}, "node": "node-1", "drain": "0s",
 "upstreams": [{"service": "orders", "proxy": "kong"}],
 "proxy": {"kong": {"admin_url": "$KONG", "writer": "elected"}},
 "watch": {"wait": "1s", "quiescence": {"min": "0s", "max": "0s"}}}
JSON
start_sidecar sidecar "$T/sidecar.json" || finish
wait_for 10 "writer lock acquired" log_has sidecar "acquired writer lock for 'kong'"
wait_for 10 "targets written" kong_targets_are orders "127.0.0.1:9001=1"

restarts() { # LABEL: the watch restart counter for LABEL, 0 when absent
    curl -s "$STATUS_URL/metrics" | grep -F "consul_sidecar_watch_restarts_total{upstream=\"$1\"} " |
        awk '{ v = $NF } END { print v + 0 }'
}
expect_eq "no cluster view restart yet" 0 "$(restarts "(cluster) catalog/nodes")"
expect_eq "no lock key restart yet" 0 "$(restarts "(writer lock) kong")"

# Both long-polls are already blocking (the first answers came): the next
# request on each path is accepted and left unanswered for 30 s.
for p in /v1/catalog/nodes /v1/kv/consul-sidecar/; do
    curl -s -X POST "$CONTROL/faults" -d "{\"path\":\"$p\",\"count\":1,\"kind\":\"delay\",\"delay_ms\":30000}" >/dev/null
done
t0=$(date +%s)
wait_for 15 "cluster view dead watch warned" log_has sidecar \
    "[WARN] sidecar: cluster view: blocking query on /v1/catalog/nodes did not return within"
wait_for 15 "lock key dead watch warned" log_has sidecar \
    "[WARN] sidecar: writer election for 'kong': blocking read of the lock key did not return in time, restarting"
took=$(( $(date +%s) - t0 ))
# wait 1 s (+5 % jitter) + 1/16 + 5 s margin, after at most one 1 s poll.
[ "$took" -ge 5 ] && ok || fail "a dead watch was given up after ${took} s, before wait + wait/16 + 5 s"
expect_eq "cluster view restart counted" 1 "$(restarts "(cluster) catalog/nodes")"
expect_eq "lock key restart counted" 1 "$(restarts "(writer lock) kong")"
expect_eq "one cluster view warning" 1 "$(count_lines "$T/sidecar.log" "cluster view: blocking query on /v1/catalog/nodes did not return")"
expect_eq "one lock key warning" 1 "$(count_lines "$T/sidecar.log" "blocking read of the lock key did not return")"
expect_eq "upstream watch untouched" 0 "$(restarts orders)"

# Reissued, both work again: a join is logged, the writer still writes.
curl -s -X POST "$CONTROL/agents" -d '{"name":"node-2"}' >/dev/null
wait_for 15 "cluster view follows joins after its restart" log_has sidecar "member 'node-2' joined"
register_instance node-1 orders-2 orders 9002
wait_for 10 "writer still writes" kong_targets_are orders "127.0.0.1:9001=1 127.0.0.1:9002=1"
expect_not_contains "lock kept" "lost writer lock" "$(cat "$T/sidecar.log")"
finish
