#!/bin/bash
# nginx through the same faults as HAProxy and Kong, with real traffic: a
# warning instance re-weighted to its Weights.Warning (passing_only false), a
# critical one removed, Consul down and Consul answering garbage change
# nothing (no rewrite, no reload), a sidecar restarted while Consul is down
# puts back a lost upstream file from its state file, and a hand-made include
# beside the sidecar's is never touched.
. "$(dirname "$0")/lib.sh"
start_consul || finish
for b in a b; do start_backend "orders-$b" || finish; eval "PORT_$b=$BACKEND_PORT"; done
register_weighted() { # ID PORT
    curl -sf -X PUT "$(agent_url node-1)/v1/agent/service/register" \
        -d "{\"ID\":\"$1\",\"Name\":\"orders\",\"Address\":\"127.0.0.1\",\"Port\":$2,\"Weights\":{\"Passing\":3,\"Warning\":1},\"Check\":{\"CheckID\":\"$1-ttl\",\"TTL\":\"10m\",\"Status\":\"passing\"}}" >/dev/null
}
register_weighted orders-a "$PORT_a"
register_weighted orders-b "$PORT_b"
NGINX_PORT=$("$BIN/freeport" 1)
nginx_setup "$T/nginx" "$NGINX_PORT" orders "$PORT_a"
printf 'upstream manual { server 127.0.0.1:1; }\n' > "$T/nginx/conf.d/manual.conf"
cp "$T/nginx/conf.d/manual.conf" "$T/manual.orig"
start_bg nginx $NGX; NGINX_PID=$LAST_PID
FRONT="http://127.0.0.1:$NGINX_PORT"
CONF=$T/nginx/conf.d/consul-orders.conf
wait_for 10 "nginx serves" serves_exactly "$FRONT" "orders-a"
mkdir -p "$T/state"
cat > "$T/sidecar.json" <<JSON
{"consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "1s"}, "drain": "0s",
 "upstreams": [{"service": "orders", "proxy": "nginx", "passing_only": false}],
 "proxy": {"nginx": {"upstream_dir": "$T/nginx/conf.d", "test_cmd": "$NGX -t -q",
                     "reload_cmd": "kill -HUP \$(cat $T/nginx/nginx.pid)"}},
 "watch": {"wait": "5s", "quiescence": {"min": "0s", "max": "0s"}, "hold_down": "2s"}}
JSON
start_sidecar sidecar "$T/sidecar.json" -state-dir "$T/state" || finish
wait_for 10 "both served" serves_exactly "$FRONT" "orders-a orders-b"
wait_for 5 "both at Weights.Passing" sh -c "grep -q 'server 127.0.0.1:$PORT_a weight=3 ' '$CONF' && grep -q 'server 127.0.0.1:$PORT_b weight=3 ' '$CONF'"
reloads() { count_lines "$T/nginx/logs/error.log" "reconfiguring"; }

# Warning: re-weighted to Weights.Warning, still served.
set_check node-1 orders-a-ttl warn
wait_for 10 "warning instance at Weights.Warning" grep -q "server 127.0.0.1:$PORT_a weight=1 " "$CONF"
wait_for 10 "the warning instance still served" serves_exactly "$FRONT" "orders-a orders-b"
# Critical: removed.
set_check node-1 orders-a-ttl fail
wait_for 10 "critical instance no longer served" serves_exactly "$FRONT" "orders-b"
expect_not_contains "critical instance out of the file" "127.0.0.1:$PORT_a" "$(cat "$CONF")"
set_check node-1 orders-a-ttl pass
wait_for 10 "back at Weights.Passing and served" sh -c "grep -q 'server 127.0.0.1:$PORT_a weight=3 ' '$CONF'"
wait_for 10 "both served again" serves_exactly "$FRONT" "orders-a orders-b"

# unchanged DESCRIPTION: no rewrite, no reload, the same traffic, alive.
unchanged() {
    expect_eq "$1: file" "$(cat "$T/good.conf")" "$(cat "$CONF")"
    expect_eq "$1: no reload" "$R0" "$(reloads)"
    expect_eq "$1: traffic" "orders-a orders-b" "$(served_by "$FRONT" 8)"
    kill -0 "$SIDECAR_PID" && ok || fail "$1: the sidecar exited"
}
cp "$CONF" "$T/good.conf"; R0=$(reloads)
# Consul down for a while (several resyncs and watch retries).
curl -s -X POST "$CONTROL/agents/node-1/down" >/dev/null
wait_for 10 "the outage seen" log_has sidecar "keeping the last known good targets"
sleep 3   # several resyncs and retries while the agent is down
unchanged "Consul down"
curl -s -X POST "$CONTROL/agents/node-1/up" >/dev/null
# Garbage answers.
curl -s -X POST "$CONTROL/faults" -d '{"path":"/v1/health/service","count":4,"kind":"garbage"}' >/dev/null
set_check node-1 orders-b-ttl pass   # moves the index
wait_for 10 "garbage refused" log_has sidecar "bad answer from /v1/health/service/orders"
unchanged "Consul garbage"
curl -s -X DELETE "$CONTROL/faults" >/dev/null

# Restarted while Consul is down, its upstream file lost meanwhile: put back
# from the state file before Consul answers.
stop_pid "$SIDECAR_PID" TERM
curl -s -X POST "$CONTROL/agents/node-1/down" >/dev/null
printf 'upstream orders { server 127.0.0.1:%s; }\n' "$PORT_a" > "$CONF"   # a fresh image's seed
kill -HUP "$(cat "$T/nginx/nginx.pid")"
wait_for 10 "nginx on the seed file" serves_exactly "$FRONT" "orders-a"
start_sidecar sidecar2 "$T/sidecar.json" -state-dir "$T/state" || finish
wait_for 10 "restored from state while Consul is down" serves_exactly "$FRONT" "orders-a orders-b"
expect_eq "the restored file is the last good one" "$(cat "$T/good.conf")" "$(cat "$CONF")"
curl -s -X POST "$CONTROL/agents/node-1/up" >/dev/null
expect_eq "the hand-made include untouched" "$(cat "$T/manual.orig")" "$(cat "$T/nginx/conf.d/manual.conf")"
finish
