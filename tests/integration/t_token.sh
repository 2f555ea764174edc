#!/bin/bash
# The ACL token travels only in the X-Consul-Token header: never in a URL,
# never in a log line, also when read from a file; a world-readable token
# file is warned about.
. "$(dirname "$0")/lib.sh"
start_consul || finish
TOKEN=s3cr3t-0e9f-token-for-tests
printf '%s\n' "$TOKEN" > "$T/token"; chmod 0644 "$T/token"
cat > "$T/sidecar.json" <<JSON
{"consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "1s"}, "drain": "0s",
 "service": {"name": "web", "port": 8080, "check": {"ttl": "30s"}}}
JSON
start_sidecar sidecar "$T/sidecar.json" -token-file "$T/token" -log-level trace || finish
wait_for 10 "registered" catalog_has web '"Service":"web"'
reqs=$(curl -s "$CONTROL/requests")
expect_contains "token sent in the header" "\"token_header\":\"$TOKEN\"" "$reqs"
urls=$(printf '%s' "$reqs" | grep -o '"url":"[^"]*"' || true)
expect_not_contains "token never in a URL" "$TOKEN" "$urls"
expect_contains "world-readable token file warned" "readable by group or others" "$(cat "$T/sidecar.log")"
stop_pid "$SIDECAR_PID" TERM
expect_not_contains "token never logged" "$TOKEN" "$(cat "$T/sidecar.log")"
# From the environment too.
CONSUL_HTTP_TOKEN=$TOKEN start_sidecar sidecar2 "$T/sidecar.json" -log-level trace || finish
wait_for 10 "registered again" catalog_has web '"Service":"web"'
stop_pid "$SIDECAR_PID" TERM
expect_not_contains "env token never logged" "$TOKEN" "$(cat "$T/sidecar2.log")"
finish
