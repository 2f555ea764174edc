#!/bin/bash
# The writer loses its Consul agent (a partition): it stops writing on its
# own (no renew within the TTL) before another sidecar can take the lock, and
# afterwards never undoes the new writer's changes, although it still reaches
# Kong and its periodic read-back sees a set it no longer agrees with.
. "$(dirname "$0")/lib.sh"
start_consul --agent kong-1 --agent kong-2 --agent apps --session-ttl-min 1s || finish
start_kong || finish
register_instance apps orders-1 orders 9001
for n in 1 2; do
    p=$(port_of "$T/consul.ports" kong-$n)
    cat > "$T/kong-$n.json" <<JSON
{"consul": {"address": "127.0.0.1:$p", "resync": "1s"}, "node": "kong-$n", "drain": "0s",
 "upstreams": [{"service": "orders", "proxy": "kong"}],
 "proxy": {"kong": {"admin_url": "$KONG", "writer": "elected", "session_ttl": "2s", "lock_delay": "1s"}},
 "watch": {"quiescence": {"min": "0s", "max": "0s"}}}
JSON
    start_sidecar "kong-$n" "$T/kong-$n.json" || finish
done
wait_for 15 "targets written" kong_targets_are orders "127.0.0.1:9001=1"
w=""; for n in 1 2; do log_has "kong-$n" "acquired writer lock" && w=$n; done
other=$((3 - w))
expect_eq "one writer" 1 "$(grep -l 'acquired writer lock' "$T"/kong-[12].log | wc -l)"

curl -s -X POST "$CONTROL/agents/kong-$w/down" >/dev/null
wait_for 10 "the cut-off writer stops by itself" log_has "kong-$w" "lost writer lock for 'kong': no successful session renew"
wait_for 15 "the other takes over" log_has "kong-$other" "acquired writer lock"
curl -s -X DELETE "$KONG_CONTROL/requests" >/dev/null
register_instance apps orders-5 orders 9005
wait_for 10 "the new writer applies" kong_targets_are orders "127.0.0.1:9001=1 127.0.0.1:9005=1"
sleep 3   # three read-back periods of the old writer: it must not undo anything
expect_eq "target kept" "127.0.0.1:9001=1 127.0.0.1:9005=1" "$(kong_targets orders)"
expect_eq "no write from the cut-off writer" 0 "$(kong_writes "(kong-$w)")"
# Order of events: the old writer stopped before the new one acquired.
stop_line=$(grep -n "lost writer lock" "$T/kong-$w.log" | head -1 | cut -d' ' -f2)
acq_line=$(grep "acquired writer lock" "$T/kong-$other.log" | head -1 | cut -d' ' -f2)
[ "$(printf '%s\n%s\n' "$stop_line" "$acq_line" | sort | head -1)" = "$stop_line" ] && ok ||
    fail "the old writer stopped at $stop_line, after the new one acquired at $acq_line"
curl -s -X POST "$CONTROL/agents/kong-$w/up" >/dev/null
wait_for 5 "healed: standby again" log_has "kong-$w" "standby; writer is 'kong-$other'"
finish
