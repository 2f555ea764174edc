#!/bin/bash
# The consul-sidecar demo: a whole gateway cluster on loopback, with real
# proxies and the Consul API double standing in for Consul (three simulated
# server agents with a leader). See README "Quick start".
#
#   demo/demo.sh run     play the scripted story, print a summary, exit 0
#                        (or non-zero naming the step that failed)
#   demo/demo.sh up      start everything and leave it running
#   demo/demo.sh down    stop exactly what `up` started (by PID)
#
# PROXY=haproxy (default) or PROXY=kong picks the gateway nodes' proxy.
set -u
# haproxy and nginx live in /usr/sbin, not in a non-root user's PATH on Debian.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH=$PATH:/usr/sbin:/sbin ;; esac
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/bin
RUN=${DEMO_DIR:-$ROOT/demo-run}
PROXY=${PROXY:-haproxy}
MODE=${1:-run}
PIDS_FILE=$RUN/pids

c_bold=$(printf '\033[1m'); c_dim=$(printf '\033[2m'); c_ok=$(printf '\033[32m')
c_bad=$(printf '\033[31m'); c_off=$(printf '\033[0m')
[ -t 1 ] || { c_bold=; c_dim=; c_ok=; c_bad=; c_off=; }

say()  { printf '\n%s== %s%s\n' "$c_bold" "$*" "$c_off"; }
note() { printf '   %s\n' "$*"; }
STEPS=(); RESULTS=()
step_ok()   { STEPS+=("$1"); RESULTS+=("ok"); printf '   %sok%s  %s\n' "$c_ok" "$c_off" "$1"; }
step_fail() {
    STEPS+=("$1"); RESULTS+=("FAILED"); printf '   %sFAILED%s  %s\n' "$c_bad" "$c_off" "$1"
    show_dead; summary; exit 1
}

# ---- process bookkeeping ------------------------------------------------------
start() { # NAME CMD...
    local n=$1; shift
    "$@" >"$RUN/$n.log" 2>&1 &
    echo "$! $n" >>"$PIDS_FILE"
    eval "PID_$(echo "$n" | tr -c 'A-Za-z0-9\n' _)=$!"
}
# show_dead: every started process that is no longer running, with the end
# of its log, so a failed step says why (a proxy that could not bind, say).
show_dead() {
    [ -f "$PIDS_FILE" ] || return 0
    while read -r pid name; do
        kill -0 "$pid" 2>/dev/null && continue
        printf '   %s%s (pid %s) is not running; the end of %s:%s\n' "$c_bad" "$name" "$pid" "$RUN/$name.log" "$c_off"
        tail -n 5 "$RUN/$name.log" 2>/dev/null | sed 's/^/      /'
    done <"$PIDS_FILE"
}
pid_of() { awk -v n="$1" '$2 == n { print $1 }' "$PIDS_FILE" | tail -n1; }
forget() { # NAME: it has exited; reap it and drop it from the pids file
    local p; p=$(pid_of "$1")
    wait "$p" 2>/dev/null
    awk -v p="$p" '$1 != p' "$PIDS_FILE" >"$PIDS_FILE.new" && mv "$PIDS_FILE.new" "$PIDS_FILE"
}
down() {
    [ -f "$PIDS_FILE" ] || { echo "demo: nothing running (no $PIDS_FILE)"; return 0; }
    # Sidecars first (they deregister), then the rest.
    tac "$PIDS_FILE" | while read -r pid name; do
        case "$name" in sc-*) kill -TERM "$pid" 2>/dev/null ;; esac
    done
    sleep 1
    tac "$PIDS_FILE" | while read -r pid name; do kill -TERM "$pid" 2>/dev/null; done
    for _ in $(seq 50); do
        alive=0
        while read -r pid name; do kill -0 "$pid" 2>/dev/null && alive=1; done <"$PIDS_FILE"
        [ $alive -eq 0 ] && break
        sleep 0.1
    done
    while read -r pid name; do kill -9 "$pid" 2>/dev/null; done <"$PIDS_FILE"
    rm -f "$PIDS_FILE"
    echo "demo: stopped everything it started"
}

