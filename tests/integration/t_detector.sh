#!/bin/bash
# A sidecar following more services than watch.max_blocking holds three
# long-polls (the change detector), not one per service, reads each service
# once at start, re-reads only the service whose checks changed, and sees a
# node recovering (a node-level check) for the services it hosts. Upstreams
# with their own "datacenter" are followed by that datacenter's detector
# (one set of long-polls per datacenter), not by a long-poll each.
. "$(dirname "$0")/lib.sh"
start_consul --agent node-1 --agent node-2 || finish
start_kong || finish
kong_services 12
register_instance node-2 s5-b s5 9105
cat > "$T/sidecar.json" <<JSON
{"consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "30s", "datacenter": "dc1"}, "node": "kong-1", "drain": "0s",
 "upstreams": [$UPS],
 "proxy": {"kong": {"admin_url": "$KONG", "writer": "per-node"}},
 "log_level": "debug",
 "watch": {"max_blocking": 4, "quiescence": {"min": "0s", "max": "0s"}}}
JSON
start_sidecar sidecar "$T/sidecar.json" || finish
wait_for 10 "detector announced" log_has sidecar "with the change detector (3 long-polls instead of 12)"
for i in 1 6 12; do
    wait_for 15 "s$i synced" kong_targets_are "s$i" "127.0.0.1:$((9000 + i))=1"
done
wait_for 15 "s5 synced with both nodes" kong_targets_are s5 "127.0.0.1:9005=1 127.0.0.1:9105=1"
reqs=$(curl -s "$CONTROL/requests")
reads=$(printf '%s' "$reqs" | grep -o '"url":"/v1/health/service/s[0-9]*"' | sort | uniq -c | awk '$1 != 1' | wc -l)
expect_eq "each service read once at start" 0 "$reads"
blocking=$(printf '%s' "$reqs" | grep -o '"url":"[^"]*index=[0-9]*&wait=[^"]*"' | grep -c '/v1/health/service/' || true)
expect_eq "no per-service long-poll" 0 "$blocking"
expect_contains "health/state long-poll, in the configured datacenter" '/v1/health/state/critical?dc=dc1&index=' "$reqs"
expect_contains "service reads in the configured datacenter" '/v1/health/service/s1?dc=dc1' "$reqs"
expect_contains "catalog/services long-poll" '/v1/catalog/services?dc=dc1&index=' "$reqs"

# A check change on s7 re-reads s7 only.
curl -s -X DELETE "$CONTROL/requests" >/dev/null
set_check node-1 s7-a-ttl fail
wait_for 10 "s7 emptied? no: held (hold_down), but re-read" sh -c "curl -s $CONTROL/requests | grep -q '/v1/health/service/s7'"
sleep 1   # let any further (wrong) re-reads happen before counting
reqs=$(curl -s "$CONTROL/requests")
others=$(printf '%s' "$reqs" | grep -o '"url":"/v1/health/service/s[0-9]*' | grep -vc '/s7$' || true)
expect_eq "only the changed service was re-read" 0 "$others"
# node-2 fails (serfHealth critical): its s5 instance leaves; it recovers:
# the instance comes back, although the last read of s5 no longer listed it.
timelines() { grep -Ec "Upstream 's5': change applied: answer_bytes=[1-9][0-9]* checks=[1-9][0-9]* arrival_ms=[0-9.]+ decode_ms=[0-9.]+ ask_ms=[0-9.]+ read_ms=[0-9.]+ apply_ms=[0-9.]+" "$T/sidecar.log"; }
n5=$(timelines)
curl -s -X POST "$CONTROL/members/node-2" -d '{"status":"failed"}' >/dev/null
wait_for 10 "failed node's instance removed" kong_targets_are s5 "127.0.0.1:9005=1"
# At debug level, where that change's time went (make bench reads this line).
more_timelines() { [ "$(timelines)" -gt "$n5" ]; }
wait_for 5 "s5's change timeline logged" more_timelines
curl -s -X POST "$CONTROL/members/node-2" -d '{"status":"alive"}' >/dev/null
wait_for 10 "recovered node's instance back" kong_targets_are s5 "127.0.0.1:9005=1 127.0.0.1:9105=1"
# Warning has its own list, which alone shows these two moves: a warning
# instance leaves (passing_only), and passing again brings it back.
set_check node-2 s5-b-ttl warn
wait_for 10 "warning instance left" kong_targets_are s5 "127.0.0.1:9005=1"
set_check node-2 s5-b-ttl pass
wait_for 10 "passing instance back" kong_targets_are s5 "127.0.0.1:9005=1 127.0.0.1:9105=1"
# A new instance of s3 (a registration) reaches Kong.
register_instance node-1 s3-b s3 9103
wait_for 10 "registration followed" kong_targets_are s3 "127.0.0.1:9003=1 127.0.0.1:9103=1"
# The re-read a check change asks for is answered with garbage, then the
# agent refuses it: the change is not lost (the detector's fingerprint has
# moved on already), the read is made again until it is answered.
curl -s -X POST "$CONTROL/faults" -d '{"path":"/v1/health/service/s9","count":1,"kind":"garbage"}' >/dev/null
curl -s -X POST "$CONTROL/faults" -d '{"path":"/v1/health/service/s9","count":1,"kind":"status","status":500,"body":"rpc error"}' >/dev/null
register_instance node-1 s9-b s9 9109
wait_for 10 "the garbled re-read refused" log_has sidecar "bad answer from /v1/health/service/s9"
wait_for 10 "the change applied after all" kong_targets_are s9 "127.0.0.1:9009=1 127.0.0.1:9109=1"

