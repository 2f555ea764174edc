#!/bin/bash
# Registration lifecycle against the Consul double: services with HTTP, TCP
# and TTL checks appear in the catalog and health endpoints (registered with
# ?replace-existing-checks); anti-entropy repairs a service or check changed
# behind the sidecar's back within one resync, with one log line each, and
# makes no write when nothing changed; SIGHUP adds, changes and removes
# services; SIGTERM and SIGINT deregister and exit 0.
. "$(dirname "$0")/lib.sh"
start_consul || finish
cat > "$T/sidecar.json" <<JSON
{
  "consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "1s"},
  "node": "node-1",
  "drain": "0s",
  "services": [
    {"name": "web", "id": "web-1", "port": 8080, "address": "127.0.0.1", "tags": ["v1"],
     "meta": {"version": "1.4.2"},
     "check": {"http": "http://127.0.0.1:1/health", "interval": "10s"}},
    {"Name": "db", "Port": 5432,
     "Checks": [{"TCP": "127.0.0.1:1", "Interval": "10s"}, {"TTL": "30s", "Name": "db ttl"}]}
  ]
}
JSON
start_sidecar sidecar "$T/sidecar.json" || finish
wait_for 10 "web-1 in the catalog" catalog_has web '"ID":"web-1"'
wait_for 10 "db in the catalog" catalog_has db '"Service":"db"'
body=$(curl -s "$CONSUL/v1/catalog/service/web")
expect_contains "in the catalog itself" '"ServiceID":"web-1"' "$body"
expect_contains "catalog: port" '"ServicePort":8080' "$body"
body=$(curl -s "$CONSUL/v1/health/service/web")
expect_contains "tag sent" '"v1"' "$body"
expect_contains "meta sent" '"version":"1.4.2"' "$body"
expect_contains "ownership mark" '"managed-by":"consul-sidecar"' "$body"
expect_contains "HTTP check registered" '"CheckID":"service:web-1"' "$body"
body=$(curl -s "$CONSUL/v1/agent/checks")
expect_contains "db has two checks (1)" '"service:db:1"' "$body"
expect_contains "db has two checks (2)" '"service:db:2"' "$body"
expect_contains "Synced log line" "[INFO] sidecar: Synced service 'web-1'" "$(cat "$T/sidecar.log")"
reqs=$(curl -s "$CONTROL/requests")
regs=$(printf '%s' "$reqs" | grep -o '"method":"PUT","url":"/v1/agent/service/register[^"]*"' | sort -u)
expect_eq "register sends ?replace-existing-checks" '"method":"PUT","url":"/v1/agent/service/register?replace-existing-checks"' "$regs"

# A quiet resync makes no writes: count PUTs over a few resync periods.
curl -s -X DELETE "$CONTROL/requests" >/dev/null
sleep 3.5  # three resync periods: the thing measured is the absence of writes
puts=$(curl -s "$CONTROL/requests" | grep -o '"method":"PUT"' | wc -l)
expect_eq "writes during quiet resyncs" 0 "$puts"
# Each round: one read of the agent's checks, one GET /v1/agent/service/:id
# per service (a round may straddle the measurement's edges).
reqs=$(curl -s "$CONTROL/requests")
rounds=$(printf '%s' "$reqs" | grep -o '"url":"/v1/agent/checks"' | wc -l)
web_reads=$(printf '%s' "$reqs" | grep -o '"url":"/v1/agent/service/web-1"' | wc -l)
db_reads=$(printf '%s' "$reqs" | grep -o '"url":"/v1/agent/service/db"' | wc -l)
others=$(printf '%s' "$reqs" | grep -o '"url":"/v1/agent/services"' | wc -l)
[ "$rounds" -ge 2 ] && ok || fail "anti-entropy did not read the agent ($rounds rounds)"
[ $((web_reads - rounds)) -ge -1 ] && [ $((web_reads - rounds)) -le 1 ] && ok ||
    fail "one read of web-1 per round expected: $web_reads reads in $rounds rounds"
[ $((db_reads - rounds)) -ge -1 ] && [ $((db_reads - rounds)) -le 1 ] && ok ||
    fail "one read of db per round expected: $db_reads reads in $rounds rounds"
expect_eq "no agent-wide service listing in a round" 0 "$others"

