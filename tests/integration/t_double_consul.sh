#!/bin/bash
# The Consul API double against the behaviours the Consul API spec lists for
# doubles (routing, error texts, registration rules, blocking queries, TTL
# checks, maintenance, status endpoints, sessions and KV, ?filter, ?pretty,
# restarts and the control faults). A table of
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

# ---- SPEC §12 items 12, 16-19, 26, 29-31, 35, 36, 42, 43 -------------------
checks_now() { curl -s "$A/v1/agent/checks"; }
# 12: replace-existing-checks only for an empty value or exactly "true".
two='{"Name":"rep","Checks":[{"CheckID":"rep-a","TTL":"30s"},{"CheckID":"rep-b","TTL":"30s"}]}'
one='{"Name":"rep","Checks":[{"CheckID":"rep-a","TTL":"30s"}]}'
for q in '' '?replace-existing-checks=1' '?replace-existing-checks=yes' '?replace-existing-checks=false'; do
    http PUT "$A/v1/agent/service/register" "$two"
    http PUT "$A/v1/agent/service/register$q" "$one"; expect_eq "register$q" 200 "$STATUS"
    expect_contains "stale check kept with '${q:-no flag}'" '"rep-b"' "$(checks_now)"
done
for q in '?replace-existing-checks' '?replace-existing-checks=' '?replace-existing-checks=true'; do
    http PUT "$A/v1/agent/service/register" "$two"
    http PUT "$A/v1/agent/service/register$q" "$one"; expect_eq "register$q" 200 "$STATUS"
    expect_not_contains "stale check removed with '$q'" '"rep-b"' "$(checks_now)"
    expect_contains "wanted check kept with '$q'" '"rep-a"' "$(checks_now)"
done
curl -s -X PUT "$A/v1/agent/service/deregister/rep" >/dev/null

# 16: the agent's services, keyed by ID in sorted order, Tags [] and Meta {}, Datacenter.
curl -s -X PUT "$A/v1/agent/service/register" -d '{"Name":"zeta"}' >/dev/null
curl -s -X PUT "$A/v1/agent/service/register" -d '{"Name":"alpha"}' >/dev/null
body=$(curl -s "$A/v1/agent/services")
expect_contains "service without tags or meta" '"alpha":{"ID":"alpha","Service":"alpha","Tags":[],"Meta":{},"Port":0,"Address":"","Weights":{"Passing":1,"Warning":1},"EnableTagOverride":false,"Datacenter":"dc1"}' "$body"
keys=$(printf '%s' "$body" | grep -o '"[^"]*":{"ID"' | cut -d'"' -f2 | tr '\n' ' ')
expect_eq "keys sorted" "$(printf '%s\n' $keys | LC_ALL=C sort | tr '\n' ' ')" "$keys"

# 17: one service by ID, with ContentHash in the body and the header; it changes with the service.
h=$(curl -s -D - -o "$T/alpha.json" "$A/v1/agent/service/alpha" | tr -d '\r')
hash=$(printf '%s\n' "$h" | sed -n 's/^X-Consul-Contenthash: //p')
[ -n "$hash" ] && ok || fail "no X-Consul-Contenthash header"
expect_contains "ContentHash in the body, same as the header" "\"ContentHash\":\"$hash\"" "$(cat "$T/alpha.json")"
expect_not_contains "no index on an agent endpoint" "X-Consul-Index" "$h"
curl -s -X PUT "$A/v1/agent/service/register" -d '{"Name":"alpha","Port":81}' >/dev/null
expect_not_contains "the hash follows the content" "\"ContentHash\":\"$hash\"" "$(curl -s "$A/v1/agent/service/alpha")"

