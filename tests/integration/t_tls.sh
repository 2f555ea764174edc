#!/bin/bash
# TLS to Consul is verified by default: an untrusted certificate is refused
# (and retried, never exits); CONSUL_CACERT trusts it; CONSUL_TLS_SERVER_NAME
# verifies against another name; CONSUL_HTTP_SSL_VERIFY=false connects but
# warns loudly. The double sits behind a TLS front (socat). Then, with a CA of
# our own: CONSUL_CAPATH (a hashed directory), mutual TLS with
# CONSUL_CLIENT_CERT/KEY (no client certificate: refused, said clearly), a
# certificate with only a DNS name checked through CONSUL_TLS_SERVER_NAME
# while connecting to 127.0.0.1, and a unix:// address end to end.
. "$(dirname "$0")/lib.sh"
if ! command -v openssl >/dev/null 2>&1; then fail "openssl is not installed"; finish; fi
start_consul || finish
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=consul.local" \
    -addext "subjectAltName=DNS:consul.local,IP:127.0.0.1" \
    -keyout "$T/key.pem" -out "$T/cert.pem" >/dev/null 2>&1 || { fail "openssl req"; finish; }
cat "$T/cert.pem" "$T/key.pem" > "$T/both.pem"
TLS_PORT=$("$BIN/freeport" 1)
start_bg tls socat "OPENSSL-LISTEN:$TLS_PORT,bind=127.0.0.1,reuseaddr,fork,cert=$T/both.pem,verify=0" "TCP:127.0.0.1:$CONSUL_PORT"
wait_for 10 "TLS front" sh -c "curl -sk https://127.0.0.1:$TLS_PORT/v1/status/leader | grep -q 8300"
cfg() { printf '{"node": "node-1", "drain": "0s", "service": {"name": "%s", "port": 1}}\n' "$1" > "$T/$1.json"; }

cfg untrusted
CONSUL_HTTP_ADDR=https://127.0.0.1:$TLS_PORT start_sidecar untrusted "$T/untrusted.json" || finish
wait_for 10 "untrusted certificate refused" log_has untrusted "Consul agent unreachable"
expect_contains "names the certificate problem" "certificate" "$(cat "$T/untrusted.log")"
catalog_lacks untrusted '"Service":"untrusted"' && ok || fail "registered through an unverified connection"
stop_pid "$SIDECAR_PID" TERM

cfg withca
CONSUL_HTTP_ADDR=https://127.0.0.1:$TLS_PORT CONSUL_CACERT=$T/cert.pem start_sidecar withca "$T/withca.json" || finish
wait_for 10 "registered over verified TLS" catalog_has withca '"Service":"withca"'
stop_pid "$SIDECAR_PID" TERM

cfg byname
CONSUL_HTTP_ADDR=https://127.0.0.1:$TLS_PORT CONSUL_CACERT=$T/cert.pem CONSUL_TLS_SERVER_NAME=consul.local \
    start_sidecar byname "$T/byname.json" || finish
wait_for 10 "verified against CONSUL_TLS_SERVER_NAME" catalog_has byname '"Service":"byname"'
stop_pid "$SIDECAR_PID" TERM

cfg insecure
CONSUL_HTTP_ADDR=https://127.0.0.1:$TLS_PORT CONSUL_HTTP_SSL_VERIFY=false start_sidecar insecure "$T/insecure.json" || finish
wait_for 10 "registered without verification" catalog_has insecure '"Service":"insecure"'
expect_contains "warned loudly" "[WARN] sidecar: CONSUL_HTTP_SSL_VERIFY is false" "$(cat "$T/insecure.log")"
stop_pid "$SIDECAR_PID" TERM

# ---- a CA of our own ---------------------------------------------------------
# issue NAME SAN [EXT]: a key and a certificate signed by the test CA.
issue() {
    openssl req -new -newkey rsa:2048 -nodes -subj "/CN=$1" -keyout "$T/$1.key" -out "$T/$1.csr" >/dev/null 2>&1 &&
        printf 'subjectAltName=%s\nextendedKeyUsage=%s\n' "$2" "${3:-serverAuth}" > "$T/$1.ext" &&
        openssl x509 -req -days 2 -in "$T/$1.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
            -extfile "$T/$1.ext" -out "$T/$1.pem" >/dev/null 2>&1 &&
        cat "$T/$1.pem" "$T/$1.key" > "$T/$1.both"
}
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=consul-sidecar test CA" \
    -keyout "$T/ca.key" -out "$T/ca.pem" >/dev/null 2>&1 || { fail "openssl: test CA"; finish; }
issue server "DNS:consul.local,IP:127.0.0.1" || { fail "openssl: server certificate"; finish; }
issue dnsonly "DNS:consul.local" || { fail "openssl: DNS-only certificate"; finish; }
issue client "DNS:gateway-1" clientAuth || { fail "openssl: client certificate"; finish; }
# tls_front NAME CERT [SOCAT OPTIONS]: a TLS front for the double; sets FRONT_PORT.
tls_front() {
    FRONT_PORT=$("$BIN/freeport" 1)
    start_bg "$1" socat "OPENSSL-LISTEN:$FRONT_PORT,bind=127.0.0.1,reuseaddr,fork,cert=$T/$2.both,${3:-verify=0}" "TCP:127.0.0.1:$CONSUL_PORT"
    wait_for 10 "TLS front $1" sh -c "echo | openssl s_client -connect 127.0.0.1:$FRONT_PORT >/dev/null 2>&1" || finish
}

