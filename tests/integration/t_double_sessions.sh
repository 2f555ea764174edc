#!/bin/bash
# The Consul double's sessions against SESSIONS-KV.md ("Behaviours a double
# must reproduce"): TTL bounds (10s..86400s) refused with 400 and a text
# naming the TTL; a renew answers an array holding the session; destroying a
# session with Behavior "release" clears its keys' Session and starts their
# lock-delay; a failed node invalidates that node's sessions (serfHealth
# critical) and releases their locks; session info/node/list are blocking
# queries on the sessions' index.
. "$(dirname "$0")/lib.sh"
# Consul's own TTL bounds here (no --session-ttl-min): the cases test them.
start_consul --agent node-1 --agent node-2 || finish
A=$CONSUL
B=$(agent_url node-2)

# create AGENT_URL BODY: the new session's ID.
create() { curl -s -X PUT "$1/v1/session/create" -d "$2" | sed -n 's/.*"ID":"\([^"]*\)".*/\1/p'; }
# index_of URL: the X-Consul-Index of a GET.
index_of() { curl -s -D - -o /dev/null "$1" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-consul-index" {print $2}'; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# TTL bounds and texts. METHOD|PATH|BODY|STATUS|SUBSTRING
cases=(
 'PUT|/v1/session/create|{"TTL":"5s"}|400|Invalid Session TTL '"'"'5000000000'"'"', must be between [10s=24h0m0s]'
 'PUT|/v1/session/create|{"TTL":"9999ms"}|400|Invalid Session TTL '"'"'9999000000'"'"''
 'PUT|/v1/session/create|{"TTL":"86401s"}|400|Invalid Session TTL '"'"'86401000000000'"'"', must be between [10s=24h0m0s]'
 'PUT|/v1/session/create|{"TTL":"soon"}|400|Session TTL '"'"'soon'"'"' invalid'
 'PUT|/v1/session/create|{"TTL":"10s"}|200|"ID":'
 'PUT|/v1/session/create|{"TTL":"86400s"}|200|"ID":'
 'PUT|/v1/session/create|{"TTL":"15000ms"}|200|"ID":'
 'PUT|/v1/session/create|{"TTL":"0s"}|200|"ID":'
 'PUT|/v1/session/create|{"Behavior":"sideways"}|400|Invalid Behavior setting '"'"'sideways'"'"''
 'GET|/v1/session/info/||400|Missing session'
 'GET|/v1/session/node/||400|Missing node name'
 'GET|/v1/session/info/no-such-session||200|[]'
 'PUT|/v1/session/renew/no-such-session||404|Session id '"'"'no-such-session'"'"' not found'
)
for c in "${cases[@]}"; do
    IFS='|' read -r m p b want_status want <<<"$c"
    if [ -n "$b" ]; then http "$m" "$A$p" "$b"; else http "$m" "$A$p"; fi
    expect_eq "$m $p $b status" "$want_status" "$STATUS"
    [ -n "$want" ] && expect_contains "$m $p $b body" "$want" "$BODY"
done
# A TTL given in milliseconds is taken exactly (Go's duration syntax).
s=$(create "$A" '{"TTL":"15000ms","Name":"ms"}')
expect_contains "15000ms is 15s" '"TTL":"15s"' "$(curl -s "$A/v1/session/info/$s")"

# Renew: 200 with a JSON array holding exactly that session.
s=$(create "$A" '{"TTL":"20s","Name":"renewed","LockDelay":"3s"}')
http PUT "$A/v1/session/renew/$s"
expect_eq "renew status" 200 "$STATUS"
expect_eq "renew answers an array of one" 1 "$(printf '%s' "$BODY" | grep -o '"ID":' | wc -l)"
case "$BODY" in '['*']') ok ;; *) fail "renew body is not a JSON array: $BODY" ;; esac
expect_contains "the session in it" "\"ID\":\"$s\"" "$BODY"
expect_contains "with its TTL" '"TTL":"20s"' "$BODY"
expect_contains "with its behavior" '"Behavior":"release"' "$BODY"
# A renew writes nothing: the sessions' index does not move.
i1=$(index_of "$A/v1/session/list")
curl -s -X PUT "$A/v1/session/renew/$s" >/dev/null
expect_eq "renew leaves the index" "$i1" "$(index_of "$A/v1/session/list")"

