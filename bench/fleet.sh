#!/bin/bash
# make bench-fleet: a fleet of sidecars against one Consul (the API double),
# measured from Consul's side: requests per catalog change, an agent restart
# (-dev style, everything lost), every sidecar restarted at once, steady
# state, and memory per node. Never part of make check. Writes
# bench/results/fleet.md (and fleet.png when gnuplot is there).
#
# Each sidecar is one gateway node: it registers its own "gateway" service
# with a TTL check fed by a TCP probe, and follows the same 10 upstreams
# (3 instances each) into nginx files whose "reload" only stamps the time
# (a counting sink: rendering and the reload command run for real, no nginx
# is needed per node). Sidecars are spread over several simulated agents,
# as several share one host agent in real deployments; the upstreams'
# instances live on one more agent ("seed") that is never restarted.
#
#   FLEET_SIZES   "50 200 500"   sidecars, one size after the other
#   FLEET_AGENTS  10             agents the sidecars are spread over
#   FLEET_RESYNC  30s            the sidecars' resync (anti-entropy) period
#   FLEET_REJOIN_MS 1000         an agent restart: the process is gone 300 ms
#                                (every connection dropped), then answers
#                                reads from an empty view this long before
#                                it has rejoined the servers
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export ROOT
. "$ROOT/tests/integration/lib.sh"
NAME=bench-fleet
BB=${BENCH_BIN:-$ROOT/build/rel/bin/bench}
SIZES=${FLEET_SIZES:-50 200 500}
K=${FLEET_AGENTS:-10}
RESYNC=${FLEET_RESYNC:-30s}
REJOIN_MS=${FLEET_REJOIN_MS:-1000}
UPS=10
PER=3
OUT=$ROOT/bench/results
R=$T/results
mkdir -p "$OUT" "$R"
# Every sidecar holds a few connections to its agent, and the double a
# thread and a descriptor for each.
ulimit -n 65536 2>/dev/null || ulimit -n 8192 2>/dev/null
say() { echo "fleet: $*" >&2; }
ms() { echo $(( $(date +%s%N) / 1000000 )); }
applied() { [ -f "$T/applied" ] && wc -l < "$T/applied" || echo 0; }
wait_applied() { # COUNT TIMEOUT_S
    local end=$(( $(date +%s) + $2 ))
    while [ "$(applied)" -lt "$1" ]; do
        [ "$(date +%s)" -ge "$end" ] && return 1
        sleep 0.1
    done
}
# The double's request log, saved; a log that did not come whole fails the run.
requests() {
    curl -s --max-time 60 "$CONTROL/requests" > "$1"
    python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$1" 2>/dev/null ||
        fail "the request log for $(basename "$1") did not come whole"
}
forget_requests() { curl -s -X DELETE "$CONTROL/requests" >/dev/null; }
stats() { python3 "$ROOT/bench/fleet_stats.py" "$@"; }

# One gateway node: node gw-I on agent a((I-1) % K + 1).
sidecar_config() { # I
    local i=$1 a=$(( ($1 - 1) % K + 1 )) ups=""
    for s in $(seq 1 $UPS); do ups="$ups{\"service\": \"s$s\", \"proxy\": \"nginx\"},"; done
    mkdir -p "$T/gw-$i/ngx" "$T/gw-$i/state"
    cat > "$T/gw-$i/sidecar.json" <<JSON
{"consul": {"address": "127.0.0.1:$(port_of "$T/consul.ports" "a$a")", "resync": "$RESYNC"},
 "node": "gw-$i", "drain": "0s", "listen": "127.0.0.1:0", "state_dir": "$T/gw-$i/state",
 "service": {"name": "gateway", "id": "gw-$i", "address": "127.0.0.1", "port": $PROBE_PORT,
   "check": {"ttl": "30s", "probe": {"tcp": "127.0.0.1:$PROBE_PORT", "interval": "10s"}}},
 "upstreams": [${ups%,}],
 "proxy": {"nginx": {"upstream_dir": "$T/gw-$i/ngx", "test_cmd": "true",
                     "reload_cmd": "echo gw-$i \$(date +%s%N) >> $T/applied"}}}
JSON
}
start_fleet() { # N
    FLEET_PIDS=""
    for i in $(seq 1 "$1"); do
        start_bg "gw-$i" "$BIN/consul-sidecar" -config "$T/gw-$i/sidecar.json"
        FLEET_PIDS="$FLEET_PIDS $LAST_PID"
    done
}
stop_fleet() {
    for p in $FLEET_PIDS; do kill -TERM "$p" 2>/dev/null; done
    for p in $FLEET_PIDS; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        wait "$p" 2>/dev/null
    done
}
# The agent that holds service:s1-1 (the bench loader's first instance).
flip_check() { # fail|pass
    for a in $(awk '$1 == "seed" { print $2 }' "$T/consul.ports"); do
        curl -sf -X PUT "http://127.0.0.1:$a/v1/agent/check/$1/service:s1-1" >/dev/null && return 0
    done
    return 1
}

