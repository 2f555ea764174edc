#!/bin/bash
# The README's guarantees, each reproducing a failure users of registrator,
# consul-template, fabio or nginx-upsync met.
. "$(dirname "$0")/lib.sh"
start_consul || finish
start_kong || finish

# 5. Dangling registrations: marked services of this node that are no longer
#    configured are removed at start; unmarked ones and other nodes' stay.
reg() { curl -sf -X PUT "$CONSUL/v1/agent/service/register" -d "$1" >/dev/null; }
reg '{"Name":"old","ID":"old-1","Meta":{"managed-by":"consul-sidecar","sidecar-node":"node-1"}}'
reg '{"Name":"mine-elsewhere","Meta":{"managed-by":"consul-sidecar","sidecar-node":"node-9"}}'
reg '{"Name":"handmade","Port":1}'
cat > "$T/sidecar.json" <<JSON
{"consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "60s"}, "node": "node-1", "drain": "0s",
 "service": {"name": "gw", "id": "gw-1", "port": 8000,
   "check": {"CheckID": "gw-ttl", "ttl": "2s",
             "probe": {"tcp": "127.0.0.1:$(port_of "$T/kong.ports" admin)", "interval": "300ms"}}},
 "upstreams": [{"service": "orders", "proxy": "kong"}],
 "proxy": {"kong": {"admin_url": "$KONG", "writer": "per-node"}},
 "watch": {"wait": "2s", "quiescence": {"min": "3s", "max": "10s"}}}
JSON
start_sidecar sidecar "$T/sidecar.json" || finish
wait_for 10 "own service registered" catalog_has gw '"ID":"gw-1"'
wait_for 10 "dangling registration removed" sh -c "! curl -s $CONSUL/v1/agent/services | grep -q old-1"
svcs=$(curl -s "$CONSUL/v1/agent/services")
expect_contains "unmarked service untouched" '"handmade"' "$svcs"
expect_contains "other node's service untouched" '"mine-elsewhere"' "$svcs"

# 2. The first change after a quiet period is applied at once; the next one,
#    within quiescence.min, is coalesced.
register_instance node-1 o1 orders 9001
t0=$(date +%s%N)
wait_for 5 "first change applied" kong_targets_are orders "127.0.0.1:9001=1"
first_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$first_ms" -lt 2000 ] && ok || fail "first change took ${first_ms} ms with quiescence.min 3s"
register_instance node-1 o2 orders 9002
t0=$(date +%s%N)
wait_for 15 "second change applied" kong_targets_are orders "127.0.0.1:9001=1 127.0.0.1:9002=1"
second_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$second_ms" -ge 1500 ] && ok || fail "second change was not coalesced (${second_ms} ms)"

# 4. An agent that lost everything answers the next TTL update 404: the
#    service is re-registered after the splay (5 s at most), long before
#    the 60 s resync.
wait_for 10 "TTL check fed" sh -c "curl -s $CONSUL/v1/agent/checks | grep -q '\"gw-ttl\".*passing'"
curl -s -X POST -d '{"persist": false}' "$CONTROL/agents/node-1/restart" >/dev/null
wait_for 15 "re-registered after 404 Unknown check ID" catalog_has gw '"ID":"gw-1"'
expect_contains "logged" "Check 'gw-ttl' is unknown to the agent; re-registering service 'gw-1' in" "$(cat "$T/sidecar.log")"
register_instance node-1 o1 orders 9001
register_instance node-1 o2 orders 9002

# 8. 429 from the agent: backed off, logged once.
curl -s -X POST "$CONTROL/faults" -d '{"path":"/v1/health/service","count":4,"kind":"status","status":429,"body":"Your IP is issuing too many concurrent connections, please rate limit your calls"}' >/dev/null
register_instance node-1 o3 orders 9003     # wakes the watch into the faults
wait_for 30 "429 logged" log_has sidecar "Consul is limiting connections"
wait_for 30 "recovers after 429s" kong_targets_are orders "127.0.0.1:9001=1 127.0.0.1:9002=1 127.0.0.1:9003=1"
expect_eq "429 logged once" 1 "$(count_lines "$T/sidecar.log" "Consul is limiting connections")"

# 1. A silent dead watch: the agent accepts and never answers.
curl -s -X POST "$CONTROL/agents/node-1/hang" >/dev/null
wait_for 20 "dead watch restarted" log_has sidecar "blocking query on /v1/health/service/orders did not return within"
curl -s -X POST "$CONTROL/agents/node-1/up" >/dev/null
deregister_instance node-1 o3
wait_for 20 "changes flow again after the hang" kong_targets_are orders "127.0.0.1:9001=1 127.0.0.1:9002=1"
m=$(curl -s "$STATUS_URL/metrics" | grep '^consul_sidecar_watch_restarts_total{upstream="orders"}' | awk '{print $2}')
[ "${m:-0}" -ge 1 ] && ok || fail "watch restart metric not counted ($m)"
# 9. Index edge cases: backwards, non-numeric and zero indexes cause no busy loop.
curl -s -X POST "$CONTROL/faults" -d '{"path":"/v1/health/service","count":1000,"kind":"index","index":1}' >/dev/null
curl -s -X DELETE "$CONTROL/requests" >/dev/null
sleep 3   # measuring the request rate over a fixed window, index going back to 1
n=$(curl -s "$CONTROL/requests" | grep -o '"url":"/v1/health/service/orders' | wc -l)
[ "$n" -le 12 ] && ok || fail "backwards index: $n requests in 3 s (busy loop)"
wait_for 10 "reset logged" log_has sidecar "went backwards"
curl -s -X DELETE "$CONTROL/faults" >/dev/null
curl -s -X POST "$CONTROL/faults" -d '{"path":"/v1/health/service","count":1000,"kind":"index","index_raw":"abc"}' >/dev/null
curl -s -X DELETE "$CONTROL/requests" >/dev/null
sleep 3   # same window, a non-numeric index on every answer
n=$(curl -s "$CONTROL/requests" | grep -o '"url":"/v1/health/service/orders' | wc -l)
[ "$n" -le 12 ] && ok || fail "non-numeric index: $n requests in 3 s (busy loop)"
curl -s -X DELETE "$CONTROL/faults" >/dev/null
expect_eq "a missing index is reported once" 1 "$(count_lines "$T/sidecar.log" "without a valid X-Consul-Index")"
kill -0 "$SIDECAR_PID" && ok || fail "the sidecar exited"
finish
