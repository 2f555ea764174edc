#!/bin/bash
# HTTP/2 to the agent: an https address whose ALPN gives h2 makes every
# upstream its own blocking query, as streams over a few shared connections,
# with no change detector (watch.max_streams). A real HAProxy terminates TLS
# and h2 in front of the Consul double (which speaks HTTP/1.1), as a Consul
# agent's https listener would; another real HAProxy is the proxy. Proven:
# h2 was negotiated (the terminator's log shows HTTP/2.0), 1,000 upstreams
# use at most 8 connections (ss), changes to any reach HAProxy, and an agent
# restart, a terminator restart and a GOAWAY mid-stream (a soft reload of
# the terminator) are survived with no change lost and nothing emptied.
. "$(dirname "$0")/lib.sh"
if ! command -v openssl >/dev/null 2>&1; then fail "openssl is not installed"; finish; fi
S=${H2_SERVICES:-1000}
start_consul --agent node-1 --agent node-2 --max-per-agent $((S + 16)) || finish
# Two instances of each service, on two agents, loaded through one curl.
for i in $(seq 1 "$S"); do
    for a in 1 2; do
        printf 'url = "%s/v1/agent/service/register"\nrequest = "PUT"\ndata = "{\\"ID\\":\\"s%d-%d\\",\\"Name\\":\\"s%d\\",\\"Address\\":\\"127.0.0.1\\",\\"Port\\":%d,\\"Check\\":{\\"CheckID\\":\\"s%d-%d-ttl\\",\\"TTL\\":\\"10m\\",\\"Status\\":\\"passing\\"}}"\noutput = "/dev/null"\nnext\n' \
            "$(agent_url node-$a)" "$i" "$a" "$i" $((20000 + i * 2 + a)) "$i" "$a"
    done
done | sed '$d' > "$T/load.curl"   # no "next" after the last one
curl -s -K "$T/load.curl" || { fail "loading $S services"; finish; }
expect_contains "services loaded" "\"s$S\"" "$(curl -s "$CONSUL/v1/catalog/services")"

# The terminator: TLS with ALPN h2, 250 streams a connection as Consul's Go
# server allows, and timeouts above the longest blocking wait.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=consul.local" \
    -addext "subjectAltName=DNS:consul.local,IP:127.0.0.1" \
    -keyout "$T/key.pem" -out "$T/cert.pem" >/dev/null 2>&1 || { fail "openssl req"; finish; }
cat "$T/cert.pem" "$T/key.pem" > "$T/both.pem"
H2_PORT=$("$BIN/freeport" 1)
cat > "$T/term.cfg" <<CFG
global
    maxconn 4000
    tune.h2.max-concurrent-streams 250
    log stdout format raw local0
    hard-stop-after 3s
defaults
    mode http
    log global
    option httplog
    timeout connect 2s
    timeout client 60s
    timeout server 60s
frontend agent_https
    bind 127.0.0.1:$H2_PORT ssl crt $T/both.pem alpn h2,http/1.1
    default_backend agent
backend agent
    server double 127.0.0.1:$CONSUL_PORT maxconn 4000
CFG
start_term() {
    start_bg "term$1" haproxy -db -f "$T/term.cfg" ${2:-}
    TERM_PID=$LAST_PID
    wait_for 10 "terminator $1 up" sh -c "curl -s --cacert $T/cert.pem https://127.0.0.1:$H2_PORT/v1/status/leader | grep -q 8300" || finish
}
start_term 1

# The proxy: a backend per service.
PSOCK=$T/proxy.sock
{
    printf 'global\n    stats socket %s mode 600 level admin\n    maxconn 4096\n' "$PSOCK"
    printf 'defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n'
    for i in $(seq 1 "$S"); do printf 'backend be_s%d\n    balance roundrobin\n' "$i"; done
} > "$T/proxy.cfg"
start_bg proxy haproxy -db -f "$T/proxy.cfg"
wait_for 20 "proxy admin socket" test -S "$PSOCK" || finish
pcmd() { printf '%s\n' "$1" | socat - "UNIX-CONNECT:$PSOCK"; }
# servers BACKEND: the server names HAProxy holds in it, sorted, one line.
servers() { pcmd "show servers state $1" | awk 'NR > 1 && $1 !~ /^#/ && NF > 5 { print $4 }' | sort | tr '\n' ' ' | sed 's/ $//'; }
# total: the servers of every backend.
total() { pcmd "show servers state" | awk 'NR > 1 && $1 !~ /^#/ && NF > 5 { n++ } END { print n + 0 }'; }
servers_are() { [ "$(servers "$1")" = "$2" ]; }
total_is() { [ "$(total)" = "$1" ]; }
# queries_at_least N: blocking queries of N distinct services in the
# double's request log (since it was last cleared).
queries_at_least() {
    [ "$(curl -s "$CONTROL/requests" | grep -o 'health/service/s[0-9]*?index=[0-9]*&wait=' | sed 's/?.*//' | sort -u | wc -l)" -ge "$1" ]
}

