#!/bin/bash
# Local probes drive TTL checks: target up -> passing with the probe output,
# 429 -> warning, 500 -> critical after failures_before_critical, slow ->
# critical (timeout); updates are sent only on change or before the TTL
# lapses; a killed sidecar lets the TTL lapse (critical) and
# deregister_critical_service_after reaps the service.
. "$(dirname "$0")/lib.sh"
start_consul --agent node-1 --reap-interval 200ms --reap-min 1s || finish
start_backend target || finish
TARGET=$BACKEND_PORT
cat > "$T/sidecar.json" <<JSON
{"consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "30s"}, "node": "node-1", "drain": "0s",
 "service": {"name": "gateway", "id": "gw-1", "port": 8000,
   "check": {"CheckID": "gw-ttl", "ttl": "4s", "failures_before_critical": 2,
             "deregister_critical_service_after": "2s",
             "probe": {"http": "http://127.0.0.1:$TARGET/status", "interval": "300ms", "timeout": "200ms"}}}}
JSON
start_sidecar sidecar "$T/sidecar.json" || finish
check() { curl -s "$CONSUL/v1/agent/checks" | grep -o '"gw-ttl":{[^}]*}'; }
status_is() { check | grep -q "\"Status\":\"$1\""; }
wait_for 10 "passing" status_is passing
expect_contains "probe output as the note" "HTTP GET http://127.0.0.1:$TARGET/status: 200 OK Output: target" "$(check)"

# Steady state: updates only before the TTL lapses (about one per ttl/2).
curl -s -X DELETE "$CONTROL/requests" >/dev/null
sleep 4.2  # counting updates over one TTL of unchanged results
n=$(curl -s "$CONTROL/requests" | grep -o '/v1/agent/check/update/gw-ttl' | wc -l)
[ "$n" -ge 1 ] && [ "$n" -le 3 ] && ok || fail "expected 1-3 refreshes in one TTL, got $n"

curl -s -X PUT "http://127.0.0.1:$TARGET/_backend/status/429" >/dev/null
wait_for 5 "429 is warning" status_is warning
expect_contains "warning output" "HTTP GET http://127.0.0.1:$TARGET/status: 429 Too Many Requests Output: " "$(check)"
curl -s -X DELETE "$CONTROL/requests" >/dev/null
sleep 1   # well under TTL/2 (2 s) after the change: three probes, same result
n=$(curl -s "$CONTROL/requests" | grep -o '/v1/agent/check/update/gw-ttl' | wc -l)
expect_eq "no update after the change while the result stays (probes every 300 ms)" 0 "$n"
curl -s -X PUT "http://127.0.0.1:$TARGET/_backend/status/500" >/dev/null
wait_for 5 "500 is critical" status_is critical
expect_contains "critical output" "500 Internal Server Error" "$(check)"
curl -s -X PUT "http://127.0.0.1:$TARGET/_backend/status/200" >/dev/null
wait_for 5 "passing again" status_is passing
curl -s -X PUT "http://127.0.0.1:$TARGET/_backend/delay/1000" >/dev/null
wait_for 5 "slow is critical" status_is critical
expect_contains "timeout output" "GET http://127.0.0.1:$TARGET/status: timed out" "$(check)"
curl -s -X PUT "http://127.0.0.1:$TARGET/_backend/delay/0" >/dev/null
wait_for 5 "recovers" status_is passing

# Killed: the TTL lapses by itself, then the service is reaped.
stop_pid "$SIDECAR_PID" KILL
wait_for 10 "TTL expired after the sidecar died" sh -c "curl -s '$CONSUL/v1/agent/checks' | grep -q 'TTL expired'"
wait_for 15 "reaped by deregister_critical_service_after" sh -c "[ \"\$(curl -s '$CONSUL/v1/agent/services')\" = '{}' ]"
finish
