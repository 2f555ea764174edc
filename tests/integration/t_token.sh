#!/bin/bash
# The ACL token travels only in the X-Consul-Token header: never in a URL,
# never in a log line, also when read from a file; a world-readable token
# file is warned about.
. "$(dirname "$0")/lib.sh"
start_consul || finish
TOKEN=s3cr3t-0e9f-token-for-tests
KTOKEN=k0ng-4dm1n-token-for-tests
SECRETS="$TOKEN $KTOKEN"   # checked in every sidecar log at the end
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
# CONSUL_HTTP_TOKEN_FILE, and the Kong admin token from a file: headers only.
chmod 0600 "$T/token"
printf '%s\n' "$KTOKEN" > "$T/ktoken"; chmod 0600 "$T/ktoken"
start_kong --rbac-token "$KTOKEN" || finish
register_instance node-1 orders-1 orders 9001
cat > "$T/kong.json" <<JSON
{"consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "1s"}, "drain": "0s",
 "upstreams": [{"service": "orders", "proxy": "kong"}],
 "proxy": {"kong": {"admin_url": "$KONG", "writer": "per-node", "token_file": "$T/ktoken"}},
 "watch": {"quiescence": {"min": "0s", "max": "0s"}}}
JSON
curl -s -X DELETE "$CONTROL/requests" >/dev/null
CONSUL_HTTP_TOKEN_FILE=$T/token start_sidecar sidecar3 "$T/kong.json" -log-level trace || finish
# (the admin API wants the token from us too: read the double's own state)
wait_for 10 "Kong accepted the token" sh -c "curl -s '$KONG_CONTROL/state' | grep -q '127.0.0.1:9001'"
expect_contains "Consul token from CONSUL_HTTP_TOKEN_FILE" "\"token_header\":\"$TOKEN\"" "$(curl -s "$CONTROL/requests")"
kreqs=$(curl -s "$KONG_CONTROL/requests")
expect_contains "Kong-Admin-Token sent" '"token":true' "$kreqs"
expect_not_contains "Kong token never in a URL" "$KTOKEN" "$(printf '%s' "$kreqs" | grep -o '"path":"[^"]*"')"
stop_pid "$SIDECAR_PID" TERM
# A token file larger than any token is refused at start, not cut short.
head -c 5000 /dev/zero | tr '\0' 'x' > "$T/huge-token"
out=$("$BIN/consul-sidecar" -validate -config "$T/sidecar.json" -token-file "$T/huge-token" 2>&1)
expect_eq "oversized token file: exit 2" 2 "$?"
expect_contains "oversized token file named" "huge-token: larger than 4096 bytes: not a token" "$out"
finish