ups=""
for i in $(seq 1 "$S"); do ups="$ups{\"service\": \"s$i\", \"proxy\": \"haproxy\"},"; done
cat > "$T/sidecar.json" <<JSON
{"consul": {"resync": "5m"}, "node": "node-1", "drain": "0s",
 "upstreams": [${ups%,}],
 "proxy": {"haproxy": {"runtime": "unix://$PSOCK", "backend_prefix": "be_"}},
 "watch": {"wait": "20s", "hold_down": "30s", "quiescence": {"min": "0s", "max": "0s"}}}
JSON
CONSUL_HTTP_ADDR=https://127.0.0.1:$H2_PORT CONSUL_CACERT=$T/cert.pem start_sidecar sidecar "$T/sidecar.json" || finish
wait_for 10 "mode announced" log_has sidecar "Following $S upstream(s) with a blocking query each (streams on shared connections): HTTP/2 (ALPN h2), up to watch.max_streams (1000)" || finish
wait_for 60 "all $((S * 2)) targets in HAProxy" total_is $((S * 2)) || finish
wait_for 30 "connections told" log_has sidecar "HTTP/2: $S blocking queries share"
expect_not_contains "no change detector" "change detector" "$(cat "$T/sidecar.log")"
expect_contains "h2 in the terminator's log" "HTTP/2.0" "$(cat "$T/term1.log")"
# Every upstream holds a blocking query at once, on at most 8 connections.
conns() { ss -tnp state established "dst 127.0.0.1:$H2_PORT" 2>/dev/null | grep -c "pid=$SIDECAR_PID,"; }
wait_for 20 "$S blocking queries in flight" queries_at_least "$S"
n=$(conns)
[ "$n" -ge 1 ] && [ "$n" -le 8 ] && ok || fail "connections to the agent: $n (want 1..8)"
echo "h2: $S upstreams over $n connection(s)" >&2

# srv SERVICE INSTANCE: the HAProxy server name of instance 1 or 2.
srv() { echo "cs-127.0.0.1:$((20000 + $1 * 2 + $2))"; }
# flip SERVICE INSTANCE pass|fail: a check change, and its effect awaited.
flip() {
    set_check "node-$2" "s$1-$2-ttl" "$3"
    if [ "$3" = fail ]; then want=$(srv "$1" $(( 3 - $2 ))); else want="$(srv "$1" 1) $(srv "$1" 2)"; fi
    wait_for 10 "s$1-$2 $3 reaches HAProxy" servers_are "be_s$1" "$want"
}
for i in 1 $((S / 2)) $S 7; do flip "$i" 1 fail; flip "$i" 1 pass; done

# The agent restarts (its connections cut, a rejoin window of empty answers):
# every watch resumes, nothing is emptied, changes flow again.
curl -s -X POST "$CONTROL/agents/node-1/restart" -d '{"persist": true, "rejoin_ms": 1500}' >/dev/null
sleep 0.5
expect_eq "nothing emptied by the agent restart" $((S * 2)) "$(total)"
flip 3 2 fail; flip 3 2 pass
expect_eq "every target still there" $((S * 2)) "$(total)"

# The terminator restarts: every connection is lost and made again. Every
# query comes back (a watch whose retries failed may wait out its backoff:
# once, in make check, s999's took 11 s), then changes flow.
curl -s -X DELETE "$CONTROL/requests" >/dev/null
stop_pid "$TERM_PID" TERM
start_term 2
wait_for 30 "all queries back on the new terminator" queries_at_least "$S"
flip $((S - 1)) 1 fail; flip $((S - 1)) 1 pass
expect_eq "nothing emptied by the terminator restart" $((S * 2)) "$(total)"

# GOAWAY mid-stream: a soft reload (-sf) tells the old process to send
# GOAWAY on its h2 connections and stop within hard-stop-after (3 s),
# cutting the streams still open. A change made meanwhile is not lost.
OLD=$TERM_PID
curl -s -X DELETE "$CONTROL/requests" >/dev/null
start_term 3 "-sf $OLD"
set_check node-2 s11-2-ttl fail
gone() { ! kill -0 "$1" 2>/dev/null; }
wait_for 10 "old terminator gone" gone "$OLD"
wait_for 15 "the change made across the GOAWAY applied" servers_are be_s11 "$(srv 11 1)"
flip 11 2 pass
# Every stream cut by the hard stop comes back at once; they share the new
# connections instead of opening one each.
wait_for 30 "all queries back after the GOAWAY" queries_at_least "$S"
n=$(conns)
[ "$n" -ge 1 ] && [ "$n" -le 8 ] && ok || fail "connections after the GOAWAY: $n (want 1..8)"
echo "h2: after the GOAWAY, $n connection(s)" >&2
expect_eq "nothing emptied" $((S * 2)) "$(total)"
finish
