#!/bin/bash
# with-sidecar.sh MAIN-COMMAND [ARGS...]
#
# The entrypoint of every image in compose/: runs the container's main
# process (Kong, nginx, the example backend) beside its consul-sidecar, in
# one container, so `docker-compose up --scale kong=3` gives every Kong node
# its own sidecar.
#
#  - The sidecar's configuration is rendered from a template: @NODE@ becomes
#    this container's node name (its host name), @ADDR@ its IP address.
#  - SIGTERM/SIGINT (docker stop, scaling down) reach the sidecar first: it
#    puts its services in maintenance, drains, deregisters and exits; only
#    then is the main process stopped (MAIN_STOP_SIGNAL, default TERM).
#  - If either process ends on its own, the other is stopped the same way
#    and the container exits with the status of the one that ended, so
#    Docker's restart policy takes over instead of a half-alive node.
#
# Environment (defaults suit the images): SIDECAR_TEMPLATE, SIDECAR_CONFIG,
# SIDECAR_NODE, SIDECAR_ADDR, SIDECAR_BIN, SIDECAR_ARGS, MAIN_STOP_SIGNAL.
set -u
template=${SIDECAR_TEMPLATE:-/etc/consul-sidecar/sidecar.json.in}
config=${SIDECAR_CONFIG:-/var/lib/consul-sidecar/sidecar.json}
node=${SIDECAR_NODE:-$(hostname)}
addr=${SIDECAR_ADDR:-$(hostname -i 2>/dev/null | awk '{print $1}')}
sidecar=${SIDECAR_BIN:-consul-sidecar}
stop_signal=${MAIN_STOP_SIGNAL:-TERM}

say() { echo "$(date '+%Y/%m/%d %H:%M:%S') [$1] with-sidecar: $2" >&2; }

if [ $# -eq 0 ]; then
    say ERROR "usage: with-sidecar.sh MAIN-COMMAND [ARGS...]"; exit 2
fi
case "$node" in
    ""|*[!A-Za-z0-9_.-]*) say ERROR "node name '$node' (SIDECAR_NODE or the host name): only letters, digits, '.', '_' and '-'"; exit 2 ;;
esac
case "$addr" in
    ""|*[!0-9A-Fa-f.:]*) say ERROR "address '$addr' (SIDECAR_ADDR or hostname -i): not an IP address"; exit 2 ;;
esac
if ! sed -e "s/@NODE@/$node/g" -e "s/@ADDR@/$addr/g" "$template" > "$config.tmp" ||
   ! mv -f "$config.tmp" "$config"; then
    say ERROR "cannot render $template into $config"; exit 2
fi

main_cmd="$*"
"$@" &
main=$!
# shellcheck disable=SC2086
"$sidecar" -config "$config" ${SIDECAR_ARGS:-} &
side=$!

stop_both() {
    kill -TERM "$side" 2>/dev/null && wait "$side"
    kill -"$stop_signal" "$main" 2>/dev/null && wait "$main"
}
on_signal() {
    say INFO "caught $1: stopping the sidecar first (drain), then '$main_cmd'"
    trap '' TERM INT
    stop_both
    exit 0
}
trap 'on_signal SIGTERM' TERM
trap 'on_signal SIGINT' INT

# Either process ending on its own ends the container.
while :; do
    wait -n "$main" "$side"
    rc=$?
    if ! kill -0 "$main" 2>/dev/null; then
        say ERROR "main process exited (status $rc); stopping the sidecar"
        kill -TERM "$side" 2>/dev/null && wait "$side"
        exit "$rc"
    fi
    if ! kill -0 "$side" 2>/dev/null; then
        say ERROR "consul-sidecar exited (status $rc); stopping the main process"
        kill -"$stop_signal" "$main" 2>/dev/null && wait "$main"
        exit "$rc"
    fi
done
