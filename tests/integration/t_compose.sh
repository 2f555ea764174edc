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
finish
