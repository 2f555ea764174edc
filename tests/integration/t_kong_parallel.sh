#!/bin/bash
# Kong writes side by side: at most proxy.kong.max_in_flight requests at once
# (the double counts them), exactly the diff, a missing upstream asked for once, the add of a replacement
# answered before the old target is deleted, and a Kong that refuses a write
# as DB-less is one ERR line and no retry storm.
. "$(dirname "$0")/lib.sh"

N=40
start_consul || finish
start_kong || finish
for i in $(seq 1 $N); do register_instance node-1 "orders-$i" orders $((9100 + i)); done
# Every POST of a target held 300 ms: the writes must overlap to end soon.
curl -s -X POST "$KONG_CONTROL/faults" -d "{\"path\":\"/upstreams/orders/targets\",\"method\":\"POST\",\"count\":$N,\"kind\":\"delay\",\"delay_ms\":300}" >/dev/null
cat > "$T/sidecar.json" <<JSON
{"consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "1s"},
 "node": "kong-1", "drain": "0s",
 "upstreams": [{"service": "orders", "proxy": "kong"}],
 "proxy": {"kong": {"admin_url": "$KONG", "writer": "per-node", "max_in_flight": 4}},
 "watch": {"wait": "3s", "quiescence": {"min": "300ms", "max": "1s"}}}
JSON
start_sidecar sidecar "$T/sidecar.json" || finish
expect_contains "the setting in the effective config" '"max_in_flight":	4' "$("$BIN/consul-sidecar" -config "$T/sidecar.json" -validate 2>&1)"
count_targets() { kong_targets orders | wc -w; }
has_n() { [ "$(count_targets)" = "$1" ]; }
wait_for 30 "all $N targets in Kong" has_n $N || finish
peak=$(curl -s "$KONG_CONTROL/inflight" | sed 's/.*"peak": \([0-9]*\).*/\1/')
expect_eq "requests at once: the cap, reached" 4 "$peak"
expect_eq "writes: the diff, one POST a target" $N "$(curl -s "$KONG_CONTROL/writes.txt" | grep -c '^POST /upstreams/orders/targets 201')"
# The read found no upstream, so the apply created it at once, without a
# second GET (1,000 requests fewer when an initial sync creates 1,000).
gets=$(curl -s "$KONG_CONTROL/requests.txt" | awk '$1 == "POST" && $2 == "/upstreams" { exit } $1 == "GET" && $2 == "/upstreams/orders" { n++ } END { print n + 0 }')
expect_eq "one GET of the missing upstream before it is created" 1 "$gets"

# A replacement, in one catalog change: orders-1 moves to port 9141. The add
# is held 1 s; the delete of the old target arrives only after it is answered.
curl -s -X DELETE "$KONG_CONTROL/requests" >/dev/null
curl -s -X POST "$KONG_CONTROL/faults" -d '{"path":"/upstreams/orders/targets","method":"POST","count":1,"kind":"delay","delay_ms":1000}' >/dev/null
register_instance node-1 orders-1 orders 9141
wait_for 15 "the replacement applied" sh -c "! curl -s $KONG/upstreams/orders/targets?size=1000 | grep -q '127.0.0.1:9101' && curl -s $KONG/upstreams/orders/targets?size=1000 | grep -q '127.0.0.1:9141'" || finish
log=$(curl -s "$KONG_CONTROL/requests.txt?time")
t_post=$(echo "$log" | awk '$2 == "POST" { print $1 }' | tail -n1)
t_del=$(echo "$log" | awk '$2 == "DELETE" && $3 ~ /9101/ { print $1 }' | tail -n1)
[ -n "$t_post" ] && [ -n "$t_del" ] && [ $((t_del - t_post)) -ge 1000 ] && ok ||
    fail "the DELETE of 9101 (at $t_del) came before the held POST of 9141 (at $t_post) was answered"

# Writes refused as DB-less (a Kong whose GET / did not say so): one ERR
# line naming the mode and what to do; the refusal is not retried.
refusal='{"code":12,"name":"operation unsupported","message":"cannot create '"'"'targets'"'"' entities when not using a database"}'
curl -s -X POST "$KONG_CONTROL/faults" -d "$(printf '{"path":"/upstreams/orders/targets","method":"POST","count":100,"kind":"status","status":405,"body":%s}' "$(printf '%s' "$refusal" | sed 's/"/\\"/g; s/^/"/; s/$/"/')")" >/dev/null
curl -s -X DELETE "$KONG_CONTROL/requests" >/dev/null
for i in 42 43 44; do register_instance node-1 "orders-$i" orders $((9100 + i)); done
wait_for 15 "the DB-less error" log_has sidecar "refuses writes: it runs DB-less (database=off); point the sidecar at a Kong node with a database or at the control plane" || finish
writes=$(curl -s "$KONG_CONTROL/writes.txt" | wc -l)
# Absence over time cannot be waited on: two resync periods (1 s each) pass.
sleep 2.5
expect_eq "no write after the refusal" "$writes" "$(curl -s "$KONG_CONTROL/writes.txt" | wc -l)"
expect_eq "one ERR line" 1 "$(grep -c '\[ERR\].*refuses writes: it runs DB-less' "$T/sidecar.log")"
expect_eq "nothing removed" $N "$(count_targets)"
finish
