#!/bin/bash
# Registration lifecycle against the Consul double: services with HTTP, TCP
# and TTL checks appear in the catalog and health endpoints; SIGHUP adds and
# removes services; SIGTERM deregisters and exits 0.
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

# A quiet resync makes no writes: count PUTs over a few resync periods.
curl -s -X DELETE "$CONTROL/requests" >/dev/null
sleep 3.5  # three resync periods: the thing measured is the absence of writes
puts=$(curl -s "$CONTROL/requests" | grep -o '"method":"PUT"' | wc -l)
expect_eq "writes during quiet resyncs" 0 "$puts"
gets=$(curl -s "$CONTROL/requests" | grep -o '"/v1/agent/services' | wc -l)
[ "$gets" -ge 2 ] && ok || fail "anti-entropy did not read the agent ($gets reads)"

# SIGHUP: remove db, add api.
cat > "$T/sidecar.json" <<JSON
{
  "consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "1s"},
  "node": "node-1", "drain": "0s",
  "services": [
    {"name": "web", "id": "web-1", "port": 8080, "address": "127.0.0.1", "tags": ["v1"],
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

# SIGHUP with a broken file: logged, old config kept.
echo '{"services": [{"name": "x", "port": "eighty"}]}' > "$T/sidecar.json"
kill -HUP "$SIDECAR_PID"
wait_for 10 "invalid reload logged" log_has sidecar "keeping the current configuration"
catalog_has api '"Service":"api"' && ok || fail "a bad reload must not deregister anything"

# SIGTERM: deregister everything, exit 0.
stop_pid "$SIDECAR_PID" TERM; rc=$?
expect_eq "exit status after SIGTERM" 0 "$rc"
expect_eq "agent services after SIGTERM" "{}" "$(curl -s "$CONSUL/v1/agent/services")"

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
