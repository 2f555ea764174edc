#!/bin/bash
# The Consul API double against the behaviours the Consul API spec lists for
# doubles (routing, error texts, registration rules, blocking queries, TTL
# checks, maintenance, status endpoints, sessions and KV). A table of
# "METHOD PATH BODY -> status + substring" cases, then scripted flows.
. "$(dirname "$0")/lib.sh"
start_consul --agent node-1 --reap-interval 200ms --reap-min 1s --session-ttl-min 1s || finish
A=$CONSUL
hdr() { curl -s -D - -o /dev/null -X "$1" "$A$2"; }

# METHOD|PATH|BODY|STATUS|SUBSTRING
cases=(
 'PUT|/v1/agent/service/register|{"Name":"web","ID":"web-1","Port":8080,"Address":"10.0.0.5","Check":{"TTL":"30s"}}|200|'
 'GET|/v1/agent/service/register||405|method GET not allowed'
 'PUT|/v1/agent/service/web-1||405|method PUT not allowed'
 'GET|/v1/nope||404|Invalid URL path: not a recognized HTTP API endpoint'
 'PUT|/v1/agent/service/register||400|Request decode failed: EOF'
 'PUT|/v1/agent/service/register|{"Name":"x","Foo":1}|400|Request decode failed: json: unknown field "Foo"'
 'PUT|/v1/agent/service/register|{"Port":80}|400|Missing service name'
 'PUT|/v1/agent/service/register|{"Name":"x","Address":"0.0.0.0"}|400|Invalid service address'
 'PUT|/v1/agent/service/register|{"Name":"x","Weights":{"Passing":0,"Warning":1}}|400|Invalid Weights: Passing must be greater than 0'
 'PUT|/v1/agent/service/register|{"Name":"x","Meta":{"consul-a":"b"}}|400|Key prefix '"'"'consul-'"'"' is reserved for internal use'
 'PUT|/v1/agent/service/register|{"Name":"x","Check":{"TTL":"10s","Interval":"10s"}}|400|Invalid check: Interval and TTL cannot both be specified'
 'PUT|/v1/agent/service/register|{"Name":"x","Check":{"HTTP":"http://x/"}}|400|Invalid check: Interval must be > 0'
 'PUT|/v1/agent/service/register|{"Name":"x","Check":{"TTL":"10"}}|400|Request decode failed: time: missing unit in duration "10"'
 'PUT|/v1/agent/service/register|{"Name":"x","Check":{"TTL":"10s","Status":"ok"}}|400|Status for checks must '"'"'passing'"'"', '"'"'warning'"'"', '"'"'critical'"'"''
 'PUT|/v1/agent/service/register|{"name":"lower","port":81,"check":{"ttl":"30s"},"checks":[{"ttl":"30s"}]}|200|'
 'GET|/v1/agent/checks||200|"service:lower:2"'
 'GET|/v1/agent/service/nope||404|unknown service ID: nope'
 'PUT|/v1/agent/service/deregister/nope||404|Unknown service ID "nope". Ensure that the service ID is passed, not the service name.'
 'PUT|/v1/agent/check/pass/nope||404|Unknown check ID "nope". Ensure that the check ID is passed, not the check name.'
 'PUT|/v1/agent/check/update/service:web-1|{"Status":"ok"}|400|Invalid check status: '"'"'ok'"'"''
 'PUT|/v1/agent/service/maintenance/web-1||400|Missing value for enable'
 'PUT|/v1/agent/service/maintenance/web-1?enable=maybe||400|Invalid value for enable: "maybe"'
 'GET|/v1/health/service/web?index=abc||400|Invalid index'
 'GET|/v1/health/service/web?wait=10||400|Invalid wait time'
 'GET|/v1/health/service/web?stale&consistent||400|Cannot specify ?stale with ?consistent'
 'GET|/v1/health/service/web?dc=nope||500|No path to datacenter'
 'GET|/v1/health/service/web?passing=maybe||400|Invalid value for ?passing'
 'GET|/v1/health/service/||400|Missing service name'
 'GET|/v1/health/service/unknown||200|[]'
 'GET|/v1/catalog/services||200|"consul":[]'
 'GET|/v1/status/leader||200|"10.0.0.1:8300"'
 'GET|/v1/status/peers||200|["10.0.0.1:8300","10.0.0.2:8300","10.0.0.3:8300"]'
 'GET|/v1/agent/members||200|"Status":1'
 'GET|/v1/agent/self||200|"NodeName":"node-1"'
 'GET|/v1/agent/self||200|"Datacenter":"dc1"'
 'PUT|/v1/session/create|{"TTL":"100s","Behavior":"sideways"}|400|Invalid Behavior setting'
 'GET|/v1/kv/missing||404|'
)
for c in "${cases[@]}"; do
    IFS='|' read -r m p b want_status want <<<"$c"
    if [ -n "$b" ]; then http "$m" "$A$p" "$b"; else http "$m" "$A$p"; fi
    expect_eq "$m $p status" "$want_status" "$STATUS"
    [ -n "$want" ] && expect_contains "$m $p body" "$want" "$BODY"
