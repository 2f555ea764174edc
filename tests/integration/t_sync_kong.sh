#!/bin/bash
# Catalog -> Kong Admin API (double): the upstream is created when missing,
# targets added/removed/re-weighted with exactly the calls the diff needs and
# none when nothing changed, hand-made targets survive, Kong down or failing
# changes nothing and is retried, a wiped Kong is restored.
. "$(dirname "$0")/lib.sh"
start_consul || finish
start_kong || finish
register_instance node-1 orders-1 orders 9001
register_instance node-1 orders-2 orders 9002
# A hand-made target the sidecar must never touch.
curl -s -X POST "$KONG/upstreams" -H 'Content-Type: application/json' -d '{"name":"orders"}' >/dev/null
curl -s -X POST "$KONG/upstreams/orders/targets" -H 'Content-Type: application/json' \
    -d '{"target":"10.9.9.9:80","weight":5}' >/dev/null
cat > "$T/sidecar.json" <<JSON
{
  "consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "1s"},
  "node": "kong-1", "drain": "0s",
  "upstreams": [{"service": "orders", "proxy": "kong"}],
  "proxy": {"kong": {"admin_url": "$KONG", "writer": "per-node"}},
  "watch": {"quiescence": {"min": "50ms", "max": "200ms"}}
}
JSON
start_sidecar sidecar "$T/sidecar.json" || finish
wait_for 10 "targets synced" kong_targets_are orders "10.9.9.9:80=5 127.0.0.1:9001=1 127.0.0.1:9002=1"
reqs=$(curl -s "$KONG_CONTROL/requests")
expect_contains "User-Agent names the sidecar and node" 'consul-sidecar/' "$reqs"
expect_contains "User-Agent names the node" '(kong-1)' "$reqs"

# Nothing changes: no writes over several read-backs.
curl -s -X DELETE "$KONG_CONTROL/requests" >/dev/null
set_check node-1 orders-1-ttl pass
sleep 2.5  # two proxy read-backs: measuring the absence of writes
expect_eq "no writes while nothing changes" 0 "$(kong_writes)"

# One instance leaves: exactly one DELETE.
deregister_instance node-1 orders-2
wait_for 5 "removal applied" kong_targets_are orders "10.9.9.9:80=5 127.0.0.1:9001=1"
expect_eq "exactly one write for one removal" 1 "$(kong_writes)"
expect_contains "it was a DELETE of that target" 'DELETE /upstreams/orders/targets/127.0.0.1:9002 204' "$(curl -s "$KONG_CONTROL/requests.txt")"

# Kong failing: 500s, then down; nothing lost, retried until it works.
curl -s -X POST "$KONG_CONTROL/faults" -d '{"path":"/upstreams/orders/targets","count":3,"kind":"status","status":500}' >/dev/null
register_instance node-1 orders-3 orders 9003
wait_for 20 "add applied after Kong's 500s" kong_targets_are orders "10.9.9.9:80=5 127.0.0.1:9001=1 127.0.0.1:9003=1"
curl -s -X POST "$KONG_CONTROL/down" >/dev/null
deregister_instance node-1 orders-3
sleep 1   # Kong is down: the sidecar retries with backoff meanwhile
kill -0 "$SIDECAR_PID" && ok || fail "sidecar exited while Kong was down"
curl -s -X POST "$KONG_CONTROL/up" >/dev/null
wait_for 40 "applied once Kong is back" kong_targets_are orders "10.9.9.9:80=5 127.0.0.1:9001=1"

# Kong slow: answers delayed by 1.5 s still land.
curl -s -X POST "$KONG_CONTROL/faults" -d '{"path":"/upstreams/orders/targets","count":2,"kind":"delay","delay_ms":1500}' >/dev/null
register_instance node-1 orders-6 orders 9006
wait_for 15 "applied through a slow Kong" kong_targets_are orders "10.9.9.9:80=5 127.0.0.1:9001=1 127.0.0.1:9006=1"
deregister_instance node-1 orders-6
wait_for 10 "and back" kong_targets_are orders "10.9.9.9:80=5 127.0.0.1:9001=1"

# An instance at the address of the hand-made target: the POST meets 409,
# the target is not ours (no ownership tag), so it is left exactly as it is
# (no PATCH of its weight).
curl -s -X DELETE "$KONG_CONTROL/requests" >/dev/null
curl -sf -X PUT "$(agent_url node-1)/v1/agent/service/register" \
    -d '{"ID":"orders-9","Name":"orders","Address":"10.9.9.9","Port":80,"Check":{"CheckID":"orders-9-ttl","TTL":"10m","Status":"passing"}}' >/dev/null
wait_for 10 "the conflict seen" log_has sidecar "was not made by consul-sidecar"
expect_eq "hand-made target untouched" "10.9.9.9:80=5 127.0.0.1:9001=1" "$(kong_targets orders)"
expect_not_contains "no PATCH of someone else's target" "PATCH /upstreams/orders/targets/10.9.9.9:80" "$(curl -s "$KONG_CONTROL/requests.txt")"
deregister_instance node-1 orders-9

# Kong wiped (a fresh database): restored by the periodic read-back.
curl -s -X POST "$KONG_CONTROL/reset" >/dev/null
wait_for 10 "upstream and targets restored" kong_targets_are orders "127.0.0.1:9001=1"

# DB-less Kong: one clear error, no retry storm.
stop_pid "$SIDECAR_PID" TERM
stop_pid "$KONG_PID" TERM
start_kong --dbless || finish
sed -i "s|\"admin_url\": \"[^\"]*\"|\"admin_url\": \"$KONG\"|" "$T/sidecar.json"
start_sidecar sidecar2 "$T/sidecar.json" || finish
wait_for 10 "DB-less refusal explained" log_has sidecar2 "DB-less"
finish
