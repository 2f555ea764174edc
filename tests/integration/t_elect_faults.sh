#!/bin/bash
# The elected Kong writer under lock faults, one sidecar (kong-1) against the
# Consul and Kong doubles. Both doubles stamp requests with the same
# monotonic clock, so Kong writes are ordered against Consul requests:
# - no datacenter configured: the lock key is the agent's datacenter's;
# - the session TTL is sent exactly ("2500ms" arrives as 2.5s);
# - the lock key's watch does not busy-loop on an index that does not move;
# - renews go out on time while every ordinary Consul request slot is taken;
# - a renew answered late: the deadline counts from its send;
# - a renew answered 404: writes stop at once, the lock is sought again, and
#   nothing is written until a new lock is held;
# - the key deleted, or held by another session: writes stop;
# - a lock lost while a multi-target apply is in flight: no write after it;
# - a 409 on a duplicate POST: the target counts as present, no retry storm.
. "$(dirname "$0")/lib.sh"
start_consul --agent kong-1 --agent apps --session-ttl-min 1s --datacenter dc7 || finish
start_kong || finish
A=$(agent_url apps)
KEY=consul-sidecar/dc7/kong-writer
register_instance apps orders-1 orders 9001
p=$(port_of "$T/consul.ports" kong-1)
cat > "$T/kong-1.json" <<JSON
{"consul": {"address": "127.0.0.1:$p", "resync": "1s"}, "node": "kong-1", "drain": "0s",
 "service": {"name": "kong", "port": 8000,
             "check": {"check_id": "kong-ttl", "ttl": "2s",
                       "probe": {"tcp": "127.0.0.1:$(port_of "$T/kong.ports" admin)", "interval": "500ms"}}},
 "upstreams": [{"service": "orders", "proxy": "kong"}],
 "proxy": {"kong": {"admin_url": "$KONG", "writer": "elected", "session_ttl": "2500ms", "lock_delay": "1s"}},
 "watch": {"quiescence": {"min": "0s", "max": "0s"}}}
JSON
# The agent's first answer names a datacenter that cannot be part of a key:
# refused in one line, asked again.
curl -s -X POST "$CONTROL/faults" -d '{"agent":"kong-1","path":"/v1/agent/self","count":1,"kind":"status","status":200,"body":"{\"Config\":{\"Datacenter\":\"dc/7\",\"NodeName\":\"kong-1\"}}"}' >/dev/null
start_sidecar kong-1 "$T/kong-1.json" || finish
URL=$STATUS_URL
wait_for 15 "targets written" kong_targets_are orders "127.0.0.1:9001=1"

# consul_log: "TIME AGENT METHOD URL" a line, from the Consul double's log.
consul_log() {
    curl -s "$CONTROL/requests" | grep -o '{[^}]*}' |
        sed -n 's/.*"agent":"\([^"]*\)","method":"\([^"]*\)","url":"\([^"]*\)".*"time_ms":\([0-9]*\).*/\4 \1 \2 \3/p'
}
# kong_log: "TIME METHOD PATH STATUS USER-AGENT" a line (arrival times).
kong_log() { curl -s "$KONG_CONTROL/requests.txt?time"; }
# writes_since TIME: how many of kong-1's Kong writes arrived after TIME.
writes_since() {
    kong_log | awk -v a="$1" '($2 == "POST" || $2 == "PATCH" || $2 == "PUT" || $2 == "DELETE") &&
        /\(kong-1\)/ && $1 > a' | wc -l
}
acquired() { grep -c "acquired writer lock for 'kong'" "$T/kong-1.log"; }
lost() { grep -c "lost writer lock for 'kong'" "$T/kong-1.log"; }
session_of_key() { curl -s "$A/v1/kv/$KEY" | sed -n 's/.*"Session":"\([^"]*\)".*/\1/p'; }
fault() { curl -s -X POST "$CONTROL/faults" -d "$1" >/dev/null; }

# The agent's datacenter names the key (none configured).
expect_eq "a bad datacenter refused once" 1 "$(grep -c "Cannot learn the agent's datacenter: GET /v1/agent/self: bad answer: Config.Datacenter: not a datacenter name" "$T/kong-1.log")"
st=$(curl -s "$URL/status")
expect_contains "the key in the agent's datacenter" "\"key\": \"$KEY\"" "$st"
expect_contains "/status: writer" '"role": "writer"' "$st"
[ -n "$(session_of_key)" ] && ok || fail "no session holds $KEY in Consul: $(curl -s "$A/v1/kv/$KEY")"
expect_contains "the sidecar asked its agent" " kong-1 GET /v1/agent/self" "$(consul_log)"