# 18: check registration: ID defaults to Name, ServiceID must exist, 0s when unset.
http PUT "$A/v1/agent/check/register" '{"Name":"disk","TTL":"30s"}'; expect_eq "check register" 200 "$STATUS"
expect_eq "check register: empty body" "" "$BODY"
expect_contains "ID from Name, 0s interval and timeout" '"disk":{"Node":"node-1","CheckID":"disk","Name":"disk","Status":"critical","Notes":"","Output":"","ServiceID":"","ServiceName":"","ServiceTags":[],"Type":"ttl","Interval":"0s","Timeout":"0s"' "$(checks_now)"
http PUT "$A/v1/agent/check/register" '{"Name":"x","ServiceID":"ghost","TTL":"30s"}'
expect_eq "check for an unknown service" 404 "$STATUS"; expect_eq "its text" 'ServiceID "ghost" does not exist' "$BODY"
http PUT "$A/v1/agent/check/register" '{"ID":"y","TTL":"30s"}'
expect_eq "check without a name" 400 "$STATUS"; expect_eq "its text" "Missing check name" "$BODY"
curl -s -X PUT "$A/v1/agent/service/register" -d '{"Name":"tagged","Tags":["t1"]}' >/dev/null
curl -s -X PUT "$A/v1/agent/check/register" -d '{"ID":"tagged-disk","Name":"tagged disk","ServiceID":"tagged","TTL":"30s"}' >/dev/null
expect_contains "service name and tags copied to the check" '"CheckID":"tagged-disk","Name":"tagged disk","Status":"critical","Notes":"","Output":"","ServiceID":"tagged","ServiceName":"tagged","ServiceTags":["t1"]' "$(checks_now)"

# 19: pass/warn/fail set Output to the note (cleared without one) and re-arm the TTL.
curl -s -X PUT "$A/v1/agent/service/register" -d '{"Name":"rearm","Check":{"TTL":"2s"}}' >/dev/null
curl -s -X PUT "$A/v1/agent/check/warn/service:rearm?note=slow" >/dev/null
expect_contains "warn with a note" '"Status":"warning","Notes":"","Output":"slow"' "$(checks_now)"
curl -s -X PUT "$A/v1/agent/check/pass/service:rearm" >/dev/null
expect_contains "pass without a note clears the output" '"CheckID":"service:rearm","Name":"Service '"'"'rearm'"'"' check","Status":"passing","Notes":"","Output":""' "$(checks_now)"
sleep 1.2   # inside the 2 s TTL: the thing measured is the timer being re-armed
curl -s -X PUT "$A/v1/agent/check/pass/service:rearm?note=again" >/dev/null
sleep 1.2   # 2.4 s after the first pass, 1.2 s after the second
expect_contains "re-armed: still passing past the first TTL" '"Status":"passing","Notes":"","Output":"again"' "$(checks_now)"
curl -s -X PUT "$A/v1/agent/service/register" -d '{"Name":"probed","Check":{"HTTP":"http://127.0.0.1:1/","Interval":"10s"}}' >/dev/null
http PUT "$A/v1/agent/check/pass/service:probed"
expect_eq "pass on a non-TTL check" 500 "$STATUS"; expect_eq "its text" 'CheckID "service:probed" does not have associated TTL' "$BODY"
http PUT "$A/v1/agent/check/update/service:probed" '{"Status":"passing"}'
expect_eq "update on a non-TTL check" 500 "$STATUS"

# 26: serfHealth only in the catalog views, passing and alive.
expect_not_contains "no serfHealth in the agent's checks" "serfHealth" "$(checks_now)"
expect_contains "serfHealth in health" '"CheckID":"serfHealth","Name":"Serf Health Status","Status":"passing","Notes":"","Output":"Agent alive and reachable"' "$(curl -s "$A/v1/health/service/alpha")"
expect_contains "serfHealth in health/node" '"CheckID":"serfHealth"' "$(curl -s "$A/v1/health/node/node-1")"