# CONSUL_CAPATH: a directory of CA certificates named by their hash.
mkdir -p "$T/cadir"
cp "$T/ca.pem" "$T/cadir/test-ca.pem"
openssl rehash "$T/cadir" 2>/dev/null || c_rehash "$T/cadir" >/dev/null 2>&1
ls "$T/cadir" | grep -q '^[0-9a-f]\{8\}\.0$' && ok || fail "the CA directory was not hashed"
tls_front front-ca server
cfg capath
CONSUL_HTTP_ADDR=https://127.0.0.1:$FRONT_PORT CONSUL_CAPATH=$T/cadir start_sidecar capath "$T/capath.json" || finish
wait_for 10 "registered, trusting CONSUL_CAPATH" catalog_has capath '"Service":"capath"'
stop_pid "$SIDECAR_PID" TERM
# The same front without CONSUL_CAPATH: our CA is not a system one.
cfg nocapath
CONSUL_HTTP_ADDR=https://127.0.0.1:$FRONT_PORT start_sidecar nocapath "$T/nocapath.json" || finish
wait_for 10 "refused without the CA directory" log_has nocapath "Consul agent unreachable"
catalog_lacks nocapath '"Service":"nocapath"' && ok || fail "registered without trusting the CA"
stop_pid "$SIDECAR_PID" TERM

# Mutual TLS: the front asks for a client certificate signed by our CA.
tls_front front-mtls server "verify=1,cafile=$T/ca.pem"
cfg mtls
CONSUL_HTTP_ADDR=https://127.0.0.1:$FRONT_PORT CONSUL_CACERT=$T/ca.pem CONSUL_CLIENT_CERT=$T/client.pem \
    CONSUL_CLIENT_KEY=$T/client.key start_sidecar mtls "$T/mtls.json" || finish
wait_for 10 "registered over mutual TLS" catalog_has mtls '"Service":"mtls"'
stop_pid "$SIDECAR_PID" TERM
cfg nocert
CONSUL_HTTP_ADDR=https://127.0.0.1:$FRONT_PORT CONSUL_CACERT=$T/ca.pem start_sidecar nocert "$T/nocert.json" || finish
wait_for 10 "no client certificate: refused" log_has nocert "Consul agent unreachable"
line=$(grep -m1 "Consul agent unreachable" "$T/nocert.log")
expect_contains "the refusal names the missing certificate" "client certificate" "$line"
catalog_lacks nocert '"Service":"nocert"' && ok || fail "registered without a client certificate"
kill -0 "$SIDECAR_PID" && ok || fail "the sidecar exited on a TLS refusal"
stop_pid "$SIDECAR_PID" TERM

# A certificate for consul.local only (no IP SAN), reached at 127.0.0.1.
tls_front front-dns dnsonly
cfg noname
CONSUL_HTTP_ADDR=https://127.0.0.1:$FRONT_PORT CONSUL_CACERT=$T/ca.pem start_sidecar noname "$T/noname.json" || finish
wait_for 10 "name mismatch refused" log_has noname "Consul agent unreachable"
line=$(grep -m1 "Consul agent unreachable" "$T/noname.log")
expect_contains "the refusal says the name does not match" "no alternative certificate subject name matches target host name '127.0.0.1'" "$line"
catalog_lacks noname '"Service":"noname"' && ok || fail "registered despite a name mismatch"
stop_pid "$SIDECAR_PID" TERM
cfg dnsname
CONSUL_HTTP_ADDR=https://127.0.0.1:$FRONT_PORT CONSUL_CACERT=$T/ca.pem CONSUL_TLS_SERVER_NAME=consul.local \
    start_sidecar dnsname "$T/dnsname.json" || finish
wait_for 10 "registered, verified as consul.local" catalog_has dnsname '"Service":"dnsname"'
stop_pid "$SIDECAR_PID" TERM

# unix://: the double behind a unix socket; every request of the sidecar
# reaches it through the socket (it is the only way in this sidecar knows).
start_bg unix-front socat "UNIX-LISTEN:$T/consul.sock,fork" "TCP:127.0.0.1:$CONSUL_PORT"
wait_for 10 "unix socket front" test -S "$T/consul.sock"
cfg viaunix
CONSUL_HTTP_ADDR=unix://$T/consul.sock start_sidecar viaunix "$T/viaunix.json" || finish
wait_for 10 "registered over unix://" catalog_has viaunix '"Service":"viaunix"'
expect_contains "the address is the socket" "Consul at unix://$T/consul.sock" "$(cat "$T/viaunix.log")"
stop_pid "$SIDECAR_PID" TERM; rc=$?
expect_eq "exit status (unix://)" 0 "$rc"
expect_not_contains "deregistered over unix:// at SIGTERM" '"viaunix"' "$(curl -s "$CONSUL/v1/agent/services")"
finish
