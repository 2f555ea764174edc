#!/bin/bash
# SIGTERM: the services go into maintenance for the drain period (peers stop
# routing here), then are deregistered, and the sidecar exits 0. SIGUSR1
# toggles maintenance by hand.
. "$(dirname "$0")/lib.sh"
start_consul || finish
cat > "$T/sidecar.json" <<JSON
{"consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "30s"}, "node": "node-1", "drain": "2s",
 "service": {"name": "gateway", "id": "gw-1", "port": 8000}}
JSON
start_sidecar sidecar "$T/sidecar.json" || finish
wait_for 10 "registered" catalog_has gateway '"ID":"gw-1"'
in_maint() { curl -s "$CONSUL/v1/agent/checks" | grep -q '_service_maintenance:gw-1'; }
kill -USR1 "$SIDECAR_PID"
wait_for 5 "SIGUSR1 enters maintenance" in_maint
kill -USR1 "$SIDECAR_PID"
wait_for 5 "SIGUSR1 leaves maintenance" sh -c "! curl -s '$CONSUL/v1/agent/checks' | grep -q _service_maintenance"
# Toggled back while the agent is still answering the first toggle: the
# agent ends as last asked (out of maintenance), not as first asked.
curl -s -X POST "$CONTROL/faults" -d '{"path":"/v1/agent/service/maintenance","count":1,"kind":"delay","delay_ms":500}' >/dev/null
kill -USR1 "$SIDECAR_PID"
wait_for 5 "third toggle taken" sh -c "[ \$(grep -c 'Entering maintenance' '$T/sidecar.log') -ge 2 ]"
kill -USR1 "$SIDECAR_PID"
wait_for 5 "fourth toggle taken" sh -c "[ \$(grep -c 'Leaving maintenance' '$T/sidecar.log') -ge 2 ]"
wait_for 5 "the last toggle sent once the slow answer is back" sh -c "[ \$(curl -s '$CONTROL/requests' | grep -o '\"url\":\"/v1/agent/service/maintenance/' | wc -l) -ge 4 ]"
wait_for 5 "the agent follows the last toggle" sh -c "! curl -s '$CONSUL/v1/agent/checks' | grep -q _service_maintenance"
curl -s -X DELETE "$CONTROL/faults" >/dev/null

t0=$(date +%s%N)
kill -TERM "$SIDECAR_PID"
wait_for 5 "maintenance during drain" in_maint
curl -s "$CONSUL/v1/health/service/gateway?passing" | grep -q gw-1 && fail "a draining node must not be passing" || ok
# Still registered (in maintenance) through the drain period, not gone early.
while [ $(( ($(date +%s%N) - t0) / 1000000 )) -lt 1500 ]; do
    catalog_has gateway '"ID":"gw-1"' && in_maint && ok || fail "gone or out of maintenance $(( ($(date +%s%N) - t0) / 1000000 )) ms into a 2 s drain"
    sleep 0.2   # sampling the registration through the drain period
done
stop_pid "$SIDECAR_PID" TERM 15; rc=$?
t1=$(date +%s%N)
expect_eq "exit status" 0 "$rc"
[ $(( (t1 - t0) / 1000000 )) -ge 1900 ] && ok || fail "drain shorter than 2s: $(( (t1 - t0) / 1000000 )) ms"
expect_eq "deregistered after drain" "{}" "$(curl -s "$CONSUL/v1/agent/services")"
finish
