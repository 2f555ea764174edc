#!/bin/bash
# Three sidecars beside three Kong nodes sharing one datastore: exactly one
# writes (judged by User-Agent in the Kong double's log); SIGKILL the writer
# -> a standby takes over within session TTL + lock delay; SIGTERM -> the
# lock is released and a standby takes over at once; a flapping instance
# under three sidecars makes no duplicate or conflicting writes.
. "$(dirname "$0")/lib.sh"
start_consul --agent kong-1 --agent kong-2 --agent kong-3 --agent apps --session-ttl-min 1s || finish
start_kong || finish
register_instance apps orders-1 orders 9001
for n in 1 2 3; do
    p=$(port_of "$T/consul.ports" kong-$n)
    cat > "$T/kong-$n.json" <<JSON
{
  "consul": {"address": "127.0.0.1:$p", "resync": "1s"},
  "node": "kong-$n", "drain": "0s",
  "upstreams": [{"service": "orders", "proxy": "kong"}],
  "proxy": {"kong": {"admin_url": "$KONG", "writer": "elected", "session_ttl": "2s", "lock_delay": "1s"}},
  "watch": {"quiescence": {"min": "0s", "max": "0s"}}
}
JSON
    start_sidecar "kong-$n" "$T/kong-$n.json" || finish
    eval "PID_$n=$SIDECAR_PID"
    eval "URL_$n=$STATUS_URL"
done
wait_for 15 "targets written" kong_targets_are orders "127.0.0.1:9001=1"
writer=""
for n in 1 2 3; do log_has "kong-$n" "acquired writer lock for 'kong'" && writer="$writer $n"; done
expect_eq "exactly one writer" 1 "$(echo $writer | wc -w)"
w=$(echo $writer)
writers_in_log=$(curl -s "$KONG_CONTROL/requests.txt" | grep -E '^(POST|PATCH|PUT|DELETE) ' | grep -o '(kong-[0-9])' | sort -u | wc -l)
expect_eq "writes come from one node only" 1 "$writers_in_log"
for n in 1 2 3; do [ "$n" = "$w" ] && continue
    wait_for 10 "kong-$n knows the writer" log_has "kong-$n" "standby; writer is 'kong-$w'"
done
# /status and /metrics tell role and holder, on the writer and on a standby.
for n in 1 2 3; do
    eval "u=\$URL_$n"
    st=$(curl -s "$u/status")
    curl -s "$u/metrics" > "$T/metrics-$n.txt"
    promtool check metrics < "$T/metrics-$n.txt" > "$T/promtool-$n.out" 2>&1; rc=$?
    expect_eq "kong-$n metrics are valid Prometheus text, nothing to lint ($(cat "$T/promtool-$n.out"))" "0 0" "$rc $(wc -c < "$T/promtool-$n.out")"
    expect_contains "kong-$n metrics name the holder" "consul_sidecar_writer_holder{holder=\"kong-$w\"} 1" "$(cat "$T/metrics-$n.txt")"
    if [ "$n" = "$w" ]; then
        expect_contains "writer's /status role" '"role": "writer"' "$st"
        expect_contains "writer's metric" 'consul_sidecar_writer{proxy="kong"} 1' "$(cat "$T/metrics-$n.txt")"
    else
        expect_contains "kong-$n /status role" '"role": "standby"' "$st"
        expect_contains "kong-$n /status holder" "\"holder\": \"kong-$w\"" "$st"
        expect_contains "kong-$n metric" 'consul_sidecar_writer{proxy="kong"} 0' "$(cat "$T/metrics-$n.txt")"
    fi
done

# Flapping instance: no 409s, no duplicate writes.
curl -s -X DELETE "$KONG_CONTROL/requests" >/dev/null
for i in 1 2 3 4 5; do
    register_instance apps orders-2 orders 9002
    wait_for 5 "flap up $i" kong_targets_are orders "127.0.0.1:9001=1 127.0.0.1:9002=1"
    deregister_instance apps orders-2
    wait_for 5 "flap down $i" kong_targets_are orders "127.0.0.1:9001=1"
done
reqs=$(curl -s "$KONG_CONTROL/requests.txt")
expect_not_contains "no conflicts" ' 409 ' "$reqs"
expect_eq "one POST and one DELETE per flap" 10 "$(kong_writes)"

# SIGKILL the writer: a standby takes over within TTL + lock delay (+ slack).
eval "wpid=\$PID_$w"
stop_pid "$wpid" KILL
# Its node stays alive in the cluster: only the session TTL (no renew) can
# free the lock, then the lock delay passes.
t0=$(date +%s)
taken=""
wait_for 15 "a standby takes over" sh -c "grep -l \"acquired writer lock\" $T/kong-[123].log | grep -v kong-$w.log | grep -q ."
expect_eq "takeover within TTL + lock delay + slack" yes "$([ $(( $(date +%s) - t0 )) -le 8 ] && echo yes)"
register_instance apps orders-4 orders 9004
wait_for 10 "new writer applies changes" kong_targets_are orders "127.0.0.1:9001=1 127.0.0.1:9004=1"

# SIGTERM the new writer: released at once, the last one takes over quickly.
for n in 1 2 3; do [ "$n" = "$w" ] && continue
    if log_has "kong-$n" "acquired writer lock"; then w2=$n; fi
done
eval "wpid=\$PID_$w2"
for n in 1 2 3; do [ "$n" = "$w" ] || [ "$n" = "$w2" ] && continue; w3=$n; done
t0=$(( $(date +%s%N) / 1000000 ))
stop_pid "$wpid" TERM
expect_contains "lock released on SIGTERM" "released writer lock" "$(cat "$T/kong-$w2.log")"
wait_for 5 "last standby takes over at once" log_has "kong-$w3" "acquired writer lock"
took=$(( $(date +%s%N) / 1000000 - t0 ))
# A clean release frees the lock with no lock delay: well under the 2 s TTL
# + 1 s lock delay an unreleased lock would cost.
[ "$took" -lt 2000 ] && ok || fail "takeover after SIGTERM took ${took} ms: the lock was not released cleanly"
# The last standby held its changes since it started (tens of seconds ago):
# in its sync latency histogram they count from the takeover, not from when
# it first saw them, so its samples are those of the apply alone.
eval "u3=\$URL_$w3"
lat() { curl -s "$u3/metrics" | grep -F "consul_sidecar_sync_latency_seconds_$1{upstream=\"orders\"} " | awk '{ print $NF }'; }
wait_for 10 "the new writer's first sync observed" sh -c "curl -s '$u3/metrics' | grep -q 'consul_sidecar_sync_latency_seconds_count{upstream=\"orders\"} [1-9]'"
awk -v s="$(lat sum)" -v n="$(lat count)" 'BEGIN { exit !(n >= 1 && s / n < 1.0) }' && ok ||
    fail "the new writer's sync latency counts its standby time: sum $(lat sum) s over $(lat count) sample(s)"
finish
