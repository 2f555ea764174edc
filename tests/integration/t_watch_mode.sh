#!/bin/bash
# watch.mode forces the way upstreams are followed, whatever their number:
# "streams" keeps a blocking query per upstream past watch.max_blocking
# (plain HTTP: a connection each), "detector" uses the change detector even
# for two upstreams. Each says so in its INFO line, and changes still flow.
. "$(dirname "$0")/lib.sh"
start_consul || finish
start_kong || finish
kong_services 6
register_instance node-1 s4-b s4 9104
register_instance node-1 s2-b s2 9102
# mode_cfg MODE: a sidecar config for the six services in that mode.
mode_cfg() {
    cat > "$T/$1.json" <<JSON
{"consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "30s"}, "node": "kong-1", "drain": "0s",
 "upstreams": [$2],
 "proxy": {"kong": {"admin_url": "$KONG", "writer": "per-node"}},
 "watch": {"mode": "$1", "max_blocking": 2, "wait": "5s", "quiescence": {"min": "0s", "max": "0s"}}}
JSON
}
blocking_services() {  # distinct services with a blocking query in the double's log
    curl -s "$CONTROL/requests" | grep -o '"url":"/v1/health/service/s[0-9]*?index=[0-9]*&wait=' | sed 's/?.*//' | sort -u | wc -l
}
some_blocking() { [ "$(blocking_services)" -ge "$1" ]; }

mode_cfg streams "$UPS"
start_sidecar streams "$T/streams.json" || finish
wait_for 10 "streams announced" log_has streams "Following 6 upstream(s) with a blocking query each (a connection each): watch.mode \"streams\", over plain HTTP" || finish
wait_for 15 "a blocking query for each of the six" some_blocking 6
expect_not_contains "no change detector" "change detector" "$(cat "$T/streams.log")"
wait_for 10 "s4 synced" kong_targets_are s4 "127.0.0.1:9004=1 127.0.0.1:9104=1"
set_check node-1 s4-a-ttl fail
wait_for 10 "s4's change applied" kong_targets_are s4 "127.0.0.1:9104=1"
set_check node-1 s4-a-ttl pass
wait_for 10 "s4 back" kong_targets_are s4 "127.0.0.1:9004=1 127.0.0.1:9104=1"
stop_pid "$SIDECAR_PID" TERM

curl -s -X DELETE "$CONTROL/requests" >/dev/null
mode_cfg detector '{"service": "s1", "proxy": "kong"}, {"service": "s2", "proxy": "kong"}'
start_sidecar detector "$T/detector.json" || finish
wait_for 10 "detector announced" log_has detector "Following 2 upstreams with the change detector (3 long-polls instead of 2): watch.mode \"detector\"" || finish
wait_for 10 "the detector's long-poll" sh -c "curl -s $CONTROL/requests | grep -q '/v1/health/state/critical?index='"
expect_eq "no blocking query per service" 0 "$(blocking_services)"
wait_for 10 "s2 synced" kong_targets_are s2 "127.0.0.1:9002=1 127.0.0.1:9102=1"
set_check node-1 s2-a-ttl fail
wait_for 10 "s2's change applied through the detector" kong_targets_are s2 "127.0.0.1:9102=1"
finish
