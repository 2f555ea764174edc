#!/bin/bash
# The fault matrix that t_sync_* and t_guarantees do not already cover, with
# real traffic through HAProxy: truncated JSON, a 50 MB answer (bounded
# memory, refused clearly), leader flapping, a corrupt state file, a state
# directory that cannot be written, and a SIGKILLed
# sidecar restarted (no duplicate registrations). In every case the proxy
# keeps routing to the healthy instances and the sidecar keeps running.
. "$(dirname "$0")/lib.sh"
start_consul || finish
for b in a b; do start_backend "orders-$b" || finish; eval "PORT_$b=$BACKEND_PORT"; done
register_instance node-1 orders-a orders "$PORT_a"
register_instance node-1 orders-b orders "$PORT_b"
start_haproxy || finish
mkdir -p "$T/state"
echo '{"version":1,"upstreams":{"orders":{"proxy":"haproxy","index":"x"}}}' > "$T/state/upstreams.json"
cat > "$T/sidecar.json" <<JSON
{"consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "1s"}, "node": "node-1", "drain": "0s",
 "service": {"name": "gateway", "id": "gw-1", "port": 8000},
 "upstreams": [{"service": "orders", "proxy": "haproxy"}],
 "proxy": {"haproxy": {"runtime": "unix://$HAPROXY_SOCK", "backend_prefix": "be_"}},
 "watch": {"wait": "5s", "quiescence": {"min": "0s", "max": "0s"}, "hold_down": "2s"}}
JSON
start_sidecar sidecar "$T/sidecar.json" -state-dir "$T/state" || finish
wait_for 10 "corrupt state reported" log_has sidecar "Ignoring saved state"
expect_contains "names the file" "upstreams.json: corrupt state file" "$(cat "$T/sidecar.log")"
wait_for 10 "serving" serves_exactly "$FRONT" "orders-a orders-b"
wait_for 5 "state rewritten after a sync" sh -c "grep -q '\"orders\"' $T/state/upstreams.json && grep -q '\"index\":' $T/state/upstreams.json"

steady() { # DESCRIPTION: traffic is unchanged and the sidecar alive
    for _i in 1 2 3; do
        expect_eq "$1: traffic" "orders-a orders-b" "$(served_by "$FRONT" 8)"
    done
    kill -0 "$SIDECAR_PID" && ok || fail "$1: the sidecar exited"
}
wake() { set_check node-1 orders-a-ttl pass; }  # moves the index, not the set

# Truncated JSON.
curl -s -X POST "$CONTROL/faults" -d '{"path":"/v1/health/service","count":3,"kind":"truncated"}' >/dev/null
wake; wait_for 15 "truncated answer refused" log_has sidecar "bad answer from /v1/health/service/orders"
steady "truncated JSON"
# A 50 MB answer: refused at the 8 MiB cap, memory stays bounded.
curl -s -X POST "$CONTROL/faults" -d '{"path":"/v1/health/service","count":2,"kind":"big","size_bytes":52428800}' >/dev/null
wake; wait_for 20 "huge answer refused" log_has sidecar "response body larger than"
steady "50 MB answer"
rss=$(awk '/VmRSS/ {print $2}' "/proc/$SIDECAR_PID/status")
[ "${rss:-999999}" -lt 100000 ] && ok || fail "RSS after a 50 MB answer: ${rss} kB"
curl -s -X DELETE "$CONTROL/faults" >/dev/null
# Leader flapping: logged, nothing else changes.
for l in server-2 "" server-3 "" server-1; do
    curl -s -X POST "$CONTROL/leader" -d "{\"leader\":\"$l\"}" >/dev/null
    sleep 0.3   # each leader state stays a moment, as a flapping leader does
done
steady "leader flapping"
# A real change still flows, and the state directory cannot be written.
chmod 000 "$T/state"; rm -rf "$T/state"; echo "not a directory" > "$T/state"
deregister_instance node-1 orders-b
wait_for 10 "change applied" serves_exactly "$FRONT" "orders-a"
wait_for 5 "write failure logged" log_has sidecar "Cannot save state"
register_instance node-1 orders-b orders "$PORT_b"
wait_for 10 "back" serves_exactly "$FRONT" "orders-a orders-b"
rm -f "$T/state"; mkdir -p "$T/state"

# SIGKILL and restart: no duplicate registrations, routing unchanged.
stop_pid "$SIDECAR_PID" KILL
start_sidecar sidecar2 "$T/sidecar.json" -state-dir "$T/state" || finish
wait_for 10 "re-synced" log_has sidecar2 "Synced service 'gw-1'"
expect_eq "one registration of gw-1" 1 "$(curl -s "$CONSUL/v1/agent/services" | grep -o '"ID":"gw-1"' | wc -l)"
steady "after SIGKILL and restart"
finish