# 29: ?tag repeatable, AND, case-insensitive; ?filter, and a bad one is a 500.
curl -s -X PUT "$A/v1/agent/service/register" -d '{"Name":"tg","ID":"tg-1","Tags":["v1","Blue"],"Meta":{"zone":"a"}}' >/dev/null
curl -s -X PUT "$A/v1/agent/service/register" -d '{"Name":"tg","ID":"tg-2","Tags":["v1"],"Meta":{"zone":"b"}}' >/dev/null
ids() { grep -o '"ID":"tg-[0-9]"' | cut -d'"' -f4 | sort | tr '\n' ' ' | sed 's/ $//'; }
expect_eq "?tag=v1" "tg-1 tg-2" "$(curl -s "$A/v1/health/service/tg?tag=v1" | ids)"
expect_eq "?tag=V1&tag=blue (AND, any case)" "tg-1" "$(curl -s "$A/v1/health/service/tg?tag=V1&tag=blue" | ids)"
expect_eq "?tag on the catalog" "tg-1" "$(curl -s "$A/v1/catalog/service/tg?tag=blue" | grep -o '"ServiceID":"tg-[0-9]"' | cut -d'"' -f4)"
expect_eq "?filter on health" "tg-2" "$(curl -s -G "$A/v1/health/service/tg" --data-urlencode 'filter=Service.Meta.zone == "b"' | ids)"
expect_eq "?filter with not/contains" "tg-2" "$(curl -s -G "$A/v1/health/service/tg" --data-urlencode 'filter=not (Service.Tags contains "Blue")' | ids)"
expect_eq "?filter on agent services" '"tg-1"' "$(curl -s -G "$A/v1/agent/services" --data-urlencode 'filter="Blue" in Tags and Service == "tg"' | grep -o '"tg-[0-9]"' | sort -u)"
expect_eq "?filter on catalog service" "tg-1" "$(curl -s -G "$A/v1/catalog/service/tg" --data-urlencode 'filter=ServiceMeta.zone != "b"' | grep -o '"ServiceID":"tg-[0-9]"' | cut -d'"' -f4)"
for bad in 'Service ==' 'Service = "x"' '(Service == "x"' '== "x"'; do
    STATUS=$(curl -s -G -o "$T/last_body" -w '%{http_code}' "$A/v1/health/service/tg" --data-urlencode "filter=$bad")
    expect_eq "bad filter '$bad'" 500 "$STATUS"
    expect_contains "bad filter text '$bad'" "Failed to create boolean expression evaluator: " "$(cat "$T/last_body")"
done
STATUS=$(curl -s -G -o /dev/null -w '%{http_code}' "$A/v1/agent/checks" --data-urlencode 'filter=Status =')
expect_eq "bad filter on agent checks" 500 "$STATUS"

# 30: the index family on health and catalog, also on an empty answer.
h=$(hdr GET /v1/catalog/service/nothing-here)
expect_contains "index on an empty answer" "X-Consul-Index: " "$h"
idx=$(printf '%s\n' "$h" | tr -d '\r' | sed -n 's/^X-Consul-Index: //p')
[ "${idx:-0}" -ge 1 ] && ok || fail "X-Consul-Index must be >= 1, got '$idx'"
expect_contains "Knownleader" "X-Consul-Knownleader: true" "$h"
expect_contains "Lastcontact on the leader" "X-Consul-Lastcontact: 0" "$h"
expect_contains "Query-Backend" "X-Consul-Query-Backend: blocking-query" "$h"
expect_contains "Effective-Consistency leader" "X-Consul-Effective-Consistency: leader" "$h"
expect_contains "Effective-Consistency consistent" "X-Consul-Effective-Consistency: consistent" "$(hdr GET '/v1/catalog/nodes?consistent')"
expect_contains "index on catalog services" "X-Consul-Index: " "$(hdr GET /v1/catalog/services)"

# 31: blocking: index 0 answers at once whatever the wait; a timeout is wait +
# at most wait/16, with the same body and index; wait=0s means 5 min, not none.
ms() { echo $(( $(date +%s%N) / 1000000 )); }
t0=$(ms); curl -s -o /dev/null "$A/v1/health/service/tg?index=0&wait=10s"; took=$(( $(ms) - t0 ))
[ "$took" -lt 1000 ] && ok || fail "index=0 blocked for ${took} ms"
h=$(curl -s -D - -o "$T/b0" "$A/v1/health/service/tg" | tr -d '\r')
idx=$(printf '%s\n' "$h" | sed -n 's/^X-Consul-Index: //p')
t0=$(ms); h2=$(curl -s -D - -o "$T/b1" "$A/v1/health/service/tg?index=$idx&wait=1600ms" | tr -d '\r'); took=$(( $(ms) - t0 ))
[ "$took" -ge 1600 ] && [ "$took" -le $((1600 + 100 + 500)) ] && ok || fail "wait=1600ms answered after ${took} ms (want 1600..1700 plus slack)"
expect_contains "timeout: same index" "X-Consul-Index: $idx" "$h2"
cmp -s "$T/b0" "$T/b1" && ok || fail "timeout: the body changed"
curl -s -o /dev/null --max-time 2 "$A/v1/health/service/tg?index=$idx&wait=0s"
expect_eq "wait=0s still blocks (curl gave up first)" 28 "$?"