done

# Headers: the index family on health/catalog, never on agent/status; ACL policy everywhere.
h=$(hdr GET /v1/health/service/web)
expect_contains "X-Consul-Index" "X-Consul-Index:" "$h"
expect_contains "X-Consul-Knownleader" "X-Consul-Knownleader: true" "$h"
expect_contains "X-Consul-Effective-Consistency" "X-Consul-Effective-Consistency: leader" "$h"
expect_contains "X-Consul-Default-Acl-Policy" "X-Consul-Default-Acl-Policy: allow" "$h"
expect_not_contains "no index on status" "X-Consul-Index" "$(hdr GET /v1/status/leader)"
expect_contains "Allow on 405" "Allow: OPTIONS,PUT" "$(hdr GET /v1/agent/service/register)"
expect_contains "stale consistency" "X-Consul-Effective-Consistency: stale" "$(hdr GET '/v1/health/service/web?stale')"

# Registration details: defaults, tagged addresses, checks start critical, re-register keeps status.
body=$(curl -s "$A/v1/agent/services")
expect_contains "default weights" '"Weights":{"Passing":1,"Warning":1}' "$body"
expect_contains "lan_ipv4 added" '"lan_ipv4":{"Address":"10.0.0.5","Port":8080}' "$body"
expect_contains "TTL check starts critical" '"Status":"critical"' "$(curl -s "$A/v1/agent/checks")"
curl -s -X PUT "$A/v1/agent/check/pass/service:web-1?note=fine" >/dev/null
curl -s -X PUT "$A/v1/agent/service/register" -d '{"Name":"web","ID":"web-1","Port":8080,"Address":"10.0.0.5","Check":{"TTL":"30s"}}' >/dev/null
expect_contains "re-register keeps status and output" '"Status":"passing","Notes":"","Output":"fine"' "$(curl -s "$A/v1/agent/checks")"
# ?passing drops a warning instance; serfHealth attached first.
curl -s -X PUT "$A/v1/agent/check/warn/service:web-1" >/dev/null
expect_eq "?passing drops warning" "[]" "$(curl -s "$A/v1/health/service/web?passing")"
expect_contains "serfHealth first" '"Checks":[{"Node":"node-1","CheckID":"serfHealth"' "$(curl -s "$A/v1/health/service/web")"
# Output truncation.
long=$(head -c 5000 /dev/zero | tr '\0' 'x')
curl -s -X PUT "$A/v1/agent/check/update/service:web-1" -d "{\"Status\":\"passing\",\"Output\":\"$long\"}" >/dev/null
expect_contains "output capped at 4096" "... (captured 4096 of 5000 bytes)" "$(curl -s "$A/v1/agent/checks")"
# Maintenance.
curl -s -X PUT "$A/v1/agent/service/maintenance/web-1?enable=true" >/dev/null
expect_contains "maintenance check" '"_service_maintenance:web-1"' "$(curl -s "$A/v1/agent/checks")"
expect_contains "default reason" "no reason was provided" "$(curl -s "$A/v1/agent/checks")"
curl -s -X PUT "$A/v1/agent/service/maintenance/web-1?enable=false" >/dev/null
expect_not_contains "maintenance off" "_service_maintenance" "$(curl -s "$A/v1/agent/checks")"

# Blocking: wakes on a change; times out with the same index; index ahead blocks then lower.
idx=$(curl -s -D - -o /dev/null "$A/v1/health/service/web" | sed -n 's/^X-Consul-Index: \([0-9]*\).*/\1/p' | tr -d '\r')
curl -s -D "$T/block.h" -o /dev/null "$A/v1/health/service/web?index=$idx&wait=30s" &
bp=$!
curl -s -X PUT "$A/v1/agent/check/fail/service:web-1" >/dev/null
t0=$(date +%s)
wait $bp
expect_eq "blocking query woke on the change" yes "$([ $(( $(date +%s) - t0 )) -lt 5 ] && echo yes)"
new=$(sed -n 's/^X-Consul-Index: \([0-9]*\).*/\1/p' "$T/block.h" | tr -d '\r')
[ "$new" -gt "$idx" ] && ok || fail "index did not move: $idx -> $new"
h=$(curl -s -D - -o /dev/null "$A/v1/health/service/web?index=$new&wait=200ms")
expect_contains "timeout keeps the index" "X-Consul-Index: $new" "$h"
h=$(curl -s -D - -o /dev/null "$A/v1/health/service/web?index=99999999&wait=200ms")
expect_contains "ahead: answers with the lower index" "X-Consul-Index: $new" "$h"

