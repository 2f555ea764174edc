#!/bin/bash
# Bad configuration: one line naming file, key path and reason; exit 2; and
# nothing registered (a bad config never leaves half-registered services).
. "$(dirname "$0")/lib.sh"
start_consul || finish
cases=(
  'bad-duration|{"service": {"name": "web", "check": {"http": "http://x/", "interval": "10"}}}|service.check.interval: invalid duration "10"'
  'unknown-key|{"consul": {"adress": "x"}}|consul: unknown key "adress"'
  'wrong-type|{"services": [{"name": "a"}, {"name": "b", "port": "80"}]}|services[1].port'
  'bad-enum|{"deregister": "sometimes"}|deregister'
  'syntax|{"service": {"name": "web",}}|bad.json'
  'no-name|{"service": {"port": 80}}|service.name'
  'probe-without-ttl|{"service": {"name": "w", "check": {"interval": "5s", "http": "http://x/", "probe": {"http": "http://127.0.0.1:1/"}}}}|probe'
  'bad-upstream-proxy|{"upstreams": [{"service": "orders", "proxy": "envoy"}], "proxy": {"kong": {"admin_url": "http://127.0.0.1:8001"}}}|upstreams[0].proxy'
)
for c in "${cases[@]}"; do
    name=${c%%|*}; rest=${c#*|}; json=${rest%%|*}; want=${rest#*|}
    printf '%s\n' "$json" > "$T/bad.json"
    out=$("$BIN/consul-sidecar" -config "$T/bad.json" -consul-addr "127.0.0.1:$CONSUL_PORT" \
          -listen 127.0.0.1:0 -state-dir "$T" 2>&1); rc=$?
    expect_eq "$name: exit status" 2 "$rc"
    expect_contains "$name: message names the key" "$want" "$out"
    expect_contains "$name: message names the file" "bad.json" "$out"
    expect_eq "$name: one line" 1 "$(printf '%s\n' "$out" | grep -c .)"
done
# -validate: same checks, exit 2 / 0, no registration, secrets redacted.
printf '{"service": {"name": "web", "port": 80, "token": "svc-secret"}, "consul": {"token": "acl-secret"}}\n' > "$T/ok.json"
out=$("$BIN/consul-sidecar" -validate -config "$T/ok.json" 2>&1); rc=$?
expect_eq "-validate exit status" 0 "$rc"
expect_not_contains "-validate redacts the ACL token" "acl-secret" "$out"
expect_not_contains "-validate redacts the service token" "svc-secret" "$out"
expect_contains "-validate prints the effective config" '"web"' "$out"
expect_eq "nothing was registered" "{}" "$(curl -s "$CONSUL/v1/agent/services")"
# Unknown flag.
out=$("$BIN/consul-sidecar" -no-such-flag 2>&1); rc=$?
expect_eq "unknown flag exit status" 2 "$rc"
expect_contains "unknown flag named" "no-such-flag" "$out"
out=$("$BIN/consul-sidecar" -version 2>&1); rc=$?
expect_eq "-version exit status" 0 "$rc"
expect_contains "-version" "consul-sidecar" "$out"
finish
