#!/bin/bash
# consul.reregister_splay: registrations an agent lost (restarted without
# persistence) go back after a random delay below the splay, drawn once per
# loss, so that the sidecars of a fleet whose agents come back together do
# not all register in the same instant. Two gateway nodes, each on its own
# agent; both agents restart at once, the process gone (every connection
# dropped) as a real one is.
. "$(dirname "$0")/lib.sh"
start_consul --agent a1 --agent a2 || finish
PROBE=$(port_of "$T/consul.ports" control) # any port that listens
for i in 1 2; do
    cat > "$T/gw-$i.json" <<JSON
{"consul": {"address": "127.0.0.1:$(port_of "$T/consul.ports" "a$i")", "resync": "1h",
            "reregister_splay": "3s"},
 "node": "gw-$i", "drain": "0s",
 "service": {"name": "gw", "id": "gw-$i", "port": 8000,
   "check": {"CheckID": "gw-$i-ttl", "ttl": "2s",
             "probe": {"tcp": "127.0.0.1:$PROBE", "interval": "200ms"}}}}
JSON
    start_sidecar "gw-$i" "$T/gw-$i.json" || finish
    GW_PIDS="${GW_PIDS:-} $SIDECAR_PID"
done
for i in 1 2; do
    wait_for 10 "gw-$i registered and fed" sh -c \
        "curl -s $(agent_url "a$i")/v1/agent/checks | grep -q '\"gw-$i-ttl\".*passing'"
done

curl -s -X DELETE "$CONTROL/requests" >/dev/null
restarts=""
for i in 1 2; do
    curl -s -X POST "$CONTROL/agents/a$i/restart" -d '{"persist": false, "rejoin_ms": 200}' >/dev/null &
    restarts="$restarts $!"
done
wait $restarts # not a bare wait: the sidecars are this shell's children too
# A marker in the request log: both agents are back from here on.
for i in 1 2; do curl -s "$(agent_url "a$i")/v1/agent/self?marker" >/dev/null; done
for i in 1 2; do
    wait_for 15 "gw-$i registered again" catalog_has gw "\"ID\":\"gw-$i\""
done

# Each sidecar logged the delay it drew (below the splay) and registered no
# sooner than that after its agent was back, and once.
curl -s "$CONTROL/requests" > "$T/requests.json"
for i in 1 2; do
    line=$(grep -F "re-registering service 'gw-$i' in" "$T/gw-$i.log" | head -n1)
    [ -n "$line" ] && ok || { fail "gw-$i: no splayed re-registration logged: $(grep -F re-registering "$T/gw-$i.log")"; continue; }
    expect_contains "gw-$i: the loss is named" "is unknown to the agent" "$line$(grep -F "is missing from the agent" "$T/gw-$i.log" | sed 's/missing from/unknown to/')"
    delay_ms=$(printf '%s\n' "$line" | sed -n "s/.* in \([0-9.]*\)s (consul.reregister_splay).*/\1/p" | awk '{ printf "%d", $1 * 1000 }')
    [ -n "$delay_ms" ] && [ "$delay_ms" -lt 3000 ] && ok || fail "gw-$i: delay '$delay_ms' ms not below the 3 s splay"
    read -r gap regs <<EOF2
$(python3 -c '
import json, sys
agent = sys.argv[2]
reqs = [r for r in json.load(open(sys.argv[1])) if r["agent"] == agent]
back = [r["time_ms"] for r in reqs if r["url"].startswith("/v1/agent/self?marker")]
reg = [r["time_ms"] for r in reqs if r["url"].startswith("/v1/agent/service/register")]
print(reg[0] - back[0] if back and reg else -1, len(reg))' "$T/requests.json" "a$i")
EOF2
    [ "$gap" -ge $(( delay_ms - 50 )) ] && [ "$gap" -le $(( delay_ms + 2500 )) ] && ok ||
        fail "gw-$i: registered ${gap} ms after its agent was back, having drawn ${delay_ms} ms"
    expect_eq "gw-$i: one registration for the loss" 1 "$regs"
done
for p in $GW_PIDS; do stop_pid "$p" TERM; done
finish
