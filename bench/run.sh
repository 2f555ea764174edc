#!/bin/bash
# make bench: propagation latency and footprint of the sidecar against real
# HAProxy on loopback, measured in one run, written with the machine's
# description to bench/results/latest.md (and a latency plot when gnuplot is
# installed). Never part of make check.
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export ROOT
. "$ROOT/tests/integration/lib.sh"
NAME=bench
PROP=${BENCH_BIN:-$ROOT/build/rel/bin/bench}/propagate
N=${BENCH_CHANGES:-1000}
OUT=$ROOT/bench/results
mkdir -p "$OUT"

start_consul || finish
for b in 1 2; do start_backend "orders-$b" || finish; eval "PORT_$b=$BACKEND_PORT"; done
register_instance node-1 orders-1 orders "$PORT_1"
register_instance node-1 orders-2 orders "$PORT_2"
start_haproxy || finish
run_sidecar() { # NAME QMIN QMAX
    cat > "$T/$1.json" <<JSON
{"consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "30s"}, "node": "node-1", "drain": "0s",
 "upstreams": [{"service": "orders", "proxy": "haproxy"}],
 "proxy": {"haproxy": {"runtime": "unix://$HAPROXY_SOCK", "backend_prefix": "be_"}},
 "watch": {"quiescence": {"min": "$2", "max": "$3"}, "hold_down": "30s"}}
JSON
    start_sidecar "$1" "$T/$1.json" || finish
    wait_for 10 "$1 synced" serves_exactly "$FRONT" "orders-1 orders-2"
}
pct() { sort -n "$1" | awk -v p="$2" '{a[NR]=$1} END {i=int(NR*p); if (i<1) i=1; printf "%.2f", a[i]}'; }

echo "bench: $N changes, quiescence off"
run_sidecar off 0s 0s
"$PROP" "$CONSUL" orders-2-ttl "$HAPROXY_SOCK" be_orders "$N" 2 1 > "$T/lat-off.txt" || fail "propagate (off)"
OFF_PID=$SIDECAR_PID

# Idle footprint: nothing changes for 20 s.
ctx() { awk '/ctxt_switches/ {s+=$2} END {print s}' "/proc/$1/status"; }
c0=$(ctx "$OFF_PID"); sleep 20; c1=$(ctx "$OFF_PID")   # the measurement window itself
idle_per_min=$(( (c1 - c0) * 3 ))
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$OFF_PID/status")
conns=$(ss -tnp 2>/dev/null | grep "pid=$OFF_PID," | grep -c ":$CONSUL_PORT" || true)
stop_pid "$OFF_PID" TERM

QN=$(( N / 5 ))
echo "bench: $QN changes, quiescence min 100ms max 1s (changes back to back)"
run_sidecar on 100ms 1s
"$PROP" "$CONSUL" orders-2-ttl "$HAPROXY_SOCK" be_orders "$QN" 2 1 > "$T/lat-on.txt" || fail "propagate (on)"

# ---- scale: 1,000 services x 10 instances into HAProxy ------------------------
SCALE_S=${BENCH_SERVICES:-1000}; SCALE_P=${BENCH_PER:-10}; SCALE_T=$((SCALE_S * SCALE_P))
echo "bench: scale: $SCALE_S services x $SCALE_P instances"
stop_pid "$SIDECAR_PID" TERM
stop_pid "$CONSUL_PID" TERM
agents=""; for i in $(seq 1 40); do agents="$agents --agent a$i"; done
start_consul $agents || finish
{
    printf 'global\n    stats socket %s mode 600 level admin\n' "$T/scale.sock"
    printf 'defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n'
    for i in $(seq 1 "$SCALE_S"); do printf 'backend be_s%d\n    balance roundrobin\n' "$i"; done
} > "$T/scale.cfg"
start_bg haproxy-scale haproxy -db -f "$T/scale.cfg"
wait_for 20 "scale haproxy" test -S "$T/scale.sock" || finish
t0=$(date +%s%N)
"${BENCH_BIN:-$ROOT/build/rel/bin/bench}/load" "$T/consul.ports" "$SCALE_S" "$SCALE_P" || fail "load"
load_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
ups=""; for i in $(seq 1 "$SCALE_S"); do ups="$ups{\"service\": \"s$i\"},"; done
cat > "$T/scale.json" <<JSON
{"consul": {"address": "127.0.0.1:$(port_of "$T/consul.ports" a1)", "resync": "5m"}, "node": "a1", "drain": "0s",
 "upstreams": [${ups%,}],
 "proxy": {"haproxy": {"runtime": "unix://$T/scale.sock", "backend_prefix": "be_"}},
 "watch": {"quiescence": {"min": "0s", "max": "0s"}, "hold_down": "30s"}}
JSON
start_sidecar scale "$T/scale.json" || finish
sync_ms=$("$PROP" --wait-total "$T/scale.sock" "$SCALE_T") || fail "initial sync"
srss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$SIDECAR_PID/status")
sconns=$(ss -tnp 2>/dev/null | grep "pid=$SIDECAR_PID," | grep -c "127.0.0.1:" || true)
# One catalog change among 1,000 services: Consul requests and HAProxy result.
curl -s -X DELETE "$CONTROL/requests" >/dev/null
t0=$(date +%s%N)
curl -s -X PUT "$(agent_url a1)/v1/agent/check/fail/service:s1-1" >/dev/null
"$PROP" --wait-total "$T/scale.sock" $((SCALE_T - 1)) >/dev/null || fail "one change at scale"
change_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
sleep 1   # let the detector's follow-up requests land before counting
creqs=$(curl -s "$CONTROL/requests" | grep -o '"url":"/v1/health/service/[^"]*"' | wc -l)
curl -s -X PUT "$(agent_url a1)/v1/agent/check/pass/service:s1-1" >/dev/null
"$PROP" --wait-total "$T/scale.sock" "$SCALE_T" >/dev/null || fail "back to full"
# Propagation latency while following all of them (the change detector).
SN=${BENCH_SCALE_CHANGES:-200}
"$PROP" "$(agent_url a2)" "service:s1-2" "$T/scale.sock" be_s1 "$SN" "$SCALE_P" $((SCALE_P - 1)) \
    > "$T/lat-scale.txt" || fail "propagate at scale"

