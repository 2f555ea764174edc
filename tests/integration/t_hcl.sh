#!/bin/bash
# Service definitions in HCL, written the way Consul's documentation writes
# them, load beside JSON files (same directory, same merge) and register as
# the same JSON would; an HCL mistake is one line naming the file, the line
# and column or the key, exit 2, and nothing registered.
. "$(dirname "$0")/lib.sh"
start_consul || finish
mkdir -p "$T/conf"
cat > "$T/conf/10-sidecar.json" <<JSON
{"consul": {"address": "127.0.0.1:$CONSUL_PORT"}, "node": "gw-1", "drain": "0s"}
JSON
cat > "$T/conf/20-web.hcl" <<'HCL'
# As in Consul's docs: one service block, its checks as blocks.
service {
  name = "web"
  id   = "web-1"
  port = 8080
  tags = ["v1", "primary"]
  meta = {
    version = "1.2.3"
  }
  check {
    id       = "web-tcp"
    name     = "TCP on 8080"
    tcp      = "localhost:8080"
    interval = "10s"
    timeout  = "1s"
  }
  check {
    id  = "web-ttl"
    ttl = "30s"
  }
}
HCL
cat > "$T/conf/30-api.hcl" <<'HCL'
services = [
  {
    name = "api"
    port = 9000
    checks = [
      { id = "api-ttl", ttl = "1m", deregister_critical_service_after = "10m" },
    ]
  },
]
HCL
start_sidecar sidecar "$T/conf" || finish
wait_for 10 "web and api registered" sh -c "curl -s $CONSUL/v1/agent/services | grep -q '\"api\"' && curl -s $CONSUL/v1/agent/services | grep -q '\"web-1\"'" || finish
svcs=$(curl -s "$CONSUL/v1/agent/services")
expect_contains "web's port" '"Port":8080' "$svcs"
expect_contains "web's tags" '"Tags":["v1","primary"]' "$svcs"
expect_contains "web's meta" '"version":"1.2.3"' "$svcs"
checks=$(curl -s "$CONSUL/v1/agent/checks")
for id in web-tcp web-ttl api-ttl; do expect_contains "check $id" "\"CheckID\":\"$id\"" "$checks"; done
expect_contains "snake_case key taken" '"Name":"TCP on 8080"' "$checks"
stop_pid "$SIDECAR_PID" TERM

# Mistakes: syntax (line and column), and a key of the wrong type (path).
bad() { # NAME HCL WANT
    mkdir -p "$T/bad-$1"
    printf '%s\n' "$2" > "$T/bad-$1/svc.hcl"
    out=$("$BIN/consul-sidecar" -config "$T/bad-$1" -consul-addr "127.0.0.1:$CONSUL_PORT" \
          -listen 127.0.0.1:0 -state-dir "$T/st" 2>&1); rc=$?
    expect_eq "$1: exit status" 2 "$rc"
    expect_contains "$1: the file and the reason" "$T/bad-$1/svc.hcl: $3" "$out"
    expect_eq "$1: one line" 1 "$(printf '%s\n' "$out" | grep -c .)"
}
bad syntax 'service {
  name = "web"
  port = 80 80
}' 'invalid HCL at line 3, column 13: expected a new line or '"','"' after an item'
bad unclosed 'service {
  name = "web"' 'invalid HCL at line 1, column 9: unterminated block, missing }'
bad type 'service {
  name = "web"
  port = "80"
}' 'service.port: expected an integer, got a string'
bad template 'service {
  name = "${var.name}"
}' 'invalid HCL at line 2, column 11: templates ("${...}") are not supported'
bad unknown 'service {
  name = "web"
  colour = "blue"
}' 'service: unknown key "colour"'
curl -s -X PUT "$CONSUL/v1/agent/service/deregister/web-1" >/dev/null
curl -s -X PUT "$CONSUL/v1/agent/service/deregister/api" >/dev/null
expect_eq "nothing registered by the bad files" "{}" "$(curl -s "$CONSUL/v1/agent/services")"
finish
