#!/bin/bash
# The elected Kong writer under lock faults, one sidecar (kong-1) against the
# Consul and Kong doubles. Both doubles stamp requests with the same
# monotonic clock, so Kong writes are ordered against Consul requests:
# - no datacenter configured: the lock key is the agent's datacenter's;
# - the session TTL is sent exactly ("2500ms" arrives as 2.5s);
# - the lock key's watch does not busy-loop on an index that does not move;
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
 "upstreams": [{"service": "orders", "proxy": "kong"}],
 "proxy": {"kong": {"admin_url": "$KONG", "writer": "elected", "session_ttl": "2500ms", "lock_delay": "1s"}},
 "watch": {"quiescence": {"min": "0s", "max": "0s"}}}
JSON
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
# kong-1's Kong writes that arrived after FROM (and before TO, if given).
writes_between() {
    kong_log | awk -v a="$1" -v b="${2:-0}" '($2 == "POST" || $2 == "PATCH" || $2 == "PUT" || $2 == "DELETE") &&
        /\(kong-1\)/ && $1 > a && (b == 0 || $1 < b)' | wc -l
}
acquired() { grep -c "acquired writer lock for 'kong'" "$T/kong-1.log"; }
lost() { grep -c "lost writer lock for 'kong'" "$T/kong-1.log"; }
session_of_key() { curl -s "$A/v1/kv/$KEY" | sed -n 's/.*"Session":"\([^"]*\)".*/\1/p'; }
fault() { curl -s -X POST "$CONTROL/faults" -d "$1" >/dev/null; }
now_ms() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }

# The agent's datacenter names the key (none configured).
st=$(curl -s "$URL/status")
expect_contains "the key in the agent's datacenter" "\"key\": \"$KEY\"" "$st"
expect_contains "/status: writer" '"role": "writer"' "$st"
[ -n "$(session_of_key)" ] && ok || fail "no session holds $KEY in Consul: $(curl -s "$A/v1/kv/$KEY")"
expect_contains "the sidecar asked its agent" " kong-1 GET /v1/agent/self" "$(consul_log)"

# The TTL is sent as Go duration text, exactly: 2500ms, not rounded to 2s or 3s.
expect_contains "session TTL as sent" '"TTL":"2.5s"' "$(curl -s "$A/v1/session/node/kong-1")"

# Index pacing: the key's answers keep X-Consul-Index at 5 (backwards, then
# still): after at most two immediate re-reads, one read a second at most.
# The read parked before the fault is woken by a write of the same value;
# the next one, parked under the fault, by a second write.
fault '{"agent":"kong-1","path":"/v1/kv/'"$KEY"'","count":1000,"kind":"index","index":5}'
t0=$(consul_log | tail -1 | cut -d' ' -f1)
kv_reads() { consul_log | awk -v a="$t0" -v k="/v1/kv/$KEY" '$1 > a && $2 == "kong-1" && $3 == "GET" && index($4, k) == 1 { print $1 }'; }
reads_at_least() { [ "$(kv_reads | wc -l)" -ge "$1" ]; }
curl -s -X PUT "$A/v1/kv/$KEY" -d kong-1 >/dev/null
wait_for 5 "the watch parked again, under the fault" reads_at_least 1
curl -s -X PUT "$A/v1/kv/$KEY" -d kong-1 >/dev/null
wait_for 10 "five reads of the key since the fault" reads_at_least 5
reads=$(kv_reads | head -5 | tr '\n' ' ')
set -- $reads
gap1=$(( $4 - $3 )); gap2=$(( $5 - $4 ))
[ "$gap1" -ge 950 ] && [ "$gap2" -ge 950 ] && ok ||
    fail "reads of the key on an unmoving index came ${gap1} ms and ${gap2} ms apart (a busy loop)"
curl -s -X DELETE "$CONTROL/faults" >/dev/null
expect_eq "still the writer" 1 "$(acquired)"
expect_eq "never lost the lock" 0 "$(lost)"
finish
