#!/usr/bin/env bash
# openssl s_client against berth: the certificate chosen by SNI (exact name,
# unknown name -> default), TLS 1.2 and 1.3 only, ALPN, session resumption.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

make_certs "$WORK"
start_app web1
APP=$APP_PORT

write_config() { # FILE PORT [default_cert]
    cat >"$1" <<EOF
[global]
certs = "certs"
${3:+default_cert = \"$3\"}
access_log = "logs/access.log"
[[listener]]
bind = "127.0.0.1:$2"
tls = true
[[route]]
pool = "web"
[pools.web]
[[pools.web.servers]]
name = "web1"
addr = "127.0.0.1:$APP"
EOF
}

# sclient ARGS...: one handshake (and, with a request on stdin, one
# request); its output in OUT, its exit status in RC.
sclient() {
    OUT=$(timeout 15 openssl s_client -connect "127.0.0.1:$TLS_PORT" -CAfile "$WORK/ca.crt" \
        "$@" 2>&1) && RC=0 || RC=$?
}
has() { # DESC REGEX: OUT matches REGEX (grep -E)
    if grep -qE -- "$2" <<<"$OUT"; then pass "$1"; else
        fail "$1: no /$2/ in the s_client output:"
        sed 's/^/    /' <<<"$OUT" | head -40
    fi
}
lacks() { # DESC REGEX
    if grep -qE -- "$2" <<<"$OUT"; then fail "$1: /$2/ found"; else pass "$1"; fi
}
request() { printf 'GET /tls HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$1"; }

TLS_PORT=$(free_port)
write_config "$WORK/berth.toml" "$TLS_PORT" b.test
start_berth "$WORK" berth.toml "$TLS_PORT"

echo "# certificate by SNI"
sclient -servername a.test -verify_return_error -verify_hostname a.test </dev/null
has "SNI a.test: the a.test certificate" "subject=CN ?= ?a\.test"
has "SNI a.test: verified against the test CA" "Verify return code: 0 \(ok\)"
has "a.test: the ECDSA P-256 key" "Server public key is 256 bit"
has "a.test: the chain from the combined PEM is sent" "1 s:CN ?= ?berth integration CA"
sclient -servername b.test -verify_return_error -verify_hostname b.test </dev/null
has "SNI b.test: the b.test certificate" "subject=CN ?= ?b\.test"
has "SNI b.test: verified against the test CA" "Verify return code: 0 \(ok\)"
has "b.test: the RSA-2048 key from b.test.key" "Server public key is 2048 bit"
sclient -servername c.test </dev/null
has "unknown SNI: the default_cert (b.test)" "subject=CN ?= ?b\.test"
sclient -noservername </dev/null
has "no SNI: the default_cert (b.test)" "subject=CN ?= ?b\.test"

echo "# protocol versions"
sclient -servername a.test -tls1_3 </dev/null
has "TLS 1.3 accepted" "New, TLSv1\.3"
sclient -servername a.test -tls1_2 </dev/null
has "TLS 1.2 accepted" "New, TLSv1\.2"
for version in tls1_1 tls1; do
    # SECLEVEL=0 lets this openssl offer the old version at all, so it is
    # berth that refuses it.
    sclient -servername a.test "-$version" -cipher 'DEFAULT@SECLEVEL=0' </dev/null
    check "-$version: handshake fails" test "$RC" -ne 0
    has "-$version: refused by berth with an alert" "alert (protocol version|handshake failure)"
    lacks "-$version: not refused by openssl itself" "no protocols available"
    lacks "-$version: no session" "New, TLSv1(\.1)?,"
done

echo "# ALPN"
for alpn in h2 http/1.1; do
    sclient -servername a.test -alpn "$alpn" </dev/null
    has "ALPN $alpn offered alone: $alpn" "ALPN protocol: $alpn"
done
sclient -servername a.test -alpn h2,http/1.1 </dev/null
has "ALPN h2,http/1.1: h2 preferred" "ALPN protocol: h2"

echo "# session resumption"
for version in tls1_3 tls1_2; do
    sess="$WORK/$version.sess"
    sclient -servername a.test "-$version" -sess_out "$sess" -ign_eof < <(request a.test)
    has "$version: first connection is new" "New, TLSv1\.[23]"
    has "$version: request answered over it" "HTTP/1\.1 200"
    sclient -servername a.test "-$version" -sess_in "$sess" </dev/null
    has "$version: second connection is resumed" "Reused, TLSv1\.[23]"
done
stop_pid "$BERTH_PID"
expect_eq "SIGTERM: berth exits 0" 0 "$STOP_STATUS"

echo "# without default_cert: the first file in byte order (a.test.pem)"
TLS_PORT=$(free_port)
write_config "$WORK/no-default.toml" "$TLS_PORT"
start_berth "$WORK" no-default.toml "$TLS_PORT"
sclient -servername c.test </dev/null
has "unknown SNI: a.test, from certs/a.test.pem" "subject=CN ?= ?a\.test"
stop_pid "$BERTH_PID"
expect_eq "SIGTERM: berth exits 0" 0 "$STOP_STATUS"
finish
