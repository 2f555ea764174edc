#!/bin/bash
# The Kong Admin API double against the behaviours the Kong Admin API spec
# lists for doubles: a table of requests -> status + body substring, then
# pagination, normalization, DB-less, RBAC and fault flows.
. "$(dirname "$0")/lib.sh"
start_kong || finish
K=$KONG
J='Content-Type: application/json'
req() { # METHOD PATH [BODY] -> STATUS, BODY
    if [ $# -ge 3 ]; then
        STATUS=$(curl -s -o "$T/b" -w '%{http_code}' -X "$1" -H "$J" --data-binary "$3" "$K$2")
    else
        STATUS=$(curl -s -o "$T/b" -w '%{http_code}' -X "$1" "$K$2")
    fi
    BODY=$(cat "$T/b")
}
cases=(
 'POST|/upstreams|{"name":"orders"}|201|"slots":10000'
 'POST|/upstreams|{"name":"orders"}|409|UNIQUE violation detected on '"'"'{name=\"orders\"}'"'"''
 'POST|/upstreams|{}|400|schema violation (name: required field missing)'
 'POST|/upstreams|{"name":"x","foo":1}|400|"foo":"unknown field"'
 'POST|/upstreams|{"name":"x","foo":1,"bar":2}|400|2 schema violations (bar: unknown field; foo: unknown field)'
 'POST|/upstreams|{bad json|400|{"message":"Cannot parse JSON body"}'
 'GET|/upstreams/10.0.0.1||400|Invalid name ('"'"'10.0.0.1'"'"'); no ip addresses allowed'
 'GET|/upstreams/nope||404|{"message":"Not found"}'
 'PATCH|/upstreams/nope|{"slots":20}|404|could not find the entity with '"'"'{name=\"nope\"}'"'"''
 'DELETE|/upstreams/nope||204|'
 'DELETE|/upstreams||405|{"message":"Method not allowed"}'
 'GET|/nowhere||404|{"message":"Not found"}'
 'GET|/targets||404|{"message":"Not found"}'
 'POST|/upstreams/orders/targets|{"target":"10.0.0.1"}|201|"target":"10.0.0.1:8000"'
 'POST|/upstreams/orders/targets|{"target":"10.0.0.1:8000"}|409|"fields":{"target":"10.0.0.1:8000","upstream":{"id"'
 'POST|/upstreams/orders/targets|{"target":"010.000.000.002:80","weight":5}|201|"target":"10.0.0.2:80"'
 'POST|/upstreams/orders/targets|{"target":"fd00::21"}|201|"target":"[fd00:0000:0000:0000:0000:0000:0000:0021]:8000"'
 'POST|/upstreams/orders/targets|{}|400|target: required field missing'
 'POST|/upstreams/orders/targets|{"target":"not a host"}|400|Invalid target; not a valid hostname or ip address'
 'POST|/upstreams/orders/targets|{"target":"10.0.0.9:80","weight":"10"}|400|weight: expected an integer'
 'POST|/upstreams/orders/targets|{"target":"10.0.0.9:80","weight":70000}|400|weight: value should be between 0 and 65535'
 'POST|/upstreams/nope/targets|{"target":"10.0.0.9:80"}|404|{"message":"Not found"}'
 'PATCH|/upstreams/orders/targets/10.0.0.2:80|{"weight":0}|200|"weight":0'
 'GET|/upstreams/orders/targets/10.0.0.2:80||200|"weight":0'
 'GET|/upstreams/orders/targets/10.0.0.2||404|Not found'
 'PUT|/upstreams/orders/targets/10.9.9.9:80|{"weight":1}|404|Not found'
 'DELETE|/upstreams/orders/targets/10.0.0.2:80||204|'
 'DELETE|/upstreams/orders/targets/10.0.0.2:80||404|Not found'
 'PUT|/upstreams/orders/targets||405|Method not allowed'
 'PUT|/upstreams/orders/targets/10.0.0.1:8000/healthy||400|no healthchecker found for orders'
 'POST|/upstreams/orders/targets/10.0.0.1:8000/healthy||405|Method not allowed'
 'GET|/upstreams/orders/health||200|"HEALTHCHECKS_OFF"'
 'GET|/upstreams?size=0||400|size must be an integer between 1 and 1000'
 'GET|/upstreams?size=abc||400|size must be a number'
 'GET|/upstreams/orders/targets?size=5000||200|"next":null'
 'GET|/config||400|only available when Kong is configured to not use a database'
 'GET|/||200|"database":"postgres"'
)
for c in "${cases[@]}"; do
    IFS='|' read -r m p b want_status want <<<"$c"
    if [ -n "$b" ]; then req "$m" "$p" "$b"; else req "$m" "$p"; fi
    expect_eq "$m $p status" "$want_status" "$STATUS"
    [ -n "$want" ] && expect_contains "$m $p body" "$want" "$BODY"
done
h=$(curl -s -D - -o /dev/null "$K/upstreams")
expect_contains "content type" "Content-Type: application/json; charset=utf-8" "$h"
expect_contains "server header" "Server: kong/3.9.1" "$h"
s=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: text/plain' --data-binary x "$K/upstreams")
expect_eq "415 for other content types" 415 "$s"
s=$(curl -s -o /dev/null -w '%{http_code}' -X POST --data-urlencode name=formup "$K/upstreams")
expect_eq "form bodies accepted" 201 "$s"

# Newest first, and pagination over 250 targets following next.
curl -s -X POST -H "$J" "$K/upstreams" -d '{"name":"big"}' >/dev/null
for i in $(seq 1 250); do
    curl -s -o /dev/null -X POST -H "$J" "$K/upstreams/big/targets" -d "{\"target\":\"10.1.$((i / 250)).$((i % 250)):80\"}"
done
next="/upstreams/big/targets?size=100"; pages=0; total=0
while [ -n "$next" ] && [ $pages -lt 10 ]; do
    page=$(curl -s "$K$next")
    total=$(( total + $(printf '%s' "$page" | grep -o '"target":' | wc -l) ))
    pages=$((pages + 1))
    next=$(printf '%s' "$page" | sed -n 's/.*"next":"\([^"]*\)".*/\1/p')
    [ -n "$next" ] && next="$next&size=100"
done
expect_eq "pages" 3 "$pages"
expect_eq "all targets seen once" 250 "$total"
first=$(curl -s "$K/upstreams/big/targets?size=1" | grep -o '"target":"[^"]*"')
expect_eq "newest first" '"target":"10.1.1.0:80"' "$first"

# Faults and request log.
curl -s -X POST "$KONG_CONTROL/faults" -d '{"path":"/upstreams","count":1,"kind":"status","status":503}' >/dev/null
req GET /upstreams; expect_eq "fault" 503 "$STATUS"
req GET /upstreams; expect_eq "fault used once" 200 "$STATUS"
curl -s -A "consul-sidecar/0.1.0 (kong-9)" "$K/upstreams" >/dev/null
expect_contains "log has user agents" "GET /upstreams 200 consul-sidecar/0.1.0 (kong-9)" "$(curl -s "$KONG_CONTROL/requests.txt")"
curl -s -X POST "$KONG_CONTROL/down" >/dev/null
s=$(curl -s -o /dev/null -w '%{http_code}' "$K/"); expect_eq "down: connection refused" 000 "$s"
curl -s -X POST "$KONG_CONTROL/up" >/dev/null
req GET /; expect_eq "up again" 200 "$STATUS"
stop_pid "$KONG_PID"

# DB-less: writes refused with the code-12 405, validation first; reads work.
start_kong --dbless || finish
K=$KONG
req POST /upstreams '{"name":"o"}'
expect_eq "dbless create" 405 "$STATUS"
expect_contains "dbless message" "cannot create 'upstreams' entities when not using a database" "$BODY"
req POST /upstreams '{}'; expect_eq "validation before dbless refusal" 400 "$STATUS"
req GET /; expect_contains "reports database off" '"database":"off"' "$BODY"
stop_pid "$KONG_PID"

# RBAC: Kong-Admin-Token required.
start_kong --rbac-token s3cret || finish
K=$KONG
req GET /upstreams; expect_eq "no token" 401 "$STATUS"
expect_contains "rbac message" "Invalid credentials. Token or User credentials required" "$BODY"
s=$(curl -s -o /dev/null -w '%{http_code}' -H 'Kong-Admin-Token: s3cret' "$K/upstreams")
expect_eq "with token" 200 "$s"
finish