# Per datacenter: 4 upstreams in the agent's datacenter and 3 with their own
# "datacenter" (dc1, which the double serves too): 7 > max_blocking 4, so
# each datacenter gets its own detector, and none keeps a long-poll per
# service.
stop_pid "$SIDECAR_PID" TERM
ups=""
for i in 1 2 3 4; do
    register_instance node-1 "e$i-a" "e$i" $((9200 + i))
    ups="$ups{\"service\": \"e$i\", \"proxy\": \"kong\"},"
done
for i in 1 2 3; do
    register_instance node-1 "d$i-a" "d$i" $((9300 + i))
    ups="$ups{\"service\": \"d$i\", \"proxy\": \"kong\", \"datacenter\": \"dc1\"},"
done
cat > "$T/sidecar-dc.json" <<JSON
{"consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "30s"}, "node": "kong-1", "drain": "0s",
 "upstreams": [${ups%,}],
 "proxy": {"kong": {"admin_url": "$KONG", "writer": "per-node"}},
 "watch": {"max_blocking": 4, "quiescence": {"min": "0s", "max": "0s"}}}
JSON
curl -s -X DELETE "$CONTROL/requests" >/dev/null
start_sidecar sidecar2 "$T/sidecar-dc.json" || finish
wait_for 10 "the agent's datacenter's detector announced" log_has sidecar2 "Following 4 upstreams with the change detector (3 long-polls instead of 4)"
wait_for 10 "dc1's detector announced" log_has sidecar2 "Following 3 upstreams in datacenter 'dc1' with the change detector (3 long-polls instead of 3)"
wait_for 15 "e4 synced" kong_targets_are e4 "127.0.0.1:9204=1"
wait_for 15 "d3 synced" kong_targets_are d3 "127.0.0.1:9303=1"
reqs=$(curl -s "$CONTROL/requests")
blocking=$(printf '%s' "$reqs" | grep -o '"url":"[^"]*index=[0-9]*&wait=[^"]*"' | grep -c '/v1/health/service/' || true)
expect_eq "no per-service long-poll, in any datacenter" 0 "$blocking"
expect_contains "the agent's datacenter's health/state long-poll" '/v1/health/state/critical?index=' "$reqs"
expect_contains "dc1's health/state long-poll" '/v1/health/state/critical?dc=dc1&index=' "$reqs"
expect_contains "dc1's catalog/services long-poll" '/v1/catalog/services?dc=dc1&index=' "$reqs"
expect_contains "dc1's services read in dc1" '/v1/health/service/d2?dc=dc1' "$reqs"
# A change in dc1 reaches Kong through dc1's detector, re-reading that
# service only (in both detectors' answers only d2's checks moved).
curl -s -X DELETE "$CONTROL/requests" >/dev/null
register_instance node-1 d2-b d2 9312
wait_for 10 "dc1 registration followed" kong_targets_are d2 "127.0.0.1:9302=1 127.0.0.1:9312=1"
curl -s -X DELETE "$CONTROL/requests" >/dev/null
set_check node-1 d2-b-ttl fail
wait_for 10 "dc1 check change followed" kong_targets_are d2 "127.0.0.1:9302=1"
sleep 1   # let any further (wrong) re-reads happen before counting
reqs=$(curl -s "$CONTROL/requests")
others=$(printf '%s' "$reqs" | grep -o '"url":"/v1/health/service/[a-z0-9]*' | grep -vc '/d2$' || true)
expect_eq "only the changed dc1 service was re-read" 0 "$others"
finish
