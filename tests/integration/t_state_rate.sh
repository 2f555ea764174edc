#!/bin/bash
# The state file costs at most one write a second: thirty upstreams changing
# in the same moment rewrite it a couple of times, not thirty; and it holds
# every change about a second after it was applied (what a SIGKILL can lose).
. "$(dirname "$0")/lib.sh"
start_consul || finish
start_kong || finish
N=30
kong_services $N
cat > "$T/sidecar.json" <<JSON
{"consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "30s"}, "node": "kong-1", "drain": "0s",
 "upstreams": [$UPS],
 "proxy": {"kong": {"admin_url": "$KONG", "writer": "per-node"}},
 "watch": {"quiescence": {"min": "0s", "max": "0s"}}}
JSON
mkdir -p "$T/state"
start_sidecar sidecar "$T/sidecar.json" -state-dir "$T/state" || finish
metrics_url() { echo "http://$(sed -n 's/.*Status endpoint listening on //p' "$T/sidecar.log" | head -n1)/metrics"; }
saves() { curl -s "$(metrics_url)" | awk '$1 == "consul_sidecar_state_saves_total{result=\"ok\"}" { print $2 }'; }
wait_for 20 "all synced" kong_targets_are "s$N" "127.0.0.1:$((9000 + N))=1"
wait_for 20 "all in the state file" grep -q "\"s$N\"" "$T/state/upstreams.json"
before=$(saves)
[ -n "$before" ] && ok || fail "no consul_sidecar_state_saves_total in /metrics"
# Every upstream gains an instance at once.
t0=$(date +%s%N)
for i in $(seq 1 $N); do register_instance node-1 "s$i-b" "s$i" $((9500 + i)); done
for i in 1 15 $N; do
    wait_for 20 "s$i applied" kong_targets_are "s$i" "127.0.0.1:$((9000 + i))=1 127.0.0.1:$((9500 + i))=1"
done
wait_for 3 "the last change saved about a second after it was applied" grep -q "9530" "$T/state/upstreams.json"
el_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
after=$(saves)
writes=$(( ${after%.*} - ${before%.*} ))
# At most one a second over the whole burst, plus the one it started with.
max=$(( el_ms / 1000 + 2 ))
[ "$writes" -ge 1 ] && [ "$writes" -le "$max" ] && ok ||
    fail "$N upstreams changing over ${el_ms} ms rewrote the state file $writes times (at most $max)"
finish
