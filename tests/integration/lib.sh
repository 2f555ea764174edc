# Shared helpers for integration scenarios. Source it from a t_*.sh script.
#
# Every scenario gets its own directory $T (kept and printed only on failure),
# starts processes with start_bg (their PIDs are recorded and killed at exit),
# lets programs pick their own ports (--port 0 + a port file) and waits on
# conditions with wait_for instead of sleeping.
set -u
# haproxy and nginx live in /usr/sbin, which a non-root user's PATH on
# Debian does not hold.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH=$PATH:/usr/sbin:/sbin ;; esac
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
BIN=$ROOT/bin
NAME=$(basename "$0" .sh)
T=$(mktemp -d "${TMPDIR:-/tmp}/cs-$NAME.XXXXXX")
PIDS=""
NAMES=""
SIDECAR_LOGS=""
FAILED=0
CHECKS=0

cleanup() {
    _failed_before=$FAILED
    for p in $PIDS; do kill "$p" 2>/dev/null; done
    for p in $PIDS; do
        i=0
        while kill -0 "$p" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
        { kill -9 "$p" && wait "$p"; } >/dev/null 2>&1
        wait "$p" 2>/dev/null; _rc=$?
        # A crash while stopping (abort, segfault) is named, not hidden.
        _pn=$(printf '%s\n' $NAMES | awk -F: -v p="$p" '$1 == p { print $2 }')
        if [ $_rc -eq 134 ] || [ $_rc -eq 139 ] || [ $_rc -eq 136 ]; then
            fail "'$_pn' (pid $p) died with signal $((_rc - 128)) while stopping"
        fi
    done
    # Memory errors are failures wherever they show: a sanitizer's report in
    # any log (SANITIZE=1), or a valgrind report (make valgrind).
    for f in "$T"/*.log; do
        [ -f "$f" ] || continue
        if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error: ' "$f"; then
            fail "$(basename "$f" .log): sanitizer report: $(grep -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error: ' "$f")"
        fi
    done
    # SECRETS: words (tokens) that must appear in no sidecar's log.
    for f in $SIDECAR_LOGS; do
        for _s in ${SECRETS:-}; do
            grep -qF -- "$_s" "$f" 2>/dev/null && fail "$(basename "$f" .log) logged a secret"
        done
    done
    for f in "$T"/*.valgrind; do
        [ -s "$f" ] || continue
        fail "$(basename "$f" .valgrind): valgrind report: $(grep -m1 '==[0-9]*== [A-Z]' "$f")"
    done
    if [ "$FAILED" -ne 0 ]; then
        echo "--- $NAME failed; logs kept in $T" >&2
        for f in "$T"/*.log; do
            [ -f "$f" ] || continue
            echo "--- $f (last 40 lines)" >&2
            tail -n 40 "$f" >&2
        done
    else
        [ -n "${KEEP_LOGS:-}" ] || rm -rf "$T"
    fi
    # The scenario had passed; what stopping found fails it after all.
    if [ "$_failed_before" -eq 0 ] && [ "$FAILED" -ne 0 ]; then
        echo "FAIL $NAME (when its processes were stopped)"
        exit 1
    fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# start_bg NAME CMD...: runs CMD in the background, output to $T/NAME.log;
# sets LAST_PID.
start_bg() {
    _n=$1; shift
    "$@" >"$T/$_n.log" 2>&1 &
    LAST_PID=$!
    PIDS="$PIDS $LAST_PID"
    NAMES="$NAMES $LAST_PID:$_n"
    echo "$LAST_PID" >"$T/$_n.pid"
}

# stop_pid PID [SIGNAL] [TIMEOUT_S]: signals PID, waits for it to exit and
# returns its exit status (fails the scenario if it does not exit in time).
stop_pid() {
    kill -"${2:-TERM}" "$1" 2>/dev/null
    _end=$(( $(date +%s) + ${3:-15} ))
    while kill -0 "$1" 2>/dev/null; do
        if [ "$(date +%s)" -ge $_end ]; then
            fail "process $1 did not exit within ${3:-15}s of SIG${2:-TERM}"
            kill -9 "$1" 2>/dev/null
            break
        fi
        sleep 0.05
    done
    wait "$1" 2>/dev/null
}

# wait_for TIMEOUT_S DESCRIPTION CMD...: polls CMD until it succeeds.
wait_for() {
    _to=$1; _d=$2; shift 2
    _end=$(( $(date +%s%N) / 1000000 + _to * 1000 ))
    while :; do
        if "$@" >/dev/null 2>&1; then return 0; fi
        if [ $(( $(date +%s%N) / 1000000 )) -ge $_end ]; then
            fail "timed out after ${_to}s waiting for: $_d"
            return 1
        fi
        sleep 0.05
    done
}

# port_of FILE [KEY]: a port from a port file. The file holds either a bare
# port, or "key port" lines.
port_of() {
    if [ $# -ge 2 ]; then awk -v k="$2" '$1 == k { print $2 }' "$1"; else head -n1 "$1" | awk '{print $NF}'; fi
}
wait_port_file() { wait_for "${2:-10}" "port file $1" test -s "$1"; }

# http METHOD URL [BODY]: sets STATUS and BODY (body also in $T/last_body).
http() {
    _m=$1; _u=$2; shift 2
    if [ $# -ge 1 ]; then
        STATUS=$(curl -s -o "$T/last_body" -w '%{http_code}' -X "$_m" \
            -H 'Content-Type: application/json' --data-binary "$1" "$_u")
    else
        STATUS=$(curl -s -o "$T/last_body" -w '%{http_code}' -X "$_m" "$_u")
    fi
    BODY=$(cat "$T/last_body" 2>/dev/null)
}

ok()   { CHECKS=$((CHECKS + 1)); }
fail() { FAILED=1; echo "FAIL [$NAME]: $*" >&2; }
expect_eq() { # DESCRIPTION EXPECTED ACTUAL
    if [ "$2" = "$3" ]; then ok; else fail "$1: expected '$2', got '$3'"; fi
}
expect_contains() { # DESCRIPTION NEEDLE HAYSTACK
    case "$3" in *"$2"*) ok ;; *) fail "$1: '$2' not found in '$(printf '%.300s' "$3")'" ;; esac
}
expect_not_contains() {
    case "$3" in *"$2"*) fail "$1: '$2' unexpectedly found" ;; *) ok ;; esac
}
# Counts lines of FILE matching a fixed string.
count_lines() { grep -cF -- "$2" "$1" 2>/dev/null || true; }

# Ends the scenario: prints one result line and exits with its status.
finish() {
    if [ "$FAILED" -eq 0 ]; then echo "ok   $NAME ($CHECKS checks)"; exit 0; fi
    echo "FAIL $NAME"; exit 1
}

# ---- project-specific helpers ------------------------------------------------

# start_consul [ARGS...]: starts the Consul double (agent node-1 unless ARGS
# name agents); sets CONSUL_PORT (first agent), CONTROL and CONSUL.
start_consul() {
    if [ $# -eq 0 ]; then set -- --agent node-1; fi
    rm -f "$T/consul.ports"
    start_bg consul "$BIN/consul-double" --port-file "$T/consul.ports" "$@"
    CONSUL_PID=$LAST_PID
    wait_for 10 "consul double port file" grep -q '^control ' "$T/consul.ports" || return 1
    CONTROL="http://127.0.0.1:$(port_of "$T/consul.ports" control)"
    CONSUL_PORT=$(awk '$1 != "control" { print $2; exit }' "$T/consul.ports")
    CONSUL="http://127.0.0.1:$CONSUL_PORT"
}
# agent_url NAME: base URL of one simulated agent.
agent_url() { echo "http://127.0.0.1:$(port_of "$T/consul.ports" "$1")"; }

# start_sidecar NAME CONFIG [ARGS...]: runs the daemon with its status
# endpoint on a free port; sets SIDECAR_PID and STATUS_URL (base URL).
# VALGRIND=1 runs every sidecar under memcheck (make valgrind); a report of
# definite leaks or errors makes the sidecar exit 99 at shutdown.
start_sidecar() {
    _sn=$1; _cfg=$2; shift 2
    _vg=""
    if [ "${VALGRIND:-0}" = 1 ]; then
        _vg="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --log-file=$T/$_sn.valgrind"
    fi
    start_bg "$_sn" $_vg "$BIN/consul-sidecar" -config "$_cfg" -listen 127.0.0.1:0 \
        -state-dir "$T/state-$_sn" "$@"
    SIDECAR_PID=$LAST_PID
    SIDECAR_LOGS="$SIDECAR_LOGS $T/$_sn.log"
    mkdir -p "$T/state-$_sn"
    wait_for "$( [ "${VALGRIND:-0}" = 1 ] && echo 60 || echo 10 )" "$_sn status endpoint" grep -q 'Status endpoint listening on' "$T/$_sn.log" || return 1
    STATUS_URL="http://$(sed -n 's/.*Status endpoint listening on \([0-9.:]*\).*/\1/p' "$T/$_sn.log" | head -n1)"
}