wait_until() { # TIMEOUT DESC CMD...
    local to=$1 d=$2; shift 2
    local end=$(( $(date +%s) + to ))
    while ! "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -ge $end ] && return 1
        sleep 0.1
    done
}
port_of() { awk -v k="$2" '$1 == k { print $2 }' "$1"; }
agent() { echo "127.0.0.1:$(port_of "$RUN/consul.ports" "$1")"; }

# ---- the pieces -----------------------------------------------------------------
start_backend() { # NAME
    local n=$1
    start "backend-$n" "$BIN/backend" --name "$n" --port-file "$RUN/backend-$n.port"
    wait_until 10 "backend $n" test -s "$RUN/backend-$n.port" || step_fail "backend $n starts"
    local port; port=$(cat "$RUN/backend-$n.port")
    curl -s -X POST "http://127.0.0.1:$CONTROL_PORT/agents" -d "{\"name\":\"$n\"}" >/dev/null
    cat >"$RUN/sc-$n.json" <<JSON
{"consul": {"address": "$(agent "$n")", "resync": "10s"}, "node": "$n", "drain": "1s",
 "service": {"name": "orders", "id": "$n", "address": "127.0.0.1", "port": $port,
   "check": {"ttl": "5s", "failures_before_critical": 1, "deregister_critical_service_after": "1m",
     "probe": {"http": "http://127.0.0.1:$port/health", "interval": "500ms", "timeout": "400ms"}}}}
JSON
    start "sc-$n" "$BIN/consul-sidecar" -config "$RUN/sc-$n.json" -listen 127.0.0.1:0 -state-dir "$RUN/state-$n"
}

start_gateway() { # NAME
    local n=$1 fport sock
    fport=$("$BIN/freeport" 1)
    echo "$fport" >"$RUN/$n.port"
    curl -s -X POST "http://127.0.0.1:$CONTROL_PORT/agents" -d "{\"name\":\"$n\"}" >/dev/null
    mkdir -p "$RUN/state-$n"
    if [ "$PROXY" = kong ]; then
        cat >"$RUN/sc-$n.json" <<JSON
{"consul": {"address": "$(agent "$n")", "resync": "5s"}, "node": "$n", "drain": "2s",
 "service": {"name": "gateway", "id": "$n", "address": "127.0.0.1", "port": $KONG_ADMIN_PORT,
   "check": {"ttl": "5s", "deregister_critical_service_after": "1m",
     "probe": {"tcp": "127.0.0.1:$KONG_ADMIN_PORT", "interval": "1s", "timeout": "500ms"}}},
 "upstreams": [{"service": "orders", "proxy": "kong"}],
 "proxy": {"kong": {"admin_url": "http://127.0.0.1:$KONG_ADMIN_PORT", "writer": "elected",
                    "session_ttl": "10s", "lock_delay": "2s"}},
 "watch": {"quiescence": {"min": "100ms", "max": "1s"}, "hold_down": "5s"}}
JSON
    else
        sock=$RUN/$n.sock
        cat >"$RUN/$n.cfg" <<CFG
global
    stats socket $sock mode 600 level admin
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend fe
    bind 127.0.0.1:$fport
    http-request return status 200 content-type text/plain string "ok\n" if { path /_gateway/health }
    http-response set-header X-Gateway $n
    default_backend be_orders
backend be_orders
    balance roundrobin
    retries 2
    option redispatch
CFG
        start "haproxy-$n" haproxy -db -f "$RUN/$n.cfg"
        wait_until 10 "haproxy $n" test -S "$sock" || step_fail "HAProxy of $n starts"
        cat >"$RUN/sc-$n.json" <<JSON
{"consul": {"address": "$(agent "$n")", "resync": "5s"}, "node": "$n", "drain": "2s",
 "service": {"name": "gateway", "id": "$n", "address": "127.0.0.1", "port": $fport,
   "check": {"ttl": "5s", "deregister_critical_service_after": "1m",
     "probe": {"http": "http://127.0.0.1:$fport/_gateway/health", "interval": "500ms", "timeout": "400ms"}}},
 "upstreams": [{"service": "orders", "proxy": "haproxy"}],
 "proxy": {"haproxy": {"runtime": "unix://$sock", "backend_prefix": "be_"}},
 "watch": {"quiescence": {"min": "100ms", "max": "1s"}, "hold_down": "5s"}}
JSON
    fi
    start "sc-$n" "$BIN/consul-sidecar" -config "$RUN/sc-$n.json" -listen 127.0.0.1:0 -state-dir "$RUN/state-$n"
}

