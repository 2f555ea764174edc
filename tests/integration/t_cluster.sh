#!/bin/bash
# Cluster view: leader change, no leader, member join/leave/fail produce
# exactly one log line each in Consul's style, nothing repeats while nothing
# changes, and /status shows the leader and members; watch.cluster_poll
# sets how often they are asked.
. "$(dirname "$0")/lib.sh"
start_consul --servers 3 --agent kong-1 --agent kong-2 || finish
CONSUL_PORT=$(port_of "$T/consul.ports" kong-1); CONSUL="http://127.0.0.1:$CONSUL_PORT"
cat > "$T/sidecar.json" <<JSON
{"consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "1s"}, "node": "kong-1", "drain": "0s"}
JSON
start_sidecar sidecar "$T/sidecar.json" || finish
wait_for 10 "initial leader logged" log_has sidecar "New leader elected: 10.0.0.1:8300"

curl -s -X POST "$CONTROL/leader" -d '{"leader":"server-2"}' >/dev/null
wait_for 15 "leader change logged" log_has sidecar "New leader elected: 10.0.0.2:8300"
status_has() { curl -s "$STATUS_URL/status" | tr -d ' \n' | grep -qF -- "$1"; }
wait_for 10 "/status shows the new leader" status_has '"leader":"10.0.0.2:8300"'
curl -s -X POST "$CONTROL/leader" -d '{"leader":""}' >/dev/null
wait_for 15 "no leader logged" log_has sidecar "[WARN] sidecar: No cluster leader"
wait_for 10 "/status shows no leader" status_has '"leader":""'
curl -s -X POST "$CONTROL/leader" -d '{"leader":"server-3"}' >/dev/null
wait_for 15 "new leader logged" log_has sidecar "New leader elected: 10.0.0.3:8300"

curl -s -X POST "$CONTROL/agents" -d '{"name":"kong-3"}' >/dev/null
wait_for 15 "join logged" log_has sidecar "member 'kong-3' joined, marking health alive"
wait_for 10 "/status shows the joined member alive" status_has '"name":"kong-3","addr":"127.0.0.1","status":"alive"'
curl -s -X POST "$CONTROL/members/kong-3" -d '{"status":"failed"}' >/dev/null
wait_for 15 "failure logged" log_has sidecar "[WARN] sidecar: member 'kong-3' failed"
curl -s -X POST "$CONTROL/members/kong-2" -d '{"status":"left"}' >/dev/null
wait_for 15 "leave logged" log_has sidecar "member 'kong-2' left"
wait_for 10 "/status shows the member that left" status_has '"name":"kong-2","addr":"127.0.0.1","status":"left"'

status=$(curl -s "$STATUS_URL/status")
expect_contains "/status shows the leader" '10.0.0.3:8300' "$status"
expect_contains "/status shows members" '"kong-3"' "$status"
expect_contains "/status shows member state" '"failed"' "$status"
expect_contains "/status shows the failed member failed" '"name":"kong-3","addr":"127.0.0.1","status":"failed"' "$(printf '%s' "$status" | tr -d ' \n')"

# Quiet cluster: no line repeats.
sleep 3  # observing that nothing is logged while nothing changes
for l in "New leader elected: 10.0.0.2:8300" "No cluster leader" "member 'kong-3' joined" \
         "member 'kong-3' failed" "member 'kong-2' left"; do
    expect_eq "logged exactly once: $l" 1 "$(count_lines "$T/sidecar.log" "$l")"
done
stop_pid "$SIDECAR_PID" TERM

# watch.cluster_poll sets how often the leader is asked (default 5 s): at
# 1 s, five asks come within 10 s, which the default could not give.
cat > "$T/poll.json" <<JSON
{"consul": {"address": "127.0.0.1:$CONSUL_PORT"}, "node": "kong-1", "drain": "0s",
 "watch": {"cluster_poll": "1s"}}
JSON
curl -s -X DELETE "$CONTROL/requests" >/dev/null
start_sidecar poll "$T/poll.json" || finish
leader_asks() { [ "$(curl -s "$CONTROL/requests" | grep -o '"url":"/v1/status/leader"' | wc -l)" -ge "$1" ]; }
wait_for 10 "five leader asks at watch.cluster_poll 1s" leader_asks 5
finish
