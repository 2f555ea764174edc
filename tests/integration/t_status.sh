#!/bin/bash
# The status endpoint: /health 200 when registered and synced, 503 with the
# reason otherwise; /status JSON; /metrics valid Prometheus text with the
# documented families; unknown paths 404, writes 405; loopback only. No
# datacenter is configured: the agent's (a non-default "eu-west") is learnt
# from /v1/agent/self, shown in /status and put in the writer lock key.
. "$(dirname "$0")/lib.sh"
start_consul --agent node-1 --datacenter eu-west || finish
start_kong || finish
start_backend probe-target || finish
register_instance node-1 orders-1 orders 9001
cat > "$T/sidecar.json" <<JSON
{"consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "1s"}, "node": "node-1", "drain": "0s",
 "service": {"name": "gateway", "id": "gw-1", "port": 8000,
             "check": {"ttl": "10s", "probe": {"tcp": "127.0.0.1:$BACKEND_PORT", "interval": "1s"}}},
 "upstreams": [{"service": "orders", "proxy": "kong"}],
 "proxy": {"kong": {"admin_url": "$KONG", "writer": "per-node"}},
 "watch": {"quiescence": {"min": "0s", "max": "0s"}}}
JSON
start_sidecar sidecar "$T/sidecar.json" || finish
wait_for 10 "healthy" sh -c "curl -sf '$STATUS_URL/health' >/dev/null"
wait_for 10 "/status shows the agent's datacenter" sh -c "curl -s '$STATUS_URL/status' | grep -q '\"datacenter\": \"eu-west\"'"
expect_eq "the datacenter logged once" 1 "$(count_lines "$T/sidecar.log" "Datacenter 'eu-west' (the Consul agent's)")"
http GET "$STATUS_URL/status"
expect_eq "/status code" 200 "$STATUS"
expect_contains "/status node" '"node": "node-1"' "$BODY"
expect_contains "/status service" '"gw-1"' "$BODY"
expect_contains "/status Consul connection state" '"reachable": true' "$BODY"
wait_for 10 "upstream synced" kong_targets_are orders "127.0.0.1:9001=1"
wait_for 10 "probe passing" sh -c "curl -s '$CONSUL/v1/agent/checks' | grep -q '\"Status\":\"passing\"'"
curl -s -X POST "$CONTROL/leader" -d '{"leader":"server-2"}' >/dev/null
wait_for 10 "leader change seen" log_has sidecar "New leader elected: 10.0.0.2:8300"
http GET "$STATUS_URL/status"
wait_for 10 "/status shows the check's probe result" sh -c "curl -s '$STATUS_URL/status' | grep -q '\"status\": \"passing\"'"
http GET "$STATUS_URL/status"
expect_contains "/status service check" '"id": "service:gw-1"' "$BODY"
expect_contains "/status check output" "TCP connect 127.0.0.1:$BACKEND_PORT" "$BODY"
for f in '"datacenter": "eu-west"' '"leader": "10.0.0.2:8300"' '"peers"' '"members"' \
         '"upstreams"' '"name": "orders"' '"target": "127.0.0.1:9001"' '"last_sync"' '"last_result"'; do
    expect_contains "/status field $f" "$f" "$BODY"
done
http GET "$STATUS_URL/metrics"
metrics=$BODY
printf '%s\n' "$metrics" > "$T/metrics.txt"
promtool check metrics < "$T/metrics.txt" > "$T/promtool.out" 2>&1; rc=$?
expect_eq "metrics are valid Prometheus text, nothing to lint ($(cat "$T/promtool.out"))" "0 0" "$rc $(wc -c < "$T/promtool.out")"
grep -v '^#' "$T/metrics.txt" > "$T/samples.txt"
for m in consul_sidecar_build_info consul_sidecar_consul_requests_total \
         consul_sidecar_registration_state consul_sidecar_check_status \
         consul_sidecar_sync_latency_seconds_bucket consul_sidecar_sync_latency_seconds_count \
         consul_sidecar_proxy_calls_total consul_sidecar_upstream_targets \
         consul_sidecar_leader_changes_total consul_sidecar_watch_events_total \
         consul_sidecar_cluster_members consul_sidecar_cluster_leader consul_sidecar_consul_writes_total \
         consul_sidecar_watch_restarts_total consul_sidecar_watch_index_resets_total; do
    expect_contains "metric $m" "$m" "$(cat "$T/samples.txt")"
done
expect_contains "targets per upstream" 'consul_sidecar_upstream_targets{upstream="orders"} 1' "$metrics"
http GET "$STATUS_URL/nope";   expect_eq "unknown path" 404 "$STATUS"
http POST "$STATUS_URL/health" '{}'; expect_eq "no writes" 405 "$STATUS"
expect_contains "loopback only" "127.0.0.1:" "$(grep 'Status endpoint listening' "$T/sidecar.log")"

# An elected Kong writer with no datacenter configured locks the key of the
# agent's datacenter.
cat > "$T/writer.json" <<JSON
{"consul": {"address": "127.0.0.1:$CONSUL_PORT"}, "node": "writer-1", "drain": "0s",
 "upstreams": [{"service": "orders", "name": "orders-elected", "proxy": "kong"}],
 "proxy": {"kong": {"admin_url": "$KONG", "writer": "elected"}}}
JSON
MAIN_STATUS_URL=$STATUS_URL
start_sidecar writer "$T/writer.json" || finish
WRITER_PID=$SIDECAR_PID
STATUS_URL=$MAIN_STATUS_URL
wait_for 10 "writer lock acquired" log_has writer "acquired writer lock for 'kong'"
http GET "$CONSUL/v1/kv/consul-sidecar/eu-west/kong-writer"
expect_eq "lock key in the agent's datacenter" 200 "$STATUS"
http GET "$CONSUL/v1/kv/consul-sidecar/dc1/kong-writer"
expect_eq "no lock key under the dc1 fallback" 404 "$STATUS"
stop_pid "$WRITER_PID" TERM
# A token without agent:read (403 on /v1/agent/self): said once, and the
# election goes on with the fallback key rather than waiting for ever.
curl -s -X POST "$CONTROL/faults" -d '{"path":"/v1/agent/self","count":100,"kind":"status","status":403,"body":"Permission denied: token with AccessorID '"'"'x'"'"' lacks permission '"'"'agent:read'"'"'"}' >/dev/null
sed 's/writer-1/writer-2/' "$T/writer.json" > "$T/writer2.json"
start_sidecar writer2 "$T/writer2.json" || finish
WRITER_PID=$SIDECAR_PID
STATUS_URL=$MAIN_STATUS_URL
wait_for 10 "403 said" log_has writer2 "(the token needs agent:read); set consul.datacenter; the writer lock key is 'consul-sidecar/dc1/kong-writer'"
wait_for 10 "elected without the datacenter" log_has writer2 "acquired writer lock for 'kong'"
expect_eq "403 said once" 1 "$(count_lines "$T/writer2.log" "Cannot learn the agent's datacenter")"
stop_pid "$WRITER_PID" TERM
curl -s -X DELETE "$CONTROL/faults" >/dev/null

# A sync that fails: 503 naming the upstream.
curl -s -X POST "$KONG_CONTROL/down" >/dev/null
register_instance node-1 orders-2 orders 9002
wait_for 10 "503 while the sync fails" sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' '$STATUS_URL/health')\" = 503 ]"
expect_contains "503 names the upstream" "upstream 'orders'" "$(curl -s "$STATUS_URL/health")"
http GET "$STATUS_URL/status"
expect_contains "/status last result" '"last_result": "error"' "$BODY"
expect_contains "/status last error" '"last_error": "reading the proxy failed' "$BODY"
curl -s -X POST "$KONG_CONTROL/up" >/dev/null
wait_for 30 "healthy again once Kong is back" sh -c "curl -sf '$STATUS_URL/health' >/dev/null"
curl -s -X POST "$CONTROL/agents/node-1/down" >/dev/null
curl -s -X POST -d '{"persist": false}' "$CONTROL/agents/node-1/restart" >/dev/null
wait_for 10 "503 while the agent is down" sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' '$STATUS_URL/health')\" = 503 ]"
expect_contains "503 names the reason" "Consul" "$(curl -s "$STATUS_URL/health")"
finish
