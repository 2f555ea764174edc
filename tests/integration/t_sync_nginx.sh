#!/bin/bash
# Catalog -> nginx (render + test + reload) with real traffic through a real
# nginx: changes are rendered and reloaded, an unchanged render reloads
# nothing, zero instances never empties the upstream, and a failing test_cmd
# keeps the old file and the old peers.
. "$(dirname "$0")/lib.sh"
start_consul || finish
for b in a b; do start_backend "orders-$b" || finish; eval "PORT_$b=$BACKEND_PORT"; done
register_instance node-1 orders-a orders "$PORT_a"
NGINX_PORT=$("$BIN/freeport" 1)
nginx_setup "$T/nginx" "$NGINX_PORT" orders "$PORT_a"
start_bg nginx $NGX; NGINX_PID=$LAST_PID
FRONT="http://127.0.0.1:$NGINX_PORT"
wait_for 10 "nginx serves" serves_exactly "$FRONT" "orders-a"
cat > "$T/sidecar.json" <<JSON
{
  "consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "30s"},
  "drain": "0s",
  "upstreams": [{"service": "orders", "name": "orders", "proxy": "nginx"}],
  "proxy": {"nginx": {"upstream_dir": "$T/nginx/conf.d",
                      "test_cmd": "$NGX -t -q",
                      "reload_cmd": "kill -HUP \$(cat $T/nginx/nginx.pid)"}},
  "watch": {"quiescence": {"min": "100ms", "max": "500ms"}, "hold_down": "1s"}
}
JSON
start_sidecar sidecar "$T/sidecar.json" || finish
register_instance node-1 orders-b orders "$PORT_b"
wait_for 10 "new instance served after render + reload" serves_exactly "$FRONT" "orders-a orders-b"
conf=$(cat "$T/nginx/conf.d/consul-orders.conf")
expect_contains "rendered server line" "server 127.0.0.1:$PORT_b" "$conf"
reloads=$(count_lines "$T/nginx/logs/error.log" "reconfiguring")

# Nothing changed in Consul -> no rewrite, no reload.
before=$(stat -c %Y.%s "$T/nginx/conf.d/consul-orders.conf")
set_check node-1 orders-a-ttl pass   # index moves, the set does not
sleep 1   # observing the absence of a reload
expect_eq "unchanged render does not rewrite" "$before" "$(stat -c %Y.%s "$T/nginx/conf.d/consul-orders.conf")"
expect_eq "unchanged render does not reload" "$reloads" "$(count_lines "$T/nginx/logs/error.log" "reconfiguring")"

# Zero instances: the last good file stays.
set_check node-1 orders-a-ttl fail
set_check node-1 orders-b-ttl fail
wait_for 5 "Consul reports no passing instance" sh -c "[ \"\$(curl -s '$CONSUL/v1/health/service/orders?passing')\" = '[]' ]"
sleep 2   # past hold_down: the file must still not be emptied
conf2=$(cat "$T/nginx/conf.d/consul-orders.conf")
expect_contains "upstream never rendered empty" "server 127.0.0.1:" "$conf2"
set_check node-1 orders-a-ttl pass
set_check node-1 orders-b-ttl pass
wait_for 10 "both instances back" serves_exactly "$FRONT" "orders-a orders-b"

# A reload that fails once: the file goes back, the change is retried and
# reaches nginx (it must not stay rendered but never loaded).
stop_pid "$SIDECAR_PID" TERM
cp "$T/sidecar.json" "$T/sidecar-flaky.json"
sed -i "s|\"reload_cmd\": \"[^\"]*\"|\"reload_cmd\": \"sh -c '[ -f $T/reload-failed ] \|\| { touch $T/reload-failed; exit 1; }; kill -HUP \$(cat $T/nginx/nginx.pid)'\"|" "$T/sidecar-flaky.json"
start_sidecar sidecar-flaky "$T/sidecar-flaky.json" || finish
for b in c; do start_backend "orders-$b" || finish; eval "PORT_$b=$BACKEND_PORT"; done
register_instance node-1 orders-c orders "$PORT_c"
wait_for 10 "the failed reload logged" log_has sidecar-flaky "nginx reload failed"
wait_for 15 "retried until nginx serves it" serves_exactly "$FRONT" "orders-a orders-b orders-c"
deregister_instance node-1 orders-c
wait_for 10 "and back" serves_exactly "$FRONT" "orders-a orders-b"
SIDECAR_PID=$(cat "$T/sidecar-flaky.pid")

# A failing test_cmd: old file kept byte for byte, nginx keeps serving.
stop_pid "$SIDECAR_PID" TERM
sed -i 's|"test_cmd": "[^"]*"|"test_cmd": "false"|' "$T/sidecar.json"
cp "$T/nginx/conf.d/consul-orders.conf" "$T/before.conf"
start_sidecar sidecar2 "$T/sidecar.json" || finish
deregister_instance node-1 orders-b
wait_for 10 "failed test logged" log_has sidecar2 "nginx config test failed"
expect_eq "old file kept byte for byte" "$(cat "$T/before.conf")" "$(cat "$T/nginx/conf.d/consul-orders.conf")"
expect_eq "still serving the old peers" "orders-a orders-b" "$(served_by "$FRONT" 8)"
finish
