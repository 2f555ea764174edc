#!/bin/bash
# Catalog -> Kong Admin API (double): the upstream is created when missing,
# targets added/removed/re-weighted with exactly the calls the diff needs and
# none when nothing changed (a critical instance: one DELETE; a warning one:
# one PATCH to its Weights.Warning), hand-made targets survive, Kong down or
# failing changes nothing and is retried, a wiped Kong is restored; Consul
# down or answering garbage changes nothing; a sidecar restarted while
# Consul is down restores a wiped Kong from its state file; a target list
# longer than one page is read whole; DB-less Kong is one error line, once.
. "$(dirname "$0")/lib.sh"

# kong_write_log: the writes the double received (METHOD PATH STATUS[ BODY]).
kong_write_log() { curl -s "$KONG_CONTROL/writes.txt"; }
kong_clear_log() { curl -s -X DELETE "$KONG_CONTROL/requests" >/dev/null; }
# register_weighted AGENT ID SERVICE PORT PASSING WARNING
register_weighted() {
    curl -sf -X PUT "$(agent_url "$1")/v1/agent/service/register" \
        -d "{\"ID\":\"$2\",\"Name\":\"$3\",\"Address\":\"127.0.0.1\",\"Port\":$4,\"Weights\":{\"Passing\":$5,\"Warning\":$6},\"Check\":{\"CheckID\":\"$2-ttl\",\"TTL\":\"10m\",\"Status\":\"passing\"}}" >/dev/null
}
# ours_are "T1 T2": the 127.0.0.1 targets (the instances') are exactly those.
ours_are() { [ "$(kong_targets orders | tr ' ' '\n' | grep '^127\.0\.0\.1:' | tr '\n' ' ' | sed 's/ $//')" = "$1" ]; }

start_consul || finish
start_kong || finish
register_instance node-1 orders-1 orders 9001
register_instance node-1 orders-2 orders 9002
# A hand-made target the sidecar must never touch.
curl -s -X POST "$KONG/upstreams" -H 'Content-Type: application/json' -d '{"name":"orders"}' >/dev/null
curl -s -X POST "$KONG/upstreams/orders/targets" -H 'Content-Type: application/json' \
    -d '{"target":"10.9.9.9:80","weight":5}' >/dev/null
# passing_only false: warning instances stay, with their Weights.Warning. A
# short wait: after the garbage faults below (whose index is far ahead) the
# watch gets a real answer within one wait.
cat > "$T/sidecar.json" <<JSON
{
  "consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "1s"},
  "node": "kong-1", "drain": "0s",
  "upstreams": [{"service": "orders", "proxy": "kong", "passing_only": false}],
  "proxy": {"kong": {"admin_url": "$KONG", "writer": "per-node"}},
  "watch": {"wait": "3s", "quiescence": {"min": "50ms", "max": "200ms"}}
}
JSON
start_sidecar sidecar "$T/sidecar.json" || finish
wait_for 10 "targets synced" kong_targets_are orders "10.9.9.9:80=5 127.0.0.1:9001=1 127.0.0.1:9002=1"
reqs=$(curl -s "$KONG_CONTROL/requests")
expect_contains "User-Agent names the sidecar and node" 'consul-sidecar/' "$reqs"
expect_contains "User-Agent names the node" '(kong-1)' "$reqs"

# Nothing changes: no writes over several read-backs.
kong_clear_log
set_check node-1 orders-1-ttl pass
sleep 2.5  # two proxy read-backs: measuring the absence of writes
expect_eq "no writes while nothing changes" 0 "$(kong_writes)"

# One instance leaves: exactly one DELETE.
deregister_instance node-1 orders-2
wait_for 5 "removal applied" kong_targets_are orders "10.9.9.9:80=5 127.0.0.1:9001=1"
expect_eq "exactly one write for one removal" 1 "$(kong_writes)"
expect_contains "it was a DELETE of that target" 'DELETE /upstreams/orders/targets/127.0.0.1:9002 204' "$(curl -s "$KONG_CONTROL/requests.txt")"

