#!/bin/bash
# The agent comes and goes: a sidecar started while the agent is down
# registers once it comes up (never exits); an agent restarted without
# persistence (-dev) gets everything back within one resync (with
# consul.reregister_splay 0s: at once once found missing); a TTL update
# answered "Unknown check ID" re-registers at once; after a reconnect the
# registrations are checked at once, not at the next resync.
. "$(dirname "$0")/lib.sh"
start_consul || finish
curl -s -X POST "$CONTROL/agents/node-1/down" >/dev/null
cat > "$T/sidecar.json" <<JSON
{
  "consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "2s", "reregister_splay": "0s"},
  "node": "node-1", "drain": "0s",
  "service": {"name": "web", "id": "web-1", "port": 8080}
}
JSON
start_sidecar sidecar "$T/sidecar.json" || finish
wait_for 10 "unreachable agent logged" log_has sidecar "Consul agent unreachable"
kill -0 "$SIDECAR_PID" && ok || fail "the sidecar exited while the agent was down"
curl -s -X POST "$CONTROL/agents/node-1/up" >/dev/null
wait_for 35 "registered once the agent is up" catalog_has web '"ID":"web-1"'
# Logged once, not once per retry.
n=$(count_lines "$T/sidecar.log" "Consul agent unreachable")
expect_eq "unreachable logged once" 1 "$n"

# Restart with persistence: registrations survive, nothing is re-registered.
curl -s -X POST -d '{"persist": true}' "$CONTROL/agents/node-1/restart" >/dev/null
sleep 2.5   # one resync period: nothing must be rewritten
catalog_has web '"ID":"web-1"' && ok || fail "a persisted registration was lost"
expect_eq "no repair needed after a persistent restart" 0 "$(count_lines "$T/sidecar.log" "missing from the agent")"

# Restart without persistence: the agent forgets everything.
curl -s -X POST -d '{"persist": false}' "$CONTROL/agents/node-1/restart" >/dev/null
wait_for 10 "agent really forgot the service" catalog_lacks web '"ID":"web-1"'
t_gone=$(( $(date +%s%N) / 1000000 ))
wait_for 10 "restored" catalog_has web '"ID":"web-1"'
took=$(( $(date +%s%N) / 1000000 - t_gone ))
# One resync period (2 s, jittered by 10 %) plus the repair itself.
[ "$took" -le 2700 ] && ok || fail "restored ${took} ms after the agent forgot it: more than one resync (2 s)"
wait_for 5 "repair logged" log_has sidecar "Service 'web-1' is missing from the agent; re-registering"
stop_pid "$SIDECAR_PID" TERM

# Reconnect: resync is 1 h, so only the reconnect can bring "plain" back.
# "fed" has a TTL check a probe feeds (refreshed about every second), which is
# how the sidecar notices the agent going away and coming back. While down,
# the agent restarts without persistence; once up, "fed" is re-registered by
# its "Unknown check ID" answer and "plain" by the resync the reconnect starts.
cat > "$T/reconnect.json" <<JSON
{
  "consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "1h", "reregister_splay": "0s"},
  "node": "node-1", "drain": "0s",
  "services": [
    {"name": "fed", "port": 8081,
     "check": {"ttl": "2s", "probe": {"tcp": "127.0.0.1:1", "interval": "500ms"}}},
    {"name": "plain", "port": 8082}
  ]
}
JSON
start_sidecar reconnect "$T/reconnect.json" || finish
agent_holds() { curl -s "$CONSUL/v1/agent/services" | grep -q "\"$1\""; }
wait_for 10 "plain registered" agent_holds plain
wait_for 10 "fed registered" agent_holds fed
curl -s -X POST "$CONTROL/agents/node-1/down" >/dev/null
wait_for 10 "the agent's absence noticed" log_has reconnect "Consul agent unreachable"
curl -s -X POST -d '{"persist": false}' "$CONTROL/agents/node-1/restart" >/dev/null
curl -s -X POST "$CONTROL/agents/node-1/up" >/dev/null
wait_for 10 "reconnect logged" log_has reconnect "Consul agent reachable again; checking registrations"
wait_for 10 "plain restored right after the reconnect" agent_holds plain
wait_for 10 "fed restored" agent_holds fed
expect_eq "plain's repair logged once" 1 "$(count_lines "$T/reconnect.log" "Service 'plain' is missing from the agent; re-registering")"
finish