# 35: catalog services: tags deduplicated over instances; a service without tags has [].
curl -s -X PUT "$A/v1/agent/service/register" -d '{"Name":"tg","ID":"tg-3","Tags":["v1","green"]}' >/dev/null
tgtags=$(curl -s "$A/v1/catalog/services" | grep -o '"tg":\[[^]]*\]')
expect_eq "v1 listed once" 1 "$(printf '%s' "$tgtags" | grep -o '"v1"' | wc -l)"
expect_eq "every tag of tg" '"Blue" "green" "v1"' "$(printf '%s' "$tgtags" | grep -o '"[A-Za-z0-9]*"' | grep -v '"tg"' | LC_ALL=C sort | tr '\n' ' ' | sed 's/ $//')"
expect_contains "no tags: []" '"zeta":[]' "$(curl -s "$A/v1/catalog/services")"

# 36: the catalog lists critical instances; ServiceMeta null without meta; unknown is [].
curl -s -X PUT "$A/v1/agent/check/fail/service:rearm" >/dev/null
expect_eq "?passing hides the critical instance" "[]" "$(curl -s "$A/v1/health/service/rearm?passing")"
body=$(curl -s "$A/v1/catalog/service/rearm")
expect_contains "the catalog still lists it" '"ServiceID":"rearm"' "$body"
expect_contains "ServiceMeta null" '"ServiceMeta":null' "$body"
expect_eq "unknown service in the catalog" "[]" "$(curl -s "$A/v1/catalog/service/nothing-here")"

# 43: ?pretty: Go's 4-space indentation, empty {} and [], one trailing newline.
curl -s "$A/v1/agent/service/zeta?pretty" > "$T/pretty.json"
expect_eq "pretty: second line" '    "ID": "zeta",' "$(sed -n 2p "$T/pretty.json")"
expect_contains "pretty: empty array" '    "Tags": [],' "$(cat "$T/pretty.json")"
expect_contains "pretty: empty object" '    "Meta": {},' "$(cat "$T/pretty.json")"
expect_contains "pretty: nested object" "$(printf '    "Weights": {\n        "Passing": 1,')" "$(cat "$T/pretty.json")"
expect_eq "pretty: trailing newline" "0a" "$(tail -c1 "$T/pretty.json" | od -An -tx1 | tr -d ' ')"
expect_eq "pretty: arrays one element a line" "$(printf '[\n    "10.0.0.1:8300",\n    "10.0.0.2:8300",\n    "10.0.0.3:8300"\n]')" "$(curl -s "$A/v1/status/peers?pretty")"
expect_eq "compact without it" '["10.0.0.1:8300","10.0.0.2:8300","10.0.0.3:8300"]' "$(curl -s "$A/v1/status/peers")"
rm -f "$T/dev.ports"
start_bg consul-dev "$BIN/consul-double" --port-file "$T/dev.ports" --dev
wait_for 10 "dev double" grep -q '^control ' "$T/dev.ports"
expect_eq "-dev answers pretty" "$(printf '[\n    "10.0.0.1:8300",\n    "10.0.0.2:8300",\n    "10.0.0.3:8300"\n]')" \
    "$(curl -s "http://127.0.0.1:$(port_of "$T/dev.ports" node-1)/v1/status/peers")"

# The delay fault: the next matching request waits delay_ms, then answers normally.
curl -s -X POST "$CONTROL/faults" -d '{"path":"/v1/status/leader","count":1,"kind":"delay","delay_ms":800}' >/dev/null
t0=$(ms); http GET "$A/v1/status/leader"; took=$(( $(ms) - t0 ))
[ "$took" -ge 800 ] && ok || fail "delayed answer after only ${took} ms"
expect_eq "delayed: normal status" 200 "$STATUS"; expect_eq "delayed: normal body (server-2 leads since the leader change above)" '"10.0.0.2:8300"' "$BODY"
t0=$(ms); http GET "$A/v1/status/leader"; took=$(( $(ms) - t0 ))
[ "$took" -lt 500 ] && ok || fail "the delay was used more than once (${took} ms)"