# TTL expiry and the reaper (short flags).
curl -s -X PUT "$A/v1/agent/service/register" -d '{"Name":"ephemeral","Check":{"TTL":"1s","DeregisterCriticalServiceAfter":"1s"}}' >/dev/null
curl -s -X PUT "$A/v1/agent/check/pass/service:ephemeral?note=last" >/dev/null
wait_for 5 "TTL expired with last output" sh -c "curl -s $A/v1/agent/checks | grep -q 'TTL expired (last output before timeout follows): last'"
wait_for 10 "reaped" sh -c "! curl -s $A/v1/agent/services | grep -q ephemeral"

# No leader: reads fail unless stale.
curl -s -X POST "$CONTROL/leader" -d '{"leader":""}' >/dev/null
http GET "$A/v1/health/service/web"; expect_eq "no leader" 500 "$STATUS"; expect_eq "no leader text" "No cluster leader" "$BODY"
http GET "$A/v1/health/service/web?stale"; expect_eq "stale works without a leader" 200 "$STATUS"
expect_eq "leader empty" '""' "$(curl -s "$A/v1/status/leader")"
curl -s -X POST "$CONTROL/leader" -d '{"leader":"server-2"}' >/dev/null

# Sessions and the lock recipe.
s1=$(curl -s -X PUT "$A/v1/session/create" -d '{"TTL":"2s","LockDelay":"1s"}' | sed 's/.*"ID":"\([^"]*\)".*/\1/')
s2=$(curl -s -X PUT "$A/v1/session/create" -d '{"TTL":"10s","LockDelay":"1s"}' | sed 's/.*"ID":"\([^"]*\)".*/\1/')
expect_eq "acquire free key" true "$(curl -s -X PUT "$A/v1/kv/lock?acquire=$s1" -d holder1)"
expect_eq "acquire held key" false "$(curl -s -X PUT "$A/v1/kv/lock?acquire=$s2" -d holder2)"
expect_contains "Session shown" "\"Session\":\"$s1\"" "$(curl -s "$A/v1/kv/lock")"
expect_contains "LockIndex 1" '"LockIndex":1' "$(curl -s "$A/v1/kv/lock")"
http PUT "$A/v1/kv/lock?acquire=unknown-session" x; expect_eq "unknown session is an error" 500 "$STATUS"
http PUT "$A/v1/session/renew/unknown"; expect_eq "renew unknown" 404 "$STATUS"
# s1 expires (no renew): released, value kept, lock-delay before s2 can acquire.
wait_for 10 "session TTL invalidation" sh -c "! curl -s $A/v1/kv/lock | grep -q Session"
expect_contains "value kept" '"Value":"aG9sZGVyMQ=="' "$(curl -s "$A/v1/kv/lock")"
expect_eq "lock-delay refuses at once" false "$(curl -s -X PUT "$A/v1/kv/lock?acquire=$s2" -d holder2)"
wait_for 5 "acquire after lock-delay" sh -c "[ \"\$(curl -s -X PUT '$A/v1/kv/lock?acquire=$s2' -d holder2)\" = true ]"
expect_eq "release" true "$(curl -s -X PUT "$A/v1/kv/lock?release=$s2")"
expect_eq "release not held" false "$(curl -s -X PUT "$A/v1/kv/lock?release=$s2")"
expect_eq "re-acquire right after a clean release" true "$(curl -s -X PUT "$A/v1/kv/lock?acquire=$s2" -d holder2)"
# Behavior "delete": destroying the session deletes the key, wakes a watcher
# of it, and the lock delay still holds for the key's name.
s3=$(curl -s -X PUT "$A/v1/session/create" -d '{"TTL":"10s","LockDelay":"2s","Behavior":"delete"}' | sed 's/.*"ID":"\([^"]*\)".*/\1/')
expect_eq "acquire (delete behavior)" true "$(curl -s -X PUT "$A/v1/kv/dlock?acquire=$s3" -d holder3)"
didx=$(curl -s -D - -o /dev/null "$A/v1/kv/dlock" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-consul-index" {print $2}')
( curl -s -o "$T/dlock-watch.out" -w '%{http_code}' "$A/v1/kv/dlock?index=$didx&wait=10s" > "$T/dlock-watch.code" ) &
watcher=$!
curl -s -X PUT "$A/v1/session/destroy/$s3" >/dev/null
wait_for 5 "the key's watcher woke" test -s "$T/dlock-watch.code"
wait "$watcher" 2>/dev/null
expect_eq "the key is gone" 404 "$(cat "$T/dlock-watch.code")"
expect_eq "lock delay kept for the deleted key" false "$(curl -s -X PUT "$A/v1/kv/dlock?acquire=$s2" -d holder2)"
wait_for 5 "acquire after the lock delay" sh -c "[ \"\$(curl -s -X PUT '$A/v1/kv/dlock?acquire=$s2' -d holder2)\" = true ]"

# Control faults: status, garbage, close, index; restart without persistence.
curl -s -X POST "$CONTROL/faults" -d '{"path":"/v1/status/leader","count":1,"kind":"status","status":503,"body":"boom"}' >/dev/null
http GET "$A/v1/status/leader"; expect_eq "fault status" 503 "$STATUS"
http GET "$A/v1/status/leader"; expect_eq "fault used once" 200 "$STATUS"
curl -s -X POST "$CONTROL/faults" -d '{"path":"/v1/health","count":1,"kind":"index","index_raw":"abc"}' >/dev/null
expect_contains "forced index" "X-Consul-Index: abc" "$(hdr GET /v1/health/service/web)"
# Connection limit: with max_conns connections open, a new one is closed at
# once (close) or answered 429 and closed (429); 0 lifts it.
exec 7<>"/dev/tcp/127.0.0.1/$(port_of "$T/consul.ports" node-1)"   # one connection held open
wait_for 5 "held connection counted" sh -c "curl -s '$CONTROL/state' | grep -q '\"open_conns\":1'"
curl -s -X POST "$CONTROL/agents/node-1/limit" -d '{"max_conns":1,"mode":"close"}' >/dev/null
curl -s -o /dev/null "$A/v1/status/leader"; rc=$?
[ "$rc" -eq 52 ] || [ "$rc" -eq 56 ] && ok || fail "limit (close): expected an empty reply or a reset, curl exit $rc"
curl -s -X POST "$CONTROL/agents/node-1/limit" -d '{"max_conns":1,"mode":"reset"}' >/dev/null
curl -s -o /dev/null "$A/v1/status/leader"; expect_eq "limit (reset): connection reset" 56 "$?"
curl -s -X POST "$CONTROL/agents/node-1/limit" -d '{"max_conns":1,"mode":"429"}' >/dev/null
http GET "$A/v1/status/leader"; expect_eq "limit (429)" 429 "$STATUS"
expect_contains "limit (429) body" "Your IP is issuing too many concurrent connections" "$BODY"
curl -s -X POST "$CONTROL/agents/node-1/limit" -d '{"max_conns":0}' >/dev/null
http GET "$A/v1/status/leader"; expect_eq "limit lifted" 200 "$STATUS"
exec 7>&-
http POST "$CONTROL/agents/node-1/limit" '{"max_conns":"x"}'; expect_eq "bad limit refused" 400 "$STATUS"

# Restart with a rejoin window: empty answers, no known leader, then normal.
curl -s -X POST -d '{"persist":true,"rejoin_ms":1500}' "$CONTROL/agents/node-1/restart" >/dev/null
expect_eq "rejoining: catalog empty" "{}" "$(curl -s "$A/v1/catalog/services")"
expect_eq "rejoining: health empty" "[]" "$(curl -s "$A/v1/health/service/web")"
expect_eq "rejoining: no leader" '""' "$(curl -s "$A/v1/status/leader")"
expect_contains "rejoining: no known leader" "X-Consul-Knownleader: false" "$(hdr GET /v1/health/service/web)"
expect_contains "rejoining: agent endpoints answer" '"web' "$(curl -s "$A/v1/agent/services")"
wait_for 5 "rejoined: catalog back" sh -c "curl -s '$A/v1/catalog/services' | grep -q web"
expect_contains "rejoined: leader back" '"10.0.0.' "$(curl -s "$A/v1/status/leader")"
curl -s -X POST -d '{"persist":false}' "$CONTROL/agents/node-1/restart" >/dev/null
expect_eq "dev restart loses registrations" "{}" "$(curl -s "$A/v1/agent/services")"
finish
