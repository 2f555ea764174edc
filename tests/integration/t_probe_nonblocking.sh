#!/bin/bash
# Probes never block the loop: while a probe waits on a target that accepts
# and never answers, a catalog change still reaches the proxy at once and the
# status endpoint still answers.
. "$(dirname "$0")/lib.sh"
start_consul || finish
start_kong || finish
HANG_PORT=$("$BIN/freeport" 1)
# Accepts every connection and says nothing for a minute.
start_bg hang socat -d -d "TCP-LISTEN:$HANG_PORT,bind=127.0.0.1,reuseaddr,fork" SYSTEM:"sleep 60"
wait_for 10 "hanging target listening" grep -q "listening on" "$T/hang.log"
cat > "$T/sidecar.json" <<JSON
{"consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "30s"}, "node": "node-1", "drain": "0s",
 "service": {"name": "gateway", "id": "gw-1", "port": 8000,
   "check": {"ttl": "30s", "probe": {"http": "http://127.0.0.1:$HANG_PORT/", "interval": "10s", "timeout": "8s"}}},
 "upstreams": [{"service": "orders", "proxy": "kong"}],
 "proxy": {"kong": {"admin_url": "$KONG", "writer": "per-node"}},
 "watch": {"quiescence": {"min": "0s", "max": "0s"}}}
JSON
start_sidecar sidecar "$T/sidecar.json" || finish
wait_for 10 "the probe is waiting on the silent target" grep -q "accepting connection" "$T/hang.log"
t0=$(( $(date +%s%N) / 1000000 ))
register_instance node-1 orders-1 orders 9001
wait_for 5 "the change reaches Kong" kong_targets_are orders "127.0.0.1:9001=1"
took=$(( $(date +%s%N) / 1000000 - t0 ))
[ "$took" -lt 1000 ] && ok || fail "a change took ${took} ms while a probe was waiting"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$STATUS_URL/status")
expect_eq "status endpoint answers during the probe" 200 "$code"
finish
