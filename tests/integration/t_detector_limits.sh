#!/bin/bash
# The change detector's health/state answers (every failing check of the
# datacenter, in an outage) may be larger than the 8 MiB cap of every other
# Consul answer, up to 64 MiB: a
# 20 MB answer is read (and, being garbage, refused as such), a 70 MB one is
# refused at the cap with memory bounded. Neither changes any upstream, and
# a real change still flows afterwards.
. "$(dirname "$0")/lib.sh"
start_consul || finish
start_kong || finish
kong_services 6
cat > "$T/sidecar.json" <<JSON
{"consul": {"address": "127.0.0.1:$CONSUL_PORT", "resync": "30s"}, "node": "kong-1", "drain": "0s",
 "upstreams": [$UPS],
 "proxy": {"kong": {"admin_url": "$KONG", "writer": "per-node"}},
 "watch": {"max_blocking": 2, "quiescence": {"min": "0s", "max": "0s"}}}
JSON
# Under AddressSanitizer freed buffers wait in its quarantine (256 MB by
# default), which would count in the RSS measured below: keep it small.
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=16 \
    start_sidecar sidecar "$T/sidecar.json" || finish
wait_for 10 "detector in use" log_has sidecar "with the change detector"
for i in 1 6; do wait_for 15 "s$i synced" kong_targets_are "s$i" "127.0.0.1:$((9000 + i))=1"; done
# A check of a service nobody follows: moves the health/state index only.
wake() { register_instance node-1 "noise-$1" noise 9999; }
unchanged() {
    for i in 1 2 3 4 5 6; do
        expect_eq "$1: s$i" "127.0.0.1:$((9000 + i))=1" "$(kong_targets "s$i")"
    done
    kill -0 "$SIDECAR_PID" && ok || fail "$1: the sidecar exited"
}

# 20 MB: over the 8 MiB cap, under the detector's 64 MiB, so it is read.
curl -s -X POST "$CONTROL/faults" -d '{"path":"/v1/health/state","count":1,"kind":"big","size_bytes":20000000}' >/dev/null
wake 1
wait_for 20 "the 20 MB answer read, refused as garbage" sh -c "grep '/v1/health/state' '$T/sidecar.log' | grep -v 'larger than' | grep -q -i 'bad answer\|invalid\|parse\|JSON'"
expect_eq "20 MB not refused by size" 0 "$(grep -c 'larger than' "$T/sidecar.log")"
unchanged "after a 20 MB answer"
# 70 MB: refused at 64 MiB.
curl -s -X POST "$CONTROL/faults" -d '{"path":"/v1/health/state","count":1,"kind":"big","size_bytes":70000000}' >/dev/null
wake 2
wait_for 30 "the 70 MB answer refused at the cap" log_has sidecar "response body larger than 67108864 bytes, refused"
unchanged "after a 70 MB answer"
rss=$(awk '/VmRSS/ {print $2}' "/proc/$SIDECAR_PID/status")
[ "${rss:-999999}" -lt 200000 ] && ok || fail "RSS after a 70 MB answer: ${rss} kB"
# And a real change still flows.
deregister_instance node-1 s4-a
register_instance node-1 s4-b s4 9104
wait_for 20 "a change after the faults" kong_targets_are s4 "127.0.0.1:9104=1"
finish
