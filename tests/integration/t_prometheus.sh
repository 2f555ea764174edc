#!/bin/bash
# A real Prometheus scrapes the sidecar: promtool finds nothing to say about
# /metrics (format and naming lint), Prometheus sees the target up, a sync
# counter moves with a change and the sync-latency histogram answers
# histogram_quantile; the shipped alert rules load, pass `promtool check
# rules` and their own `promtool test rules`.
. "$(dirname "$0")/lib.sh"
for tool in prometheus promtool; do
    command -v $tool >/dev/null || { fail "$tool not installed (make deps installs prometheus)"; finish; }
done
RULES=$ROOT/contrib/prometheus
out=$(promtool check rules "$RULES/consul-sidecar.rules.yml" 2>&1); rc=$?
expect_eq "promtool check rules ($out)" 0 "$rc"
out=$(cd "$RULES" && promtool test rules consul-sidecar.rules.test.yml 2>&1); rc=$?
expect_eq "promtool test rules ($out)" 0 "$rc"

start_consul || finish
start_kong || finish
kong_services 1
cat > "$T/sidecar.json" <<JSON
{"consul": {"address": "127.0.0.1:$CONSUL_PORT"}, "node": "kong-1", "drain": "0s",
 "upstreams": [$UPS],
 "proxy": {"kong": {"admin_url": "$KONG", "writer": "per-node"}},
 "watch": {"quiescence": {"min": "0s", "max": "0s"}}}
JSON
start_sidecar sidecar "$T/sidecar.json" || finish
wait_for 10 "s1 synced" kong_targets_are s1 "127.0.0.1:9001=1" || finish
curl -s "$STATUS_URL/metrics" > "$T/metrics.txt"
out=$(promtool check metrics < "$T/metrics.txt" 2>&1); rc=$?
expect_eq "promtool check metrics: exit status" 0 "$rc"
expect_eq "promtool check metrics: no finding" "" "$out"

PROM_PORT=$("$BIN/freeport" 1)
PROM=http://127.0.0.1:$PROM_PORT
cat > "$T/prometheus.yml" <<YML
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: ["$RULES/consul-sidecar.rules.yml"]
scrape_configs:
  - job_name: consul-sidecar
    static_configs: [{targets: ["${STATUS_URL#http://}"]}]
YML
start_bg prometheus prometheus --config.file="$T/prometheus.yml" --storage.tsdb.path="$T/tsdb" \
    --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn
query() { curl -s "$PROM/api/v1/query" --data-urlencode "query=$1"; }
# A sample's value: the second element of "value":[time,"v"].
value_of() { query "$1" | sed -n 's/.*"value":\[[0-9.]*,"\([^"]*\)"\].*/\1/p'; }
is_up() { [ "$(value_of 'up{job="consul-sidecar"}')" = 1 ]; }
wait_for 30 "Prometheus scrapes the sidecar: up == 1" is_up || finish
calls() { value_of 'sum(consul_sidecar_proxy_calls_total{job="consul-sidecar",result="ok"})'; }
one_call() { [ "$(calls)" = 1 ]; }
wait_for 10 "the first sync's call seen" one_call || finish
register_instance node-1 s1-b s1 9101
wait_for 10 "the change applied" kong_targets_are s1 "127.0.0.1:9001=1 127.0.0.1:9101=1" || finish
two_calls() { [ "$(calls)" = 2 ]; }
wait_for 10 "Prometheus sees the sync counter move with the change" two_calls
finite() { v=$(value_of 'histogram_quantile(0.99, sum by (le) (rate(consul_sidecar_sync_latency_seconds_bucket{job="consul-sidecar"}[1m])))'); [ -n "$v" ] && [ "$v" != NaN ] && [ "$v" != "+Inf" ]; }
wait_for 10 "histogram_quantile over the sync latency answers a number" finite
expect_contains "the alert rules are loaded" '"name":"ConsulSidecarWriterLost"' "$(curl -s "$PROM/api/v1/rules")"
expect_eq "no alert fires for a healthy sidecar" "" "$(curl -s "$PROM/api/v1/alerts" | grep -o '"alertname":"[A-Za-z]*"' || true)"
finish