# Drift behind the sidecar's back, written straight to the agent: each is
# repaired within one resync (1 s, jittered by 10 %) and logged once.
# WEB_DEF PORT TAGS INTERVAL: web-1's definition as the sidecar sends it.
web_def() {
    printf '{"ID":"web-1","Name":"web","Port":%s,"Address":"127.0.0.1","Tags":%s,' "$1" "$2"
    printf '"Meta":{"version":"1.4.2","managed-by":"consul-sidecar","sidecar-node":"node-1"},'
    printf '"Check":{"HTTP":"http://127.0.0.1:1/health","Interval":"%s"}}' "$3"
}
agent_web() { curl -s "$CONSUL/v1/agent/service/web-1"; }
agent_web_check() { curl -s "$CONSUL/v1/agent/checks" | grep -o '"CheckID":"service:web-1"[^}]*'; }
# repaired DESCRIPTION CMD...: waits for CMD after a tamper at $t0 and checks
# it took at most one resync plus the repair itself.
repaired() {
    _d=$1; shift
    wait_for 10 "$_d" "$@" || return
    _took=$(( $(date +%s%N) / 1000000 - t0 ))
    [ "$_took" -le 1700 ] && ok || fail "$_d: repaired ${_took} ms after the change, more than one resync (1 s)"
}
drift_lines() { count_lines "$T/sidecar.log" "Service 'web-1' drifted on the agent ($1)"; }

t0=$(( $(date +%s%N) / 1000000 ))
http PUT "$CONSUL/v1/agent/service/register" "$(web_def 9999 '["v2"]' 10s)"
expect_eq "tampered port and tags accepted" 200 "$STATUS"
repaired "port and tags repaired" sh -c "curl -s $CONSUL/v1/agent/service/web-1 | grep -q '\"Tags\":\[\"v1\"\],.*\"Port\":8080,'"
expect_eq "port drift logged once" 1 "$(drift_lines 'port 9999 != 8080')"

t0=$(( $(date +%s%N) / 1000000 ))
http PUT "$CONSUL/v1/agent/service/register" "$(web_def 8080 '["v1"]' 20s)"
expect_contains "tampered interval on the agent" '"Interval":"20s"' "$(agent_web_check)"
repaired "check interval repaired" sh -c "curl -s $CONSUL/v1/agent/checks | grep -o '\"CheckID\":\"service:web-1\"[^}]*' | grep -q '\"Interval\":\"10s\"'"
expect_eq "interval drift logged once" 1 "$(drift_lines 'check "service:web-1": interval "20s" != "10s"')"

t0=$(( $(date +%s%N) / 1000000 ))
http PUT "$CONSUL/v1/agent/check/register" '{"Name":"hand-made","ServiceID":"web-1","TTL":"10m"}'
expect_eq "hand-made check on web-1 accepted" 200 "$STATUS"
repaired "hand-made check removed" sh -c "! curl -s $CONSUL/v1/agent/checks | grep -q hand-made"
expect_eq "extra check logged once" 1 "$(drift_lines 'check "hand-made" is not in the definition')"

# Repaired means quiet again: two more resyncs write nothing, log nothing.
curl -s -X DELETE "$CONTROL/requests" >/dev/null
sleep 2.3  # two resync periods: the thing measured is the absence of writes
expect_eq "no writes after the repairs" 0 "$(curl -s "$CONTROL/requests" | grep -o '"method":"PUT"' | wc -l)"
expect_eq "one drift line per repair, never repeated" 3 "$(count_lines "$T/sidecar.log" "drifted on the agent")"

# SIGHUP: remove db, add api, change web-1's port and tags.
cat > "$T/sidecar.json" <<JSON
{
  "consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "1s"},
  "node": "node-1", "drain": "0s",
  "services": [
    {"name": "web", "id": "web-1", "port": 8081, "address": "127.0.0.1", "tags": ["v2", "canary"],
     "meta": {"version": "1.4.2"},
     "check": {"http": "http://127.0.0.1:1/health", "interval": "10s"}},
    {"name": "api", "port": 9090}
  ]
}
JSON
kill -HUP "$SIDECAR_PID"
wait_for 10 "api registered after SIGHUP" catalog_has api '"Service":"api"'
wait_for 10 "db deregistered after SIGHUP" catalog_lacks db '"Service":"db"'
catalog_has web '"ID":"web-1"' && ok || fail "web-1 must stay registered across SIGHUP"
wait_for 10 "web-1 re-registered with its new port" catalog_has web '"Port":8081'
expect_contains "web-1's new tags" '"Tags":["v2","canary"]' "$(agent_web)"
expect_eq "change logged" 1 "$(count_lines "$T/sidecar.log" "Service 'web-1' changed in the configuration; re-registering")"

