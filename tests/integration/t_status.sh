#!/bin/bash
# The status endpoint: /health 200 when registered and synced, 503 with the
# reason otherwise; /status JSON; /metrics valid Prometheus text with the
# documented families; unknown paths 404, writes 405; loopback only.
. "$(dirname "$0")/lib.sh"
start_consul || finish
cat > "$T/sidecar.json" <<JSON
{"consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "1s"}, "node": "node-1", "drain": "0s",
 "service": {"name": "gateway", "id": "gw-1", "port": 8000}}
JSON
start_sidecar sidecar "$T/sidecar.json" || finish
wait_for 10 "healthy" sh -c "curl -sf '$STATUS_URL/health' >/dev/null"
http GET "$STATUS_URL/status"
expect_eq "/status code" 200 "$STATUS"
expect_contains "/status node" '"node": "node-1"' "$BODY"
expect_contains "/status service" '"gw-1"' "$BODY"
http GET "$STATUS_URL/metrics"
metrics=$BODY
printf '%s\n' "$metrics" > "$T/metrics.txt"
"$BIN/promcheck" < "$T/metrics.txt" > "$T/samples.txt" 2> "$T/promcheck.err"
expect_eq "metrics are valid Prometheus text ($(cat "$T/promcheck.err"))" 0 "$?"
for m in consul_sidecar_build_info consul_sidecar_consul_requests_total \
         consul_sidecar_registration_state; do
    expect_contains "metric $m" "$m" "$(cat "$T/samples.txt")"
done
http GET "$STATUS_URL/nope";   expect_eq "unknown path" 404 "$STATUS"
http POST "$STATUS_URL/health" '{}'; expect_eq "no writes" 405 "$STATUS"
expect_contains "loopback only" "127.0.0.1:" "$(grep 'Status endpoint listening' "$T/sidecar.log")"

curl -s -X POST "$CONTROL/agents/node-1/down" >/dev/null
curl -s -X POST -d '{"persist": false}' "$CONTROL/agents/node-1/restart" >/dev/null
wait_for 10 "503 while the agent is down" sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' '$STATUS_URL/health')\" = 503 ]"
expect_contains "503 names the reason" "Consul" "$(curl -s "$STATUS_URL/health")"
finish