for N in $SIZES; do
    say "$N sidecars over $K agents"
    [ -n "${CONSUL_PID:-}" ] && stop_pid "$CONSUL_PID" TERM 30
    agents="--agent seed"
    for a in $(seq 1 "$K"); do agents="$agents --agent a$a"; done
    start_consul $agents --max-per-agent $(( N / K + 64 )) || finish
    rm -rf "$T/applied" "$T"/gw-*   # a size's nodes start from nothing
    # The upstreams' instances, on the seed agent only.
    grep '^seed ' "$T/consul.ports" > "$T/seed.ports"
    "$BB/load" "$T/seed.ports" "$UPS" "$PER" >/dev/null || fail "load"
    PROBE_PORT=$(port_of "$T/consul.ports" control)   # any port that listens
    for i in $(seq 1 "$N"); do sidecar_config "$i"; done

    # ---- start-up: every sidecar at once, from nothing --------------------------
    forget_requests
    t0=$(ms)
    start_fleet "$N"
    wait_applied $(( N * UPS )) 600 || fail "$N: start-up: $(applied) of $(( N * UPS )) upstreams applied"
    START_MS=$(( $(ms) - t0 ))
    requests "$R/start-$N.json"
    sleep 5   # let registrations and first TTL updates settle

    # ---- memory per node ------------------------------------------------------
    MEM=$(for p in $FLEET_PIDS; do
        awk '{ v[$1] = $2 } END { print v["Pss:"], v["Private_Dirty:"], v["Private_Clean:"], v["Anonymous:"] }' "/proc/$p/smaps_rollup"
    done | stats mem)

    # ---- steady state -----------------------------------------------------------
    forget_requests; t0=$(ms); sleep 30
    requests "$R/steady-$N.json"; STEADY_MS=$(( $(ms) - t0 ))

    # ---- one catalog change: an instance of s1 fails, then passes again ---------------
    for verb in fail pass; do
        forget_requests
        l0=$(applied); t0=$(ms)
        flip_check "$verb" || fail "$N: flip $verb"
        wait_applied $(( l0 + N )) 60 || fail "$N: change ($verb): $(( $(applied) - l0 )) of $N applied"
        sleep 1
        requests "$R/change-$verb-$N.json"
        tail -n "+$(( l0 + 1 ))" "$T/applied" | awk -v t0="$t0" '{ printf "%.3f\n", $2 / 1e6 - t0 }' > "$R/change-$verb-$N.lat"
        printf '%s\n' "$t0" > "$R/change-$verb-$N.t0"
    done

    # ---- every agent restarted, -dev style (all its state lost) ----------------------
    forget_requests; t0=$(ms)
    restarts=""
    for a in $(seq 1 "$K"); do
        curl -s -X POST "$CONTROL/agents/a$a/restart" -d "{\"persist\": false, \"rejoin_ms\": $REJOIN_MS}" >/dev/null &
        restarts="$restarts $!"
    done
    wait $restarts   # not a bare wait: the sidecars are this shell's children too
    # Every gateway registered again (the double's catalog shows N).
    end=$(( $(date +%s) + 180 ))
    while [ "$(curl -s "$(agent_url seed)/v1/catalog/service/gateway" | grep -o '"ServiceID"' | wc -l)" -lt "$N" ]; do
        [ "$(date +%s)" -ge "$end" ] && { fail "$N: not every gateway re-registered"; break; }
        sleep 0.2
    done
    RESTORE_MS=$(( $(ms) - t0 ))
    sleep 2
    requests "$R/agents-$N.json"; printf '%s\n' "$t0" > "$R/agents-$N.t0"

    # ---- every sidecar restarted at once (a deploy: new containers, so no
    # state directory and no rendered files are left from before) ------------
    stop_fleet
    for i in $(seq 1 "$N"); do rm -rf "$T/gw-$i/ngx"/* "$T/gw-$i/state"/*; done
    forget_requests
    l0=$(applied); t0=$(ms)
    start_fleet "$N"
    wait_applied $(( l0 + N * UPS )) 600 || fail "$N: redeploy: $(( $(applied) - l0 )) applied"
    REDEPLOY_MS=$(( $(ms) - t0 ))
    requests "$R/redeploy-$N.json"
    stop_fleet

    echo "$START_MS $STEADY_MS $RESTORE_MS $REDEPLOY_MS $MEM" > "$R/meta-$N.txt"
done
stop_pid "$CONSUL_PID" TERM 30

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
{
    echo "# consul-sidecar fleet benchmark"
    echo
    echo "Machine: $(nproc) cores, ${cpu:-unknown CPU}, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr), $(date -u '+%Y-%m-%d %H:%M UTC'). All on loopback, one run: the Consul API double with $K agents for the sidecars and one for the upstreams, N sidecars each following the same $UPS upstreams ($PER instances each, so the change detector: three long-polls) into nginx files, each registering one service with a TTL check fed by a 10 s TCP probe. resync $RESYNC."
    echo
    stats report "$R" $SIZES
} > "$OUT/fleet.md"
cat "$OUT/fleet.md"
finish