# catalog_has SERVICE NEEDLE: the catalog's health view of SERVICE mentions NEEDLE.
catalog_has() { curl -sf "$CONSUL/v1/health/service/$1" | grep -q -- "$2"; }
catalog_lacks() { ! catalog_has "$@"; }
# log_has NAME TEXT: the process's log contains TEXT.
log_has() { grep -qF -- "$2" "$T/$1.log"; }

# start_backend NAME: an HTTP server answering "NAME"; sets BACKEND_PORT.
start_backend() {
    rm -f "$T/backend-$1.port"
    start_bg "backend-$1" "$BIN/backend" --name "$1" --port-file "$T/backend-$1.port"
    wait_port_file "$T/backend-$1.port" || return 1
    BACKEND_PORT=$(cat "$T/backend-$1.port")
    eval "BACKEND_PID_$(echo "$1" | tr -c 'A-Za-z0-9\n' _)=$LAST_PID"
}

# register_instance AGENT ID SERVICE PORT [STATUS]: registers a backend
# instance straight through a simulated agent, with a TTL check in STATUS
# (default passing), as another node's sidecar would.
register_instance() {
    _st=${5:-passing}
    curl -sf -X PUT "$(agent_url "$1")/v1/agent/service/register" \
        -d "{\"ID\":\"$2\",\"Name\":\"$3\",\"Address\":\"127.0.0.1\",\"Port\":$4,\"Check\":{\"CheckID\":\"$2-ttl\",\"TTL\":\"10m\",\"Status\":\"$_st\"}}" >/dev/null
}
set_check() { # AGENT CHECK_ID pass|warn|fail
    curl -sf -X PUT "$(agent_url "$1")/v1/agent/check/$3/$2" >/dev/null
}
deregister_instance() { curl -sf -X PUT "$(agent_url "$1")/v1/agent/service/deregister/$2" >/dev/null; }