# 42: restart with persistence: registrations kept, checks back to critical,
# except a TTL check whose state has not expired.
curl -s -X PUT "$A/v1/agent/service/register" -d '{"Name":"kept","Checks":[{"CheckID":"kept-http","HTTP":"http://127.0.0.1:1/","Interval":"10s","Status":"passing"},{"CheckID":"kept-ttl","TTL":"5m"}]}' >/dev/null
curl -s -X PUT "$A/v1/agent/check/pass/kept-ttl?note=fresh" >/dev/null
curl -s -X POST -d '{"persist":true}' "$CONTROL/agents/node-1/restart" >/dev/null
expect_contains "persisted: the service survives" '"kept":{"ID":"kept"' "$(curl -s "$A/v1/agent/services")"
expect_contains "persisted: a probing check comes back critical" '"CheckID":"kept-http","Name":"Service '"'"'kept'"'"' check","Status":"critical"' "$(checks_now)"
expect_contains "persisted: an unexpired TTL state is kept" '"CheckID":"kept-ttl","Name":"Service '"'"'kept'"'"' check","Status":"passing","Notes":"","Output":"fresh"' "$(checks_now)"
expect_contains "persisted: in the catalog too" '"ServiceID":"kept"' "$(curl -s "$A/v1/catalog/service/kept")"

# Control faults: status, garbage, close, index; restart without persistence.
curl -s -X POST "$CONTROL/faults" -d '{"path":"/v1/status/leader","count":1,"kind":"status","status":503,"body":"boom"}' >/dev/null
http GET "$A/v1/status/leader"; expect_eq "fault status" 503 "$STATUS"
http GET "$A/v1/status/leader"; expect_eq "fault used once" 200 "$STATUS"
curl -s -X POST "$CONTROL/faults" -d '{"path":"/v1/health","count":1,"kind":"index","index_raw":"abc"}' >/dev/null
expect_contains "forced index" "X-Consul-Index: abc" "$(hdr GET /v1/health/service/web)"
# A fault replacing answers also meets a blocking query parked before it
# was set: it models what Consul answers from the moment it is set.
idx=$(hdr GET /v1/health/service/web | tr -d '\r' | sed -n 's/^X-Consul-Index: //p')
curl -s "$A/v1/health/service/web?index=$idx&wait=20s" > "$T/parked.body" & parked=$!
wait_for 5 "query parked" sh -c "curl -s '$CONTROL/requests' | grep -q 'web?index=$idx'"
curl -s -X POST "$CONTROL/faults" -d '{"path":"/v1/health/service","count":1,"kind":"garbage"}' >/dev/null
curl -s -X PUT "$A/v1/agent/check/pass/service:web-1?note=woken" >/dev/null
wait "$parked"
expect_eq "parked query woken into the fault" "<html>this is not JSON</html>" "$(cat "$T/parked.body")"
expect_contains "the fault used once" '"Service":"web"' "$(curl -s "$A/v1/health/service/web")"
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

# /v1/health/state is written straight from memory unless ?filter or
# ?pretty asks for the cJSON view: both give the same bytes, escapes and all.
curl -s -X PUT "$A/v1/agent/service/register" \
    -d '{"Name":"odd","ID":"odd-1","Port":81,"Tags":["q\"t","tab\there","\u00fc"],"Check":{"TTL":"30s"}}' >/dev/null
curl -s -X PUT "$A/v1/agent/check/fail/service:odd-1?note=a%22b%0Ac%01%5C" >/dev/null
# (A TTL expiring between the two reads changes a check's output without
# moving the index: they are taken again until they agree, which a
# systematic difference never does.)
same_view() {
    fast=$(curl -s "$A/v1/health/state/$1")
    slow=$(curl -s -G "$A/v1/health/state/$1" --data-urlencode 'filter=CheckID != ""')
    [ "$fast" = "$slow" ]
}
for st in any critical passing; do
    wait_for 5 "health/state/$st: direct = cJSON view" same_view "$st"
    expect_contains "health/state/$st: an answer" '"CheckID":"' "$fast"
done
expect_contains "health/state: escaped output" '"Output":"a\"b\nc\u0001\\"' "$fast$(curl -s "$A/v1/health/state/critical")"
expect_contains "health/state: escaped tags" '"ServiceTags":["q\"t","tab\there","ü"]' "$(curl -s "$A/v1/health/state/any")"
expect_contains "health/state: serf first" '[{"Node":"server-1","CheckID":"serfHealth"' "$(curl -s "$A/v1/health/state/any")"

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
