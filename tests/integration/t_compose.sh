#!/bin/bash
# compose/docker-compose.yml is a valid deployment: Debian's docker-compose
# validates it without an engine, and the pieces users rely on are there
# (Kong in database mode with a sidecar built into every Kong container,
# migrations before Kong, the front nginx and the example backend).
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
if ! command -v docker-compose >/dev/null 2>&1; then
    fail "docker-compose is not installed (make deps installs it)"; finish
fi
out=$(docker-compose -f compose/docker-compose.yml config 2>&1); rc=$?
expect_eq "docker-compose config exit status" 0 "$rc"
expect_contains "Kong uses a database" "KONG_DATABASE: postgres" "$out"
expect_contains "Kong image carries the sidecar" "target: kong" "$out"
expect_contains "migrations run first" "service_completed_successfully" "$out"
expect_contains "front nginx" "target: front" "$out"
expect_contains "example backend" "target: orders" "$out"
expect_not_contains "no Admin API published to the host" "8001:8001" "$out"
# Every config file the images copy exists and is valid JSON for the sidecar.
for f in kong-sidecar.json orders-sidecar.json front-sidecar.json; do
    expect_eq "compose/config/$f exists" yes "$([ -s compose/config/$f ] && echo yes)"
    sed -e 's/@NODE@/node-1/g' -e 's/@ADDR@/10.0.0.1/g' compose/config/$f > "$T/$f"
    "$BIN/consul-sidecar" -validate -config "$T/$f" > "$T/$f.out" 2>&1
    expect_eq "consul-sidecar -validate accepts compose/config/$f" 0 "$?"
done
# Everything the Dockerfile takes from the build context is in git (a fresh
# clone builds), and .dockerignore keeps the host's binaries out.
for f in $(grep -oE '(/src/|COPY )compose/[^ ]+' compose/Dockerfile | sed -E 's#^(/src/|COPY )##' | sort -u); do
    git ls-files --error-unmatch "$f" >/dev/null 2>&1 && ok || fail "compose/Dockerfile uses $f, which git does not track"
done
expect_contains ".dockerignore keeps build/ out" "build" "$(cat .dockerignore 2>/dev/null)"

# The entrypoint of every image: renders the template, runs the main
# process beside the sidecar, and on SIGTERM drains the sidecar first.
start_consul || finish
run_entry() { # NAME NODE MAIN...
    _en=$1; _node=$2; shift 2
    start_bg "$_en" env SIDECAR_TEMPLATE=compose/config/orders-sidecar.json \
        SIDECAR_CONFIG="$T/$_en.json" SIDECAR_NODE="$_node" SIDECAR_ADDR=127.0.0.1 \
        SIDECAR_BIN="$BIN/consul-sidecar" SIDECAR_ARGS="-listen 127.0.0.1:0 -state-dir $T/st-$_en" \
        CONSUL_HTTP_ADDR="$CONSUL" bash compose/bin/with-sidecar.sh "$@"
}
run_entry entry orders-t1 "$BIN/backend" --name orders-t1 --port-file "$T/b1.port"
ENTRY_PID=$LAST_PID
wait_for 10 "rendered node registered" catalog_has orders '"ID":"orders-orders-t1"'
expect_contains "address rendered" '"Address":"127.0.0.1"' "$(curl -s "$CONSUL/v1/agent/service/orders-orders-t1")"
wait_port_file "$T/b1.port"
b1=$(cat "$T/b1.port")
stop_pid "$ENTRY_PID" TERM 20; rc=$?
expect_eq "entrypoint exit status on SIGTERM" 0 "$rc"
catalog_lacks orders '"ID":"orders-orders-t1"' && ok || fail "still registered after SIGTERM"
curl -s --max-time 1 "http://127.0.0.1:$b1/" >/dev/null && fail "main process still running" || ok
drained=$(grep -n 'Shutdown complete' "$T/entry.log" | head -1 | cut -d: -f1)
[ -n "$drained" ] && ok || fail "the sidecar did not shut down cleanly: $(tail -3 "$T/entry.log")"
# The main process dying ends the container, sidecar deregistered first.
run_entry entry2 orders-t2 sh -c 'sleep 2; exit 7'
E2=$LAST_PID
wait_for 10 "second node registered" catalog_has orders '"ID":"orders-orders-t2"'
stop_pid "$E2" CONT 20; rc=$?   # no signal of ours: wait for it to end by itself
expect_eq "exit status of the main process" 7 "$rc"
catalog_lacks orders '"ID":"orders-orders-t2"' && ok || fail "still registered after the main process died"
# A node name that cannot be one: refused before anything starts.
SIDECAR_NODE='bad name' SIDECAR_ADDR=127.0.0.1 SIDECAR_TEMPLATE=compose/config/orders-sidecar.json \
    SIDECAR_CONFIG="$T/bad.json" bash compose/bin/with-sidecar.sh true > "$T/bad.out" 2>&1; rc=$?
expect_eq "bad node name exit status" 2 "$rc"
expect_contains "bad node name named" "node name 'bad name'" "$(cat "$T/bad.out")"
finish