# start_haproxy: HAProxy with backend be_orders (roundrobin) holding one
# hand-made server "manual" and an admin socket; sets HAPROXY_SOCK, FRONT.
# HAPROXY_EXTRA, if set, is appended to the configuration (more frontends
# and backends).
start_haproxy() {
    _ports=$("$BIN/freeport" 1)
    FRONT_PORT=$_ports
    FRONT="http://127.0.0.1:$FRONT_PORT"
    HAPROXY_SOCK=$T/haproxy.sock
    cat > "$T/haproxy.cfg" <<CFG
global
    stats socket $HAPROXY_SOCK mode 600 level admin
    stats timeout 10s
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend fe
    bind 127.0.0.1:$FRONT_PORT
    default_backend be_orders
backend be_orders
    balance roundrobin
    server manual 127.0.0.1:${1:-1} weight 1 ${2:-disabled}
${HAPROXY_EXTRA:-}
CFG
    start_bg haproxy haproxy -db -f "$T/haproxy.cfg"
    HAPROXY_PID=$LAST_PID
    wait_for 10 "haproxy admin socket" test -S "$HAPROXY_SOCK"
}
haproxy_cmd() { printf '%s\n' "$1" | socat - "UNIX-CONNECT:$HAPROXY_SOCK"; }

# nginx_setup DIR PORT UPSTREAM SEED_PORT: an unprivileged nginx in DIR
# listening on 127.0.0.1:PORT, proxying to the upstream UPSTREAM whose file
# (DIR/conf.d/consul-UPSTREAM.conf, the sidecar's) starts with one server,
# SEED_PORT; sets NGX (the command line, for test_cmd) without starting it.
nginx_setup() {
    mkdir -p "$1/conf.d" "$1/logs"
    cat > "$1/nginx.conf" <<CFG
daemon off;
master_process on;
worker_processes 1;
pid $1/nginx.pid;
error_log $1/logs/error.log notice;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $1/tmp_body;
    proxy_temp_path $1/tmp_proxy;
    fastcgi_temp_path $1/tmp_fcgi;
    uwsgi_temp_path $1/tmp_uwsgi;
    scgi_temp_path $1/tmp_scgi;
    include $1/conf.d/*.conf;
    server {
        listen 127.0.0.1:$2;
        location / { proxy_pass http://$3; }
    }
}
CFG
    printf 'upstream %s { server 127.0.0.1:%s; }\n' "$3" "$4" > "$1/conf.d/consul-$3.conf"
    NGX="nginx -p $1 -c $1/nginx.conf"
}

# served_by URL N: the set of distinct answers over N requests, sorted, one line.
served_by() {
    for _i in $(seq "${2:-12}"); do curl -s --max-time 2 "$1"; echo; done | grep -v '^$' | sort -u | tr '\n' ' ' | sed 's/ $//'
}
# serves_exactly URL "a b": the distinct answers are exactly those names.
serves_exactly() { [ "$(served_by "$1" 12)" = "$2" ]; }

# start_kong [ARGS...]: the Kong Admin API double; sets KONG (admin URL) and
# KONG_CONTROL.
start_kong() {
    rm -f "$T/kong.ports"
    start_bg kong "$BIN/kong-double" --port-file "$T/kong.ports" "$@"
    KONG_PID=$LAST_PID
    wait_for 10 "kong double port file" grep -q '^control ' "$T/kong.ports" || return 1
    KONG="http://127.0.0.1:$(port_of "$T/kong.ports" admin)"
    KONG_CONTROL="http://127.0.0.1:$(port_of "$T/kong.ports" control)"
}
# kong_targets UPSTREAM: "host:port=weight" of every target (every page),
# sorted, on one line.
kong_targets() {
    _ko=""
    while :; do
        _kp=$(curl -s "$KONG/upstreams/$1/targets?size=1000${_ko:+&offset=$_ko}")
        printf '%s' "$_kp" | grep -o '"target":"[^"]*"\|"weight":[0-9]*' | paste -d' ' - - 2>/dev/null
        _ko=$(printf '%s' "$_kp" | grep -o '"offset":"[0-9]*"' | grep -o '[0-9][0-9]*')
        [ -n "$_ko" ] || break
    done | sed 's/"target":"\([^"]*\)" "weight":\([0-9]*\)/\1=\2/;s/"weight":\([0-9]*\) "target":"\([^"]*\)"/\2=\1/' | sort | tr '\n' ' ' | sed 's/ $//'
}
kong_targets_are() { [ "$(kong_targets "$1")" = "$2" ]; }
# kong_services N: services s1..sN, one instance each on node-1 (s<i>-a,
# port 9000+i), and UPS set to their upstreams on Kong (JSON list items).
kong_services() {
    UPS=""
    for _i in $(seq 1 "$1"); do
        register_instance node-1 "s$_i-a" "s$_i" $((9000 + _i))
        UPS="$UPS{\"service\": \"s$_i\", \"proxy\": \"kong\"},"
    done
    UPS=${UPS%,}
}
# kong_writes [UA_SUBSTRING]: number of write requests in the double's log.
kong_writes() {
    curl -s "$KONG_CONTROL/requests.txt" | grep -E '^(POST|PATCH|PUT|DELETE) ' |
        grep -F -- "${1:-}" | wc -l
}