# The TTL is sent as Go duration text, exactly: 2500ms, not rounded to 2s or 3s.
expect_contains "session TTL as sent" '"TTL":"2.5s"' "$(curl -s "$A/v1/session/node/kong-1")"

# Index pacing: the key's answers keep X-Consul-Index at 5 (backwards, then
# still): after at most two immediate re-reads, one read a second at most,
# however often the session renews succeed meanwhile (they cut short only an
# error backoff, never this pacing).
# The read parked before the fault is woken by a write of the same value;
# the next one, parked under the fault, by a second write.
fault '{"agent":"kong-1","path":"/v1/kv/'"$KEY"'","count":1000,"kind":"index","index":5}'
t0=$(consul_log | tail -1 | cut -d' ' -f1)
kv_reads() { consul_log | awk -v a="$t0" -v k="/v1/kv/$KEY" '$1 > a && $2 == "kong-1" && $3 == "GET" && index($4, k) == 1 { print $1 }'; }
reads_at_least() { [ "$(kv_reads | wc -l)" -ge "$1" ]; }
curl -s -X PUT "$A/v1/kv/$KEY" -d kong-1 >/dev/null
wait_for 5 "the watch parked again, under the fault" reads_at_least 1
curl -s -X PUT "$A/v1/kv/$KEY" -d kong-1 >/dev/null
wait_for 10 "six reads of the key since the fault" reads_at_least 6
reads=$(kv_reads | head -6 | tr '\n' ' ')
set -- $reads 0 0 0 0 0 0
gaps="$(( $4 - $3 )) $(( $5 - $4 )) $(( $6 - $5 ))"
[ "$(for g in $gaps; do [ "$g" -ge 950 ] || echo short; done)" = "" ] && ok ||
    fail "reads of the key on an unmoving index came $gaps ms apart, not a second or more"
curl -s -X DELETE "$CONTROL/faults" >/dev/null
expect_eq "still the writer" 1 "$(acquired)"
expect_eq "never lost the lock" 0 "$(lost)"

acquired_at_least() { [ "$(acquired)" -ge "$1" ]; }
# agent_since TIME PATH_PREFIX METHOD: kong-1's requests after TIME, their times.
agent_since() { consul_log | awk -v a="$1" -v u="$2" -v m="$3" '$1 > a && $2 == "kong-1" && $3 == m && index($4, u) == 1 { print $1 }'; }

# A busy client: kong-1's /v1/agent/ and /v1/status/ requests held 10 s
# (anti-entropy's checks, the TTL check's refresh every second, the cluster
# view's leader and members: one at a time each) fill its 4 ordinary slots
# within one cluster-view poll (5 s); session renews have slots of their own, so they
# still go out every TTL/2 and the lock is kept. Queued behind the held
# requests, the first renew would wait seconds, past the 2.25 s deadline.
t0=$(consul_log | tail -1 | cut -d' ' -f1)
fault '{"agent":"kong-1","path":"/v1/agent/","count":1000,"kind":"delay","delay_ms":10000}'
fault '{"agent":"kong-1","path":"/v1/status/","count":1000,"kind":"delay","delay_ms":10000}'
held() { consul_log | awk -v a="$t0" '$1 > a && $2 == "kong-1" && (index($4, "/v1/agent/") == 1 || index($4, "/v1/status/") == 1) { print $1 }'; }
saturated() { [ "$(held | wc -l)" -ge 4 ]; }
wait_for 10 "four ordinary requests held" saturated
t1=$(held | sed -n 4p)
renews_since() { [ "$(agent_since "$t1" /v1/session/renew/ PUT | wc -l)" -ge "$1" ]; }
wait_for 10 "three renews sent while the client is saturated" renews_since 3
set -- $(agent_since "$t1" /v1/session/renew/ PUT) 0 0 0
gaps="$(( $1 - t1 )) $(( $2 - $1 )) $(( $3 - $2 ))"
[ "$(for g in $gaps; do [ "$g" -lt 2000 ] || echo late; done)" = "" ] && ok ||
    fail "renews waited behind ordinary requests: $gaps ms apart"
expect_eq "the lock kept" 0 "$(lost)"
curl -s -X DELETE "$CONTROL/faults" >/dev/null

lost_at_least() { [ "$(lost)" -ge "$1" ]; }
log_count() { grep -cF -- "$1" "$T/kong-1.log"; }
# first_after TIME AGENT METHOD URL_PREFIX: the first such Consul request after TIME.
first_after() {
    consul_log | awk -v a="$1" -v g="$2" -v m="$3" -v u="$4" '$1 > a && $2 == g && $3 == m && index($4, u) == 1 { print; exit }'
}