# An instance with weights: added at Weights.Passing (one POST); warning ->
# exactly one PATCH to Weights.Warning and no other write; critical ->
# exactly one DELETE; passing again -> one POST.
kong_clear_log
register_weighted node-1 orders-4 orders 9004 10 3
wait_for 5 "weighted instance added" kong_targets_are orders "10.9.9.9:80=5 127.0.0.1:9001=1 127.0.0.1:9004=10"
expect_eq "one POST at Weights.Passing" \
    'POST /upstreams/orders/targets 201 {"target":"127.0.0.1:9004","weight":10,"tags":["managed-by-consul-sidecar"]}' \
    "$(kong_write_log)"
kong_clear_log
set_check node-1 orders-4-ttl warn
wait_for 5 "warning instance re-weighted" kong_targets_are orders "10.9.9.9:80=5 127.0.0.1:9001=1 127.0.0.1:9004=3"
expect_eq "warning: exactly one PATCH to Weights.Warning, no other write" \
    'PATCH /upstreams/orders/targets/127.0.0.1:9004 200 {"weight":3}' "$(kong_write_log)"
kong_clear_log
set_check node-1 orders-4-ttl fail
wait_for 5 "critical instance removed" kong_targets_are orders "10.9.9.9:80=5 127.0.0.1:9001=1"
expect_eq "critical: exactly one DELETE" 'DELETE /upstreams/orders/targets/127.0.0.1:9004 204' "$(kong_write_log)"
kong_clear_log
set_check node-1 orders-4-ttl pass
wait_for 5 "passing again: back" kong_targets_are orders "10.9.9.9:80=5 127.0.0.1:9001=1 127.0.0.1:9004=10"
expect_eq "passing again: one write" 1 "$(kong_writes)"

# Consul down for a while: Kong unchanged, no write, sidecar alive.
curl -s -X POST "$CONTROL/agents/node-1/down" >/dev/null
kong_clear_log
sleep 2.5  # two read-backs with Consul gone: measuring the absence of change
expect_eq "Consul down: targets unchanged" "10.9.9.9:80=5 127.0.0.1:9001=1 127.0.0.1:9004=10" "$(kong_targets orders)"
expect_eq "Consul down: no write" 0 "$(kong_writes)"
kill -0 "$SIDECAR_PID" && ok || fail "sidecar exited while Consul was down"
curl -s -X POST "$CONTROL/agents/node-1/up" >/dev/null

# Consul answers garbage while an instance really leaves: nothing changes
# until it answers sense again, then exactly that removal.
curl -s -X POST "$CONTROL/faults" -d '{"path":"/v1/health/service","count":1000,"kind":"garbage"}' >/dev/null
kong_clear_log
deregister_instance node-1 orders-4
wait_for 10 "the garbage answer seen" log_has sidecar "bad answer from /v1/health/service/orders"
sleep 1.5  # a read-back while Consul answers garbage: measuring the absence of change
expect_eq "Consul garbage: targets unchanged" "10.9.9.9:80=5 127.0.0.1:9001=1 127.0.0.1:9004=10" "$(kong_targets orders)"
expect_eq "Consul garbage: no write" 0 "$(kong_writes)"
curl -s -X DELETE "$CONTROL/faults" >/dev/null
wait_for 15 "the removal applied once Consul answers sense" kong_targets_are orders "10.9.9.9:80=5 127.0.0.1:9001=1"
expect_eq "then exactly its DELETE" 'DELETE /upstreams/orders/targets/127.0.0.1:9004 204' "$(kong_write_log)"

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
kong_clear_log
curl -sf -X PUT "$(agent_url node-1)/v1/agent/service/register" \
    -d '{"ID":"orders-9","Name":"orders","Address":"10.9.9.9","Port":80,"Check":{"CheckID":"orders-9-ttl","TTL":"10m","Status":"passing"}}' >/dev/null
wait_for 10 "the conflict seen" log_has sidecar "was not made by consul-sidecar"
expect_eq "hand-made target untouched" "10.9.9.9:80=5 127.0.0.1:9001=1" "$(kong_targets orders)"
expect_not_contains "no PATCH of someone else's target" "PATCH /upstreams/orders/targets/10.9.9.9:80" "$(curl -s "$KONG_CONTROL/requests.txt")"
deregister_instance node-1 orders-9

# Kong wiped (a fresh database): restored by the periodic read-back.
curl -s -X POST "$KONG_CONTROL/reset" >/dev/null
wait_for 10 "upstream and targets restored" kong_targets_are orders "127.0.0.1:9001=1"

