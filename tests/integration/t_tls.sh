#!/bin/bash
# TLS to Consul is verified by default: an untrusted certificate is refused
# (and retried, never exits); CONSUL_CACERT trusts it; CONSUL_TLS_SERVER_NAME
# verifies against another name; CONSUL_HTTP_SSL_VERIFY=false connects but
# warns loudly. The double sits behind a TLS front (socat).
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
finish