# A renew answered late (700 ms each, TTL 2.5 s): the servers restarted the
# TTL when they took it, at the latest when it was sent, so the deadline
# (0.9 x TTL = 2.25 s) counts from the send: sends 1.25 s + 0.7 s apart leave
# 0.3 s for an answer that takes 0.7 s. Counted from the answer it would never
# expire. The writer stops, then gets a lock again once renews are fast.
fault '{"agent":"kong-1","path":"/v1/session/renew","count":1000,"kind":"delay","delay_ms":700}'
wait_for 10 "the writer stops: no renew within the TTL, counted from the send" \
    log_has kong-1 "lost writer lock for 'kong': no successful session renew within the TTL"
curl -s -X DELETE "$CONTROL/faults" >/dev/null
wait_for 15 "a lock again with a new session" acquired_at_least 2
wait_for 5 "the writer role in /status" sh -c "curl -s $URL/status | grep -q '\"role\": \"writer\"'"

# A renew answered 404: the session is gone. Writes stop at once (the WARN
# line), a new session is made and the lock sought again; the old session
# still holds the key until its TTL, then the lock-delay: no write in between.
old=$(session_of_key)
t0=$(consul_log | tail -1 | cut -d' ' -f1)
fault '{"agent":"kong-1","path":"/v1/session/renew","count":1,"kind":"status","status":404,"body":"Session id '"'"'gone'"'"' not found"}'
wait_for 5 "the WARN line" grep -q "\[WARN\] sidecar: lost writer lock for 'kong': session invalidated by Consul" "$T/kong-1.log"
t_loss=$(first_after "$t0" kong-1 PUT /v1/session/renew/ | cut -d' ' -f1)
register_instance apps orders-5 orders 9005
wait_for 15 "the lock sought and held again" acquired_at_least 3
wait_for 10 "then the new target written" kong_targets_are orders "127.0.0.1:9001=1 127.0.0.1:9005=1"
first_write=$(kong_log | awk -v a="$t_loss" '$1 > a && $2 != "GET" && /\(kong-1\)/ { print $1; exit }')
acq=$(consul_log | awk -v a="$t_loss" -v b="$first_write" -v u="/v1/kv/$KEY?acquire=" '$1 > a && $1 <= b && $2 == "kong-1" && index($4, u) == 1' | tail -1)
[ -n "$acq" ] && ok || fail "kong-1 wrote to Kong (at $first_write) after losing its session (at $t_loss) without acquiring again"
expect_not_contains "under a new session" "acquire=$old" "$acq"

# The key deleted under the holder: writes stop; the key is free (a delete is
# no invalidation: no lock-delay), so the lock is taken again at once.
n=$(log_count "the lock key no longer shows our session")
a=$(acquired)
curl -s -X DELETE "$A/v1/kv/$KEY" >/dev/null
wait_for 5 "writes stop when the key is deleted" sh -c "[ \$(grep -c 'the lock key no longer shows our session' $T/kong-1.log) -gt $n ]"
wait_for 5 "the free key acquired again" acquired_at_least $((a + 1))

# Another session takes the key (ours released behind our back; kong-1's
# next key requests held 800 ms so the intruder wins): writes stop, and
# changes meanwhile are not written.
intruder=$(curl -s -X PUT "$A/v1/session/create" -d '{"TTL":"60s","LockDelay":"0s"}' | sed -n 's/.*"ID":"\([^"]*\)".*/\1/p')
# take_lock: release kong-1's session's hold and acquire for the intruder;
# prints the time of the intruder's acquire.
take_lock() {
    local mine t
    mine=$(session_of_key)
    t=$(consul_log | tail -1 | cut -d' ' -f1)
    fault '{"agent":"kong-1","path":"/v1/kv/","count":2,"kind":"delay","delay_ms":800}'
    curl -s -X PUT "$A/v1/kv/$KEY?release=$mine" >/dev/null
    [ "$(curl -s -X PUT "$A/v1/kv/$KEY?acquire=$intruder" -d intruder)" = true ] || fail "the intruder did not get the lock"
    first_after "$t" apps PUT "/v1/kv/$KEY?acquire=" | cut -d' ' -f1
}
n=$(lost)
t_taken=$(take_lock)
wait_for 5 "writes stop when another session holds the key" lost_at_least $((n + 1))
expect_eq "the reason" 1 "$(grep "lost writer lock for 'kong'" "$T/kong-1.log" | tail -1 | grep -c 'the lock key no longer shows our session')"
wait_for 5 "standby, naming the holder" log_has kong-1 "standby; writer is 'intruder'"
st=$(curl -s "$URL/status")
expect_contains "/status: standby" '"role": "standby"' "$st"
expect_contains "/status: holder" '"holder": "intruder"' "$st"
for i in 6 7 8; do register_instance apps orders-$i orders 900$i; done
wait_for 5 "the standby keeps its desired state warm" sh -c "curl -s $URL/status | grep -q '127.0.0.1:9008'"