# Sidecar killed, Kong wiped and Consul down: restored from the state file.
register_weighted node-1 orders-5 orders 9005 7 2
wait_for 5 "orders-5 added" kong_targets_are orders "127.0.0.1:9001=1 127.0.0.1:9005=7"
wait_for 5 "state saved" grep -q '"port":[[:space:]]*9005' "$T/state-sidecar/upstreams.json"
stop_pid "$SIDECAR_PID" KILL
curl -s -X POST "$CONTROL/agents/node-1/down" >/dev/null
curl -s -X POST "$KONG_CONTROL/reset" >/dev/null
kong_clear_log
start_sidecar sidecar2 "$T/sidecar.json" -state-dir "$T/state-sidecar" || finish
wait_for 10 "Kong restored from state while Consul is down" kong_targets_are orders "127.0.0.1:9001=1 127.0.0.1:9005=7"
expect_contains "restore logged" "restoring 2 saved target(s)" "$(cat "$T/sidecar2.log")"
expect_eq "restored with the upstream and two targets: three writes" 3 "$(kong_writes)"
w=$(kong_write_log)
expect_eq "the upstream created once" 1 "$(printf '%s\n' "$w" | grep -c '^POST /upstreams 201 ')"
expect_eq "both saved targets posted" 2 "$(printf '%s\n' "$w" | grep -cE '^POST /upstreams/orders/targets 201 \{"target":"127\.0\.0\.1:900[15]"')"
curl -s -X POST "$CONTROL/agents/node-1/up" >/dev/null

# More targets than one page (1,000 hand-made ones, newer than ours, so
# ours are on the second page of the newest-first list): read whole, so
# nothing is written while nothing changes, and one change is one call.
{
    for i in $(seq 0 999); do
        [ "$i" -eq 0 ] || echo next
        printf 'url = "%s/upstreams/orders/targets"\nrequest = "POST"\nheader = "Content-Type: application/json"\n' "$KONG"
        printf 'data = "{\\"target\\":\\"10.8.%d.%d:80\\",\\"weight\\":1}"\noutput = "/dev/null"\n' $((i / 200)) $((i % 200 + 1))
    done
} > "$T/bulk.curl"
curl -s -K "$T/bulk.curl"
expect_eq "1,002 targets in Kong" 1002 "$(kong_targets orders | wc -w)"
kong_clear_log
sleep 2.5  # two read-backs over two pages: measuring the absence of writes
expect_eq "a long target list read whole: no writes" 0 "$(kong_writes)"
expect_contains "the second page was read (next, offset, size re-sent)" \
    "GET /upstreams/orders/targets?offset=1000&size=1000 200" "$(curl -s "$KONG_CONTROL/requests.txt")"
deregister_instance node-1 orders-5
wait_for 5 "removal applied past the first page" ours_are "127.0.0.1:9001=1"
expect_eq "exactly its DELETE" 'DELETE /upstreams/orders/targets/127.0.0.1:9005 204' "$(kong_write_log)"
expect_eq "the hand-made ones untouched" 1000 "$(kong_targets orders | tr ' ' '\n' | grep -c '^10\.8\.')"

# DB-less Kong: one clear error line, logged once (not for each upstream,
# not at every read-back), and nothing but the one GET / that found out.
stop_pid "$SIDECAR_PID" TERM
stop_pid "$KONG_PID" TERM
start_kong --dbless || finish
register_instance node-1 pay-1 pay 9101
sed -e "s|\"admin_url\": \"[^\"]*\"|\"admin_url\": \"$KONG\"|" \
    -e 's|"upstreams": \[|"upstreams": [{"service": "pay", "proxy": "kong"}, |' \
    "$T/sidecar.json" > "$T/sidecar-dbless.json"
start_sidecar sidecar3 "$T/sidecar-dbless.json" || finish
wait_for 10 "DB-less refusal explained" log_has sidecar3 "runs DB-less (database=off): target writes are impossible"
sleep 3  # three read-backs and retries: measuring that the line is not repeated
expect_eq "DB-less error logged once" 1 "$(count_lines "$T/sidecar3.log" "DB-less")"
expect_eq "DB-less: no write attempted" 0 "$(kong_writes)"
expect_eq "DB-less: one GET / and nothing more" "GET / 200" "$(curl -s "$KONG_CONTROL/requests.txt" | cut -d' ' -f1-3)"
finish