start_front() {
    FRONT_PORT=$("$BIN/freeport" 1)
    mkdir -p "$RUN/nginx/conf.d" "$RUN/nginx/logs"
    cat >"$RUN/nginx/nginx.conf" <<CFG
daemon off;
master_process on;
worker_processes 1;
pid $RUN/nginx/nginx.pid;
error_log $RUN/nginx/logs/error.log;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $RUN/nginx/tmp_body;
    proxy_temp_path $RUN/nginx/tmp_proxy;
    fastcgi_temp_path $RUN/nginx/tmp_fcgi;
    uwsgi_temp_path $RUN/nginx/tmp_uwsgi;
    scgi_temp_path $RUN/nginx/tmp_scgi;
    include $RUN/nginx/conf.d/*.conf;
    server {
        listen 127.0.0.1:$FRONT_PORT;
        location / {
            proxy_pass http://gateway;
            proxy_next_upstream error timeout http_502 http_503;
            add_header X-Via-Gateway \$upstream_addr;
        }
    }
}
CFG
    printf 'upstream gateway {\n    server 127.0.0.1:1 down;\n}\n' >"$RUN/nginx/conf.d/consul-gateway.conf"
    local ngx="nginx -p $RUN/nginx -c $RUN/nginx/nginx.conf"
    start nginx $ngx
    wait_until 10 "nginx" test -s "$RUN/nginx/nginx.pid" || step_fail "front nginx starts"
    curl -s -X POST "http://127.0.0.1:$CONTROL_PORT/agents" -d '{"name":"front"}' >/dev/null
    cat >"$RUN/sc-front.json" <<JSON
{"consul": {"address": "$(agent front)", "resync": "5s"}, "node": "front", "drain": "0s",
 "upstreams": [{"service": "gateway", "proxy": "nginx"}],
 "proxy": {"nginx": {"upstream_dir": "$RUN/nginx/conf.d",
                     "test_cmd": "$ngx -t -q",
                     "reload_cmd": "kill -HUP \$(cat $RUN/nginx/nginx.pid)"}},
 "watch": {"quiescence": {"min": "200ms", "max": "2s"}, "hold_down": "5s"}}
JSON
    start sc-front "$BIN/consul-sidecar" -config "$RUN/sc-front.json" -listen 127.0.0.1:0 -state-dir "$RUN/state-front"
}

FRONT() { echo "http://127.0.0.1:$FRONT_PORT/orders"; }
# served: distinct backends answering N requests through the whole chain.
served() {
    for _ in $(seq "${1:-24}"); do curl -s --max-time 2 "$(FRONT)"; echo; done |
        grep -v '^$' | sort | uniq -c | awk '{printf "%s x%s  ", $2, $1}'
}
served_set() {
    for _ in $(seq "${1:-24}"); do curl -s --max-time 2 "$(FRONT)"; echo; done |
        grep -v '^$' | sort -u | tr '\n' ' ' | sed 's/ $//'
}
serves_exactly() { [ "$(served_set 24)" = "$1" ]; }
gateways_in_front() { grep -c 'server 127.0.0.1:[0-9]* ' "$RUN/nginx/conf.d/consul-gateway.conf"; }
front_has_n_gateways() { [ "$(gateways_in_front)" -eq "$1" ]; }
show_log() { # NAME PATTERN
    grep -E "$2" "$RUN/$1.log" | tail -n "${3:-3}" | sed "s/^/   ${c_dim}[$1]${c_off} /"
}
# The gateway sidecars' latest "applying" line (Kong: only the writer has one).
show_applying() {
    for _f in "$RUN"/sc-gw-*.log; do
        _l=$(grep "applying" "$_f" | tail -n 1)
        [ -n "$_l" ] && printf '%s\n' "$_l" | sed "s/^/   ${c_dim}[$(basename "$_f" .log)]${c_off} /"
    done | tail -n "${1:-3}"
}
kong_targets() { curl -s "http://127.0.0.1:$KONG_ADMIN_PORT/upstreams/orders/targets" | grep -o '"target":"[^"]*"' | sort | tr '\n' ' '; }
kong_target_count() { [ "$(curl -s "http://127.0.0.1:$KONG_ADMIN_PORT/upstreams/orders/targets" | grep -o '"target":' | wc -l)" -eq "$1" ]; }

summary() {
    say "Summary"
    printf '   %-58s %s\n' "step" "result"
    for i in "${!STEPS[@]}"; do printf '   %-58s %s\n' "${STEPS[$i]}" "${RESULTS[$i]}"; done
}

# ---- main -------------------------------------------------------------------------
case "$MODE" in
down) down; exit 0 ;;
run|up) ;;
*) echo "usage: demo/demo.sh run|up|down" >&2; exit 2 ;;
esac
for b in consul-sidecar consul-double backend freeport; do
    [ -x "$BIN/$b" ] || { echo "demo: $BIN/$b missing; run 'make demo'" >&2; exit 1; }
done
[ -f "$PIDS_FILE" ] && down >/dev/null
rm -rf "$RUN"; mkdir -p "$RUN"; : >"$PIDS_FILE"
[ "$MODE" = run ] && trap 'down >/dev/null 2>&1' EXIT

say "Starting Consul (API double: 3 server agents, leader server-1)"
start consul "$BIN/consul-double" --servers 3 --agent seed --port-file "$RUN/consul.ports"
wait_until 10 "consul" grep -q '^control ' "$RUN/consul.ports" || step_fail "Consul double starts"
CONTROL_PORT=$(port_of "$RUN/consul.ports" control)
step_ok "Consul double up (leader 10.0.0.1:8300)"
if [ "$PROXY" = kong ]; then
    start kong "$BIN/kong-double" --port-file "$RUN/kong.ports"
    wait_until 10 "kong" grep -q '^admin ' "$RUN/kong.ports" || step_fail "Kong double starts"
    KONG_ADMIN_PORT=$(port_of "$RUN/kong.ports" admin)
    step_ok "Kong Admin API double up (shared datastore for all gateways)"
fi

say "Starting two 'orders' backends, each registered by its own sidecar"
start_backend orders-1; start_backend orders-2
say "Starting three gateway nodes ($PROXY), each with its own sidecar"
for g in gw-1 gw-2 gw-3; do start_gateway $g; done
say "Starting the front nginx, whose sidecar follows the 'gateway' service"
start_front

if [ "$PROXY" = kong ]; then
    wait_until 30 "kong targets" kong_target_count 2 ||
        step_fail "Kong upstream 'orders' gets both backends"
    note "Kong targets: $(kong_targets)"
    note "writer election: $(grep -h "acquired writer lock\|standby; writer is" "$RUN"/sc-gw-*.log | sed 's/.*sidecar: //' | sort | uniq -c | tr '\n' ';')"
    step_ok "one elected sidecar wrote both backends into Kong"
else
    wait_until 30 "front has 3 gateways" front_has_n_gateways 3 || step_fail "front nginx routes to 3 gateways"
    wait_until 30 "traffic" serves_exactly "orders-1 orders-2" || step_fail "requests reach both backends"
    note "24 requests through nginx -> HAProxy -> backend: $(served 24)"
    show_log sc-front "applying" 1
    show_log sc-gw-1 "applying" 1
    step_ok "3 gateways in the front, both backends behind every gateway"
fi

say "Scale the gateways from 3 to 4 (docker-compose scale kong=4)"
start_gateway gw-4
if [ "$PROXY" = kong ]; then
    wait_until 20 "gw-4 registered" sh -c "curl -s http://$(agent seed)/v1/health/service/gateway?passing | grep -q gw-4" || step_fail "gw-4 registers"
    show_log sc-gw-4 "Synced|standby" 2
    step_ok "gw-4 registered and standing by as a Kong writer"
else
    wait_until 30 "front has 4 gateways" front_has_n_gateways 4 || step_fail "front picks up gw-4"
    show_log sc-front "applying" 1
    show_log sc-gw-4 "Synced|applying" 2
    step_ok "front nginx now spreads over 4 gateways"
fi

say "Add an 'orders' instance"
start_backend orders-3
if [ "$PROXY" = kong ]; then
    wait_until 20 "kong 3 targets" kong_target_count 3 || step_fail "orders-3 reaches Kong"
    note "Kong targets: $(kong_targets)"
else
    wait_until 20 "orders-3 serves" serves_exactly "orders-1 orders-2 orders-3" || step_fail "orders-3 receives traffic"
    note "24 requests: $(served 24)"
fi
show_log sc-orders-3 "Synced service" 1
show_applying 3
step_ok "orders-3 registered and receiving traffic"

say "Fail an 'orders' instance (orders-1 starts answering 500)"
curl -s -X PUT "http://127.0.0.1:$(cat "$RUN/backend-orders-1.port")/_backend/status/500" >/dev/null
if [ "$PROXY" = kong ]; then
    wait_until 20 "kong 2 targets" kong_target_count 2 || step_fail "orders-1 leaves Kong"
    note "Kong targets: $(kong_targets)"
else
    wait_until 20 "orders-1 gone" serves_exactly "orders-2 orders-3" || step_fail "orders-1 stops receiving traffic"
    note "24 requests: $(served 24)"
fi
show_log sc-orders-1 "Check .* is now" 1
show_applying 3
step_ok "orders-1 critical (probe -> TTL check) and removed everywhere"

say "Change the Consul leader"
curl -s -X POST "http://127.0.0.1:$CONTROL_PORT/leader" -d '{"leader":"server-2"}' >/dev/null
wait_until 20 "leader logged" grep -q "New leader elected: 10.0.0.2:8300" "$RUN/sc-gw-1.log" || step_fail "sidecars log the new leader"
show_log sc-gw-1 "leader" 2
[ "$PROXY" = kong ] || { serves_exactly "orders-2 orders-3" || step_fail "traffic unaffected by the leader change"; }
step_ok "leader change logged; traffic unaffected"

say "Drain gw-2 with SIGTERM"
kill -TERM "$(pid_of sc-gw-2)"
if [ "$PROXY" = kong ]; then
    wait_until 20 "gw-2 gone" sh -c "! curl -s http://$(agent seed)/v1/health/service/gateway | grep -q '\"ID\":\"gw-2\"'" || step_fail "gw-2 drains and deregisters"
else
    wait_until 20 "front has 3 gateways" front_has_n_gateways 3 || step_fail "front drops the draining gw-2"
    errors=$(for _ in $(seq 30); do curl -s -o /dev/null -w '%{http_code}\n' "$(FRONT)"; done | grep -vc '^200$')
    note "30 requests during/after the drain: $errors errors"
    [ "$errors" -eq 0 ] || step_fail "no request fails while gw-2 drains"
fi
wait_until 20 "sc-gw-2 exits" grep -q "Shutdown complete" "$RUN/sc-gw-2.log" || step_fail "sc-gw-2 shuts down"
forget sc-gw-2
show_log sc-gw-2 "maintenance|Draining|Deregistered|Shutdown" 4
if [ "$PROXY" = kong ]; then
    step_ok "gw-2 drained (maintenance, drain, deregister)"
else
    step_ok "gw-2 drained (maintenance, drain, deregister) without failed requests"
fi

summary
if [ "$MODE" = up ]; then
    trap - EXIT
    say "Left running (demo-up). Try:"
    [ "$PROXY" = kong ] || note "curl $(FRONT)                       # nginx -> HAProxy -> backend"
    note "curl http://$(agent seed)/v1/health/service/orders    # the Consul double's catalog"
    note "curl -X PUT http://127.0.0.1:$(cat "$RUN/backend-orders-2.port")/_backend/status/500   # fail orders-2"
    note "tail -f $RUN/sc-*.log                                  # every sidecar's log"
    note "make demo-down                                         # stop exactly what was started"
fi
exit 0