# Blocking session reads. info: wakes when the session goes, answers [] with
# a higher index.
s=$(create "$A" '{"TTL":"30s","Name":"watched"}')
i=$(index_of "$A/v1/session/info/$s")
( curl -s -D "$T/info.h" -o "$T/info.out" "$A/v1/session/info/$s?index=$i&wait=20s"; now_ms > "$T/info.done" ) &
w=$!
wait_for 5 "the info query is parked" sh -c "curl -s $CONTROL/requests | grep -q 'session/info/$s?index=$i'"
t0=$(now_ms)
curl -s -X PUT "$A/v1/session/destroy/$s" >/dev/null
wait_for 5 "blocking info woke on destroy" test -s "$T/info.done"
wait "$w" 2>/dev/null
expect_eq "info after destroy" "[]" "$(cat "$T/info.out")"
ni=$(tr -d '\r' < "$T/info.h" | awk -F': ' 'tolower($1) == "x-consul-index" {print $2}')
[ "${ni:-0}" -gt "$i" ] && ok || fail "info index did not move: $i -> $ni"
# node: wakes when a session is created on that node.
i=$(index_of "$A/v1/session/node/node-2")
( curl -s -o "$T/node.out" "$A/v1/session/node/node-2?index=$i&wait=20s"; now_ms > "$T/node.done" ) &
w=$!
wait_for 5 "the node query is parked" sh -c "curl -s $CONTROL/requests | grep -q 'session/node/node-2?index=$i'"
s2=$(create "$B" '{"TTL":"30s","Name":"on-node-2"}')
wait_for 5 "blocking node query woke on create" test -s "$T/node.done"
wait "$w" 2>/dev/null
expect_contains "node-2's new session" "\"ID\":\"$s2\"" "$(cat "$T/node.out")"
expect_contains "on node-2" '"Node":"node-2"' "$(cat "$T/node.out")"
# list: nothing changes -> held for the wait, same index.
i=$(index_of "$A/v1/session/list")
t0=$(now_ms)
h=$(curl -s -D - -o /dev/null "$A/v1/session/list?index=$i&wait=400ms" | tr -d '\r')
took=$(( $(now_ms) - t0 ))
[ "$took" -ge 380 ] && ok || fail "list with an unchanged index answered after ${took} ms, not after its wait"
expect_contains "timeout keeps the index" "X-Consul-Index: $i" "$h"
expect_contains "blocking header" "X-Consul-Query-Backend: blocking-query" "$h"
http GET "$A/v1/session/list?index=abc"; expect_eq "bad index refused" 400 "$STATUS"

# Destroy with Behavior "release": Session cleared, value kept, lock-delay.
s=$(create "$A" '{"TTL":"30s","LockDelay":"2s"}')
o=$(create "$A" '{"TTL":"30s","LockDelay":"0s"}')
expect_eq "acquire" true "$(curl -s -X PUT "$A/v1/kv/dlk?acquire=$s" -d first)"
t0=$(now_ms)
expect_eq "destroy answers true" true "$(curl -s -X PUT "$A/v1/session/destroy/$s")"
kv=$(curl -s "$A/v1/kv/dlk")
expect_not_contains "Session cleared by destroy" '"Session"' "$kv"
expect_contains "value kept" '"Value":"Zmlyc3Q="' "$kv"
expect_eq "lock-delay after destroy" false "$(curl -s -X PUT "$A/v1/kv/dlk?acquire=$o" -d second)"
wait_for 6 "acquire once the lock-delay passed" sh -c "[ \"\$(curl -s -X PUT '$A/v1/kv/dlk?acquire=$o' -d second)\" = true ]"
took=$(( $(now_ms) - t0 ))
[ "$took" -ge 1900 ] && ok || fail "the 2s lock-delay after destroy ended after ${took} ms"
expect_contains "LockIndex 2 for the new holder" '"LockIndex":2' "$(curl -s "$A/v1/kv/dlk")"

# Node failure: serfHealth critical, that node's sessions invalidated (not
# another node's), their locks released with lock-delay, a key watcher woken.
sa=$(create "$A" '{"TTL":"30s","Name":"node-1 session"}')
sb=$(create "$B" '{"TTL":"30s","Name":"node-2 session","LockDelay":"2s"}')
expect_eq "node-2 acquires" true "$(curl -s -X PUT "$A/v1/kv/nlk?acquire=$sb" -d node-2)"
ki=$(index_of "$A/v1/kv/nlk")
( curl -s -o "$T/nlk.out" "$A/v1/kv/nlk?index=$ki&wait=20s"; now_ms > "$T/nlk.done" ) &
w=$!
wait_for 5 "the key watch is parked" sh -c "curl -s $CONTROL/requests | grep -q 'kv/nlk?index=$ki'"
curl -s -X POST "$CONTROL/members/node-2" -d '{"status":"failed"}' >/dev/null
wait_for 5 "the key's watcher woke" test -s "$T/nlk.done"
wait "$w" 2>/dev/null
expect_not_contains "lock released on node failure" '"Session"' "$(cat "$T/nlk.out")"
expect_contains "value kept" '"Value":"bm9kZS0y"' "$(cat "$T/nlk.out")"
expect_eq "node-2's session gone" "[]" "$(curl -s "$A/v1/session/info/$sb")"
expect_eq "no session left on node-2" "[]" "$(curl -s "$A/v1/session/node/node-2")"
expect_contains "node-1's session kept" "\"ID\":\"$sa\"" "$(curl -s "$A/v1/session/info/$sa")"
expect_contains "serfHealth critical" '"Status":"critical"' "$(curl -s "$A/v1/health/node/node-2" | grep -o '"CheckID":"serfHealth"[^}]*')"
expect_eq "lock-delay after node failure" false "$(curl -s -X PUT "$A/v1/kv/nlk?acquire=$sa" -d node-1)"
wait_for 6 "acquire after the lock-delay" sh -c "[ \"\$(curl -s -X PUT '$A/v1/kv/nlk?acquire=$sa' -d node-1)\" = true ]"
finish