# SIGHUP with a broken file: logged, old config kept.
echo '{"services": [{"name": "x", "port": "eighty"}]}' > "$T/sidecar.json"
kill -HUP "$SIDECAR_PID"
wait_for 10 "invalid reload logged" log_has sidecar "keeping the current configuration"
catalog_has api '"Service":"api"' && ok || fail "a bad reload must not deregister anything"
catalog_has web '"Port":8081' && ok || fail "a bad reload must not change a service"

# SIGTERM: deregister everything, exit 0.
stop_pid "$SIDECAR_PID" TERM; rc=$?
expect_eq "exit status after SIGTERM" 0 "$rc"
expect_eq "agent services after SIGTERM" "{}" "$(curl -s "$CONSUL/v1/agent/services")"

# SIGINT is handled as SIGTERM: deregistered, exit 0.
printf '{"consul": {"address": "127.0.0.1:%s"}, "node": "node-1", "drain": "0s", "service": {"name": "interrupted", "port": 1}}\n' "$CONSUL_PORT" > "$T/int.json"
start_sidecar int "$T/int.json" || finish
wait_for 10 "registered (SIGINT case)" catalog_has interrupted '"Service":"interrupted"'
stop_pid "$SIDECAR_PID" INT; rc=$?
expect_eq "exit status after SIGINT" 0 "$rc"
expect_contains "SIGINT logged" "Caught interrupt, shutting down" "$(cat "$T/int.log")"
expect_not_contains "deregistered after SIGINT" '"interrupted"' "$(curl -s "$CONSUL/v1/agent/services")"

# -once: register, sync, exit 0 (registrations stay).
printf '{"consul": {"address": "127.0.0.1:%s"}, "node": "node-1", "service": {"name": "oneshot", "port": 1}}\n' "$CONSUL_PORT" > "$T/once.json"
timeout 30 "$BIN/consul-sidecar" -once -config "$T/once.json" -state-dir "$T" > "$T/once.log" 2>&1
expect_eq "-once exit status" 0 "$?"
catalog_has oneshot '"Service":"oneshot"' && ok || fail "-once did not register"
expect_contains "-once says so" "Registered and synced once; exiting (-once)" "$(cat "$T/once.log")"

# deregister modes. "never": SIGTERM leaves the registration in place.
printf '{"consul": {"address": "127.0.0.1:%s"}, "node": "node-1", "drain": "0s", "deregister": "never", "service": {"name": "kept", "port": 1}}\n' "$CONSUL_PORT" > "$T/never.json"
start_sidecar never "$T/never.json" || finish
wait_for 10 "registered (never)" catalog_has kept '"Service":"kept"'
stop_pid "$SIDECAR_PID" TERM; rc=$?
expect_eq "exit status (never)" 0 "$rc"
expect_contains "still registered after SIGTERM (never)" '"kept"' "$(curl -s "$CONSUL/v1/agent/services")"
# A failed -once (the proxy cannot be synced within -once-timeout): "always"
# deregisters what it registered, "on-success" keeps it; both exit 1.
register_instance node-1 web-1 web 9001
for mode in always on-success; do
    printf '{"consul": {"address": "127.0.0.1:%s"}, "node": "node-1", "drain": "0s", "deregister": "%s", "service": {"name": "once-%s", "port": 1}, "upstreams": [{"service": "web", "proxy": "kong"}], "proxy": {"kong": {"admin_url": "http://127.0.0.1:1", "writer": "per-node"}}}\n' \
        "$CONSUL_PORT" "$mode" "$mode" > "$T/once-$mode.json"
    timeout 30 "$BIN/consul-sidecar" -once -once-timeout 2s -config "$T/once-$mode.json" -state-dir "$T" -listen 127.0.0.1:0 > "$T/once-$mode.log" 2>&1
    expect_eq "failed -once exit status ($mode)" 1 "$?"
    expect_contains "failed -once says why ($mode)" "-once: not done within 2s" "$(cat "$T/once-$mode.log")"
done
expect_not_contains "a failed -once leaves nothing registered (always)" '"once-always"' "$(curl -s "$CONSUL/v1/agent/services")"
expect_contains "a failed -once keeps its registration (on-success)" '"once-on-success"' "$(curl -s "$CONSUL/v1/agent/services")"

# JSON logs: one object a line.
start_sidecar jsonlog "$T/once.json" -log-format json || finish
wait_for 10 "json log line" grep -q 'Synced service' "$T/jsonlog.log"
stop_pid "$SIDECAR_PID" TERM
bad=$(grep -vc '^{"@level":"[a-z]*","@message":".*","@module":"sidecar","@timestamp":"[0-9T:.Z-]*"}$' "$T/jsonlog.log" || true)
expect_eq "every line is a JSON object" 0 "$bad"
finish
