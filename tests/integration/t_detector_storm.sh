#!/bin/bash
# A storm of registrations of a service nobody follows (a fleet's gateways
# registering again after a deploy or an agent restart) does not make the
# change detector re-read every followed service once per registration:
# the first is read at once, the rest in rounds whose gap doubles while
# they keep coming. A followed service's new instance registered in the
# storm still arrives. Likewise a storm of check changes of services nobody
# here follows: the health/state long-polls rest, longer each time, instead
# of coming back for each change, and a followed instance failing in it is
# still applied.
. "$(dirname "$0")/lib.sh"
start_consul --agent node-1 --agent node-2 || finish
start_kong || finish
kong_services 10
cat > "$T/sidecar.json" <<JSON
{"consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "5m"}, "node": "kong-1", "drain": "0s",
 "upstreams": [$UPS],
 "proxy": {"kong": {"admin_url": "$KONG", "writer": "per-node"}},
 "watch": {"quiescence": {"min": "0s", "max": "0s"}}}
JSON
start_sidecar sidecar "$T/sidecar.json" || finish
wait_for 10 "detector announced" log_has sidecar "with the change detector (3 long-polls instead of 10)"
for i in 1 5 10; do wait_for 15 "s$i synced" kong_targets_are "s$i" "127.0.0.1:$((9000 + i))=1"; done
# The catalog long-poll is parked (its request carries an index) before the storm.
wait_for 10 "catalog long-poll parked" sh -c "curl -s '$CONTROL/requests' | grep -q '/v1/catalog/services?index='"

# One registration after a quiet spell: every followed service is read once.
curl -s -X DELETE "$CONTROL/requests" >/dev/null
register_instance node-2 gw-0 gateway 8000
reads() { curl -s "$CONTROL/requests" | grep -o '"url":"/v1/health/service/s[0-9]*' | wc -l; }
wait_for 10 "one registration: one round of reads" sh -c "[ \$(curl -s '$CONTROL/requests' | grep -o '/v1/health/service/s[0-9]*' | wc -l) -ge 10 ]"

# 60 registrations of gateways over about 6 s (one every 100 ms), and a new
# instance of a followed service in the middle of them.
sleep 3   # quiet longer than the gap: the storm's first registration is read at once
curl -s -X DELETE "$CONTROL/requests" >/dev/null
for i in $(seq 1 60); do
    register_instance node-2 "gw-$i" gateway $((8000 + i))
    [ "$i" -eq 30 ] && register_instance node-2 s7-b s7 9107
    sleep 0.1
done
wait_for 20 "s7's new instance applied" kong_targets_are s7 "127.0.0.1:9007=1 127.0.0.1:9107=1"
n=$(reads)
# Once a registration: 60 rounds of 10 reads. With the gap doubling from
# 1 s to 8 s, 6 s of registrations make at most 5 rounds.
[ "$n" -le 50 ] && ok || fail "re-reads during the storm: $n (at most 50 expected, 600 without the backoff)"
[ "$n" -ge 10 ] && ok || fail "re-reads during the storm: $n (at least one round expected)"
echo "storm: 61 registrations, $n service reads"

# 60 status changes of checks nobody here follows over about 6 s (the
# gateways going critical and passing again), and a followed instance
# failing in the middle: both lists come back on every change, and would be
# asked again for each (about 120 requests); they rest, longer each time.
sleep 2   # a quiet spell first
curl -s -X DELETE "$CONTROL/requests" >/dev/null
for i in $(seq 1 60); do
    set_check node-2 "gw-$(( (i + 1) / 2 ))-ttl" "$([ $((i % 2)) = 1 ] && echo fail || echo pass)"
    [ "$i" -eq 30 ] && set_check node-1 s7-a-ttl fail
    sleep 0.1
done
wait_for 20 "s7's failed instance removed" kong_targets_are s7 "127.0.0.1:9107=1"
polls=$(curl -s "$CONTROL/requests" | grep -o '"url":"/v1/health/state/[a-z]*' | wc -l)
[ "$polls" -le 40 ] && ok || fail "health/state requests during the check storm: $polls (at most 40 expected)"
echo "storm: 61 check changes, $polls health/state requests"
stop_pid "$SIDECAR_PID" TERM
finish
