#!/bin/bash
# A real cluster of hosts: three gateway nodes in their own network
# namespaces (own addresses, veth links), each a HAProxy + sidecar that
# registers the node with a TTL check fed by a local probe, and a front
# HAProxy + sidecar that routes to the healthy ones. Cutting one node's link
# lets its TTL lapse and the front stops routing to it; healing brings it back.
# Needs root and `ip netns`; skips with a clear message otherwise.
. "$(dirname "$0")/lib.sh"
if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null 2>&1; then
    echo "skip $NAME: needs root and iproute2 (ip netns)"; exit 0
fi
PFX=cs$$
# Root in a container without CAP_SYS_ADMIN cannot make namespaces: skip.
if ! ip netns add "${PFX}probe" 2>/dev/null; then
    echo "skip $NAME: cannot create network namespaces here (ip netns add failed)"; exit 0
fi
ip netns del "${PFX}probe"
netns_down() {
    for i in 1 2 3; do
        ip link del "${PFX}h$i" 2>/dev/null
        ip netns del "${PFX}n$i" 2>/dev/null
    done
}
trap 'netns_down; cleanup' EXIT
for i in 1 2 3; do
    ip netns add "${PFX}n$i" || { fail "ip netns add"; finish; }
    ip link add "${PFX}h$i" type veth peer name "${PFX}g$i"
    ip link set "${PFX}g$i" netns "${PFX}n$i"
    ip addr add "10.231.$i.1/24" dev "${PFX}h$i"; ip link set "${PFX}h$i" up
    ip netns exec "${PFX}n$i" ip addr add "10.231.$i.2/24" dev "${PFX}g$i"
    ip netns exec "${PFX}n$i" ip link set "${PFX}g$i" up
    ip netns exec "${PFX}n$i" ip link set lo up
done
start_consul --agent front --agent gw-1 --agent gw-2 --agent gw-3 || finish
for i in 1 2 3; do
    cat > "$T/gw-$i.cfg" <<CFG
global
    stats socket $T/gw-$i.sock mode 600 level admin
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend fe
    bind 10.231.$i.2:8080
    http-request return status 200 content-type text/plain string "gw-$i\n"
CFG
    start_bg "haproxy-gw-$i" ip netns exec "${PFX}n$i" haproxy -db -f "$T/gw-$i.cfg"
    cat > "$T/sc-gw-$i.json" <<JSON
{"consul": {"address": "10.231.$i.1:$(port_of "$T/consul.ports" gw-$i)", "resync": "2s"},
 "node": "gw-$i", "drain": "0s",
 "service": {"name": "gateway", "id": "gw-$i", "address": "10.231.$i.2", "port": 8080,
   "check": {"ttl": "3s", "probe": {"http": "http://10.231.$i.2:8080/", "interval": "500ms", "timeout": "400ms"}}}}
JSON
    mkdir -p "$T/state-gw-$i"
    start_bg "sc-gw-$i" ip netns exec "${PFX}n$i" "$BIN/consul-sidecar" -config "$T/sc-gw-$i.json" \
        -listen 127.0.0.1:0 -state-dir "$T/state-gw-$i"
    eval "GWPID_$i=$LAST_PID"
done
# The front, in the root namespace.
FRONT_PORT=$("$BIN/freeport" 1); FRONT="http://127.0.0.1:$FRONT_PORT"
cat > "$T/front.cfg" <<CFG
global
    stats socket $T/front.sock mode 600 level admin
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend fe
    bind 127.0.0.1:$FRONT_PORT
    default_backend be_gateway
backend be_gateway
    balance roundrobin
CFG
start_bg haproxy-front haproxy -db -f "$T/front.cfg"
wait_for 10 "front socket" test -S "$T/front.sock"
cat > "$T/front.json" <<JSON
{"consul": {"address": "127.0.0.1:$(port_of "$T/consul.ports" front)", "resync": "2s"},
 "node": "front", "drain": "0s",
 "upstreams": [{"service": "gateway", "proxy": "haproxy"}],
 "proxy": {"haproxy": {"runtime": "unix://$T/front.sock", "backend_prefix": "be_"}},
 "watch": {"quiescence": {"min": "0s", "max": "0s"}, "hold_down": "2s"}}
JSON
start_sidecar front "$T/front.json" || finish
wait_for 20 "three hosts in the front" serves_exactly "$FRONT" "gw-1 gw-2 gw-3"

ip link set "${PFX}h2" down
wait_for 20 "the cut-off host leaves the front" serves_exactly "$FRONT" "gw-1 gw-3"
expect_contains "its TTL lapsed" "TTL expired" "$(curl -s "$(agent_url gw-2)/v1/agent/checks")"
kill -0 "$GWPID_2" && ok || fail "the cut-off sidecar exited"
ip link set "${PFX}h2" up
wait_for 20 "healed: back in the front" serves_exactly "$FRONT" "gw-1 gw-2 gw-3"
finish