# A lock lost while a multi-target apply is in flight. The intruder lets go:
# kong-1 takes the lock and sends its three adds side by side, the first
# POST held 6 s by Kong; the lock is taken from it meanwhile: the write in
# flight is dropped at once (the apply ends well before Kong answers) and
# no write is sent after that.
curl -s -X DELETE "$KONG_CONTROL/requests" >/dev/null
curl -s -X POST "$KONG_CONTROL/faults" -d '{"path":"/upstreams/orders/targets","method":"POST","count":1,"kind":"delay","delay_ms":6000}' >/dev/null
expect_eq "no write while another holds the lock" 0 "$(writes_since "$t_taken")"
a=$(acquired)
curl -s -X PUT "$A/v1/kv/$KEY?release=$intruder" >/dev/null
wait_for 5 "kong-1 takes the freed lock" acquired_at_least $((a + 1))
kong_delayed() { [ "$(curl -s "$KONG_CONTROL/delayed")" = "$1" ]; }
wait_for 5 "the first POST of the apply is in flight" kong_delayed 1
expect_eq "one apply of three adds" 1 "$(log_count "applying 3 change(s) to kong (+3 -0 ~0)")"
n=$(lost)
t_taken=$(take_lock)
wait_for 5 "the lock lost mid-apply" lost_at_least $((n + 1))
wait_for 3 "the apply stops at once, the POST still held" log_has kong-1 "writes stopped: this sidecar is no longer the elected writer"
expect_eq "the held POST not answered yet" 1 "$(curl -s "$KONG_CONTROL/delayed")"
wait_for 8 "the POST in flight answered" kong_delayed 0
expect_eq "no write sent after the loss" 0 "$(writes_since "$t_taken")"
expect_eq "the three adds were sent together, before the loss" 3 "$(kong_writes "(kong-1)")"
curl -s -X PUT "$A/v1/kv/$KEY?release=$intruder" >/dev/null
wait_for 10 "the apply completed under the lock taken back" kong_targets_are orders \
    "127.0.0.1:9001=1 127.0.0.1:9005=1 127.0.0.1:9006=1 127.0.0.1:9007=1 127.0.0.1:9008=1"

# A 409 on a duplicate POST: while kong-1's POST of 9009 is held, the same
# target (tagged as ours) is created; the POST answers 409, the target counts
# as present: no retry, nothing failed, and read-backs write nothing more.
curl -s -X DELETE "$KONG_CONTROL/requests" >/dev/null
curl -s -X POST "$KONG_CONTROL/faults" -d '{"path":"/upstreams/orders/targets","method":"POST","count":1,"kind":"delay","delay_ms":1500}' >/dev/null
failed_before=$(log_count "will retry")
register_instance apps orders-9 orders 9009
wait_for 5 "kong-1's POST of 9009 is in flight" kong_delayed 1
http POST "$KONG/upstreams/orders/targets" '{"target":"127.0.0.1:9009","weight":1,"tags":["managed-by-consul-sidecar"]}'
expect_eq "the duplicate made first" 201 "$STATUS"
wait_for 5 "kong-1's POST answered 409" sh -c "curl -s $KONG_CONTROL/requests.txt | grep -q '^POST /upstreams/orders/targets 409 consul-sidecar/.*(kong-1)'"
readbacks() { kong_log | grep -c "GET /upstreams/orders/targets?size=1000 200 .*(kong-1)"; }
r=$(readbacks)
wait_for 10 "two read-backs after the 409" sh -c "[ \$(curl -s $KONG_CONTROL/requests.txt | grep -c 'GET /upstreams/orders/targets?size=1000 200 .*(kong-1)') -ge $((r + 2)) ]"
expect_eq "one POST, no retry storm" 1 "$(kong_log | grep -c 'POST /upstreams/orders/targets .*(kong-1)')"
expect_eq "nothing failed" "$failed_before" "$(log_count "will retry")"
expect_eq "the target once, in Kong" 1 "$(kong_targets orders | tr ' ' '\n' | grep -c '^127.0.0.1:9009=')"
expect_contains "the sync is ok" '"last_result": "ok"' "$(curl -s "$URL/status")"
finish