p50=$(pct "$T/lat-off.txt" 0.5); p99=$(pct "$T/lat-off.txt" 0.99); max=$(pct "$T/lat-off.txt" 1)
q50=$(pct "$T/lat-on.txt" 0.5); q99=$(pct "$T/lat-on.txt" 0.99); qmax=$(pct "$T/lat-on.txt" 1)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f", a / b; else print "n/a" }'; }
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
{
    echo "# consul-sidecar benchmark results"
    echo
    echo "Machine: $(nproc) cores, ${cpu:-unknown CPU}, $(uname -sr), $(date -u '+%Y-%m-%d %H:%M UTC')."
    echo "All on loopback in one run: the Consul API double, real HAProxy $(haproxy -v | head -1 | awk '{print $3}'), the sidecar built with -O2."
    echo
    echo "## Propagation latency (Consul commit -> HAProxy \`show servers state\`)"
    echo
    echo "| case | changes | p50 ms | p99 ms | max ms |"
    echo "|---|---|---|---|---|"
    echo "| sidecar, quiescence off | $N | $p50 | $p99 | $max |"
    echo "| sidecar, quiescence 100ms/1s, changes back to back (coalesced on purpose) | $QN | $q50 | $q99 | $qmax |"
    echo
    echo "Target: p99 <= 5 ms with quiescence off: $(awk -v v="$p99" 'BEGIN { print (v <= 5) ? "met" : "MISSED" }')."
    echo
    echo "## Against polling (model, not measured)"
    echo
    echo "A poller that reads Consul every P and applies what changed sees a change after U(0,P) plus the same apply cost: p50 = P/2, max = P."
    echo
    echo "| alternative | p50 ms | ratio to the sidecar's p50 |"
    echo "|---|---|---|"
    echo "| poll every 1 s | 500 | $(ratio 500 "$p50")x |"
    echo "| poll every 10 s | 5000 | $(ratio 5000 "$p50")x |"
    echo
    echo "## Footprint (sidecar following one upstream, idle for 20 s)"
    echo
    echo "| measure | value |"
    echo "|---|---|"
    echo "| context switches (wake-ups) per minute while idle | $idle_per_min |"
    echo "| RSS | ${rss_kb} kB |"
    echo "| TCP connections to Consul | $conns |"
    echo
    echo "## Scale: $SCALE_S services x $SCALE_P instances = $SCALE_T targets into HAProxy"
    echo
    echo "| measure | value |"
    echo "|---|---|"
    echo "| registering them in the Consul double (bench loader) | ${load_ms} ms |"
    echo "| initial sync of $SCALE_T targets into HAProxy (sidecar start -> all servers present) | ${sync_ms} ms (target 2,000 ms: $(awk -v v="$sync_ms" 'BEGIN { print (v <= 2000) ? "met" : "MISSED" }')) |"
    echo "| RSS at $SCALE_T targets | ${srss_kb} kB (target 8,192 kB: $(awk -v v="$srss_kb" 'BEGIN { print (v <= 8192) ? "met" : "MISSED" }')) |"
    echo "| memory per target (RSS at scale minus idle RSS) | $(awk -v a="$srss_kb" -v b="$rss_kb" -v n="$SCALE_T" 'BEGIN { printf "%.0f bytes", (a - b) * 1024 / n }') |"
    echo "| TCP connections to Consul while following $SCALE_S services | $sconns (change detector: 2 long-polls) |"
    echo "| one check change among $SCALE_S services: services re-read from Consul | $creqs |"
    echo "| one check change among $SCALE_S services: time to HAProxy | ${change_ms} ms |"
    echo "| propagation while following $SCALE_S services ($SN changes): p50 / p99 / max | $(pct "$T/lat-scale.txt" 0.5) / $(pct "$T/lat-scale.txt" 0.99) / $(pct "$T/lat-scale.txt" 1) ms |"
    echo
    echo "Where a target is missed: the initial sync runs one HAProxy runtime command per connection (an add and a ready per server), serialized; chaining commands per connection is the next step. RSS includes libcurl, OpenSSL and libmicrohttpd (about 10 MB before following anything)."
    echo
    echo "Not measured yet: 100,000 targets, a burst of 10,000 changes, the Kong double at scale, the nginx render-and-reload comparison."
} > "$OUT/latest.md"
cat "$OUT/latest.md"
if command -v gnuplot >/dev/null 2>&1; then
    gnuplot <<GP
set terminal pngcairo size 800,450 noenhanced
set output "$OUT/latency.png"
set title "consul-sidecar propagation latency, quiescence off ($N changes)"
set xlabel "latency (ms)"; set ylabel "changes"
binwidth=0.1; bin(x)=binwidth*floor(x/binwidth)
plot "$T/lat-off.txt" using (bin(\$1)):(1.0) smooth freq with boxes notitle
GP
    echo "bench: plot in $OUT/latency.png"
else
    echo "bench: install gnuplot-nox for the latency plot"
fi
finish
