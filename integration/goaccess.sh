#!/usr/bin/env bash
# berth's combined access log read by goaccess: a mix of requests (errors
# berth makes, HEAD, HTTP/2, odd user agents and referers), a rotation with
# SIGUSR1, then SIGTERM; every line must parse, one line per request.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

make_certs "$WORK"
start_app web1
APP=$APP_PORT
DEAD=$(free_port)
TLS_PORT=$(free_port)
LOG="$WORK/logs/access.log"

cat >"$WORK/berth.toml" <<EOF
[global]
access_log = "logs/access.log"
log_format = "combined"
[[listener]]
bind = "127.0.0.1:$TLS_PORT"
tls = true
[[route]]
host = "a.test"
pool = "web"
[[route]]
host = "b.test"
path_prefix = "/dead/"
pool = "dead"
[pools.web]
[[pools.web.servers]]
name = "web1"
addr = "127.0.0.1:$APP"
[pools.dead]
retries = 0
[[pools.dead.servers]]
name = "dead1"
addr = "127.0.0.1:$DEAD"
EOF
start_berth "$WORK" berth.toml "$TLS_PORT"
check "the missing logs/ directory was created" test -d "$WORK/logs"

REQUESTS=0
req() { # EXPECTED_STATUS CURL_ARGS... : one request (HTTP/1.1 unless --http2), counted
    local expected=$1 code
    shift
    REQUESTS=$((REQUESTS + 1))
    code=$(https_curl --http1.1 -o /dev/null -w '%{http_code}' "$@") || code="curl exit $?"
    expect_eq "request $REQUESTS (${*: -1}) -> $expected" "$expected" "$code"
}
# The user agent of SPEC §6's escaping rows: quote, backslash, tab, UTF-8.
UA=$'agent "quoted" back\\slash tab\there caf\xc3\xa9'
UA_LOGGED='"agent \"quoted\" back\\slash tab\there caf\xc3\xa9"'
A="https://a.test:$TLS_PORT"
B="https://b.test:$TLS_PORT"

echo "# a mix of requests"
req 200 "$A/"
req 200 --http2 "$A/h2?x=1&y=%22z%22"
req 404 "$A/code/404"
req 204 "$A/code/204"
req 404 "$B/no/route/here"
req 502 "$B/dead/x"
req 200 -I "$A/head"
req 200 -A "$UA" "$A/ua"
req 200 --http2 -A "$UA" "$A/ua-h2"
req 200 -H 'User-Agent;' -H 'Referer;' "$A/empty-referer"
req 200 -A 'Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0' -e "$A/from" "$A/referer"
req 200 -u 'alice:secret' "$A/basic-auth"
req 200 -d 'a=1&b=2' "$A/form"
req 200 --path-as-is "$A/quote\"in\\path"

echo "# flushed while running, then rotated with SIGUSR1"
deadline=$((SECONDS + 5))
until [[ -f "$LOG" && $(wc -l <"$LOG") -ge $REQUESTS ]] || ((SECONDS >= deadline)); do sleep 0.1; done
expect_eq "every line written within a few seconds, berth still running" "$REQUESTS" "$(wc -l <"$LOG")"
mv "$LOG" "$LOG.1"
kill -USR1 "$BERTH_PID"
deadline=$((SECONDS + 5))
until [[ -f "$LOG" ]] || ((SECONDS >= deadline)); do sleep 0.05; done
check "SIGUSR1 reopened logs/access.log" test -f "$LOG"
req 200 "$A/after-rotation"
req 200 --http2 "$A/after-rotation-h2"

stop_pid "$BERTH_PID"
expect_eq "SIGTERM: berth exits 0" 0 "$STOP_STATUS"
expect_eq "rotated file kept its $((REQUESTS - 2)) lines" "$((REQUESTS - 2))" "$(wc -l <"$LOG.1")"
expect_eq "new file has the 2 requests after the rotation" 2 "$(wc -l <"$LOG")"
cat "$LOG.1" "$LOG" >"$WORK/all.log"
echo "--- the log:"
cat "$WORK/all.log"
echo "---"

echo "# goaccess --log-format=COMBINED"
goaccess "$WORK/all.log" --log-format=COMBINED -o "$WORK/report.json" \
    --invalid-requests="$WORK/invalid.txt" </dev/null >"$WORK/goaccess.out" 2>&1
read -r valid failed < <(python3 -c 'import json,sys; g=json.load(open(sys.argv[1]))["general"];
print(g["valid_requests"], g["failed_requests"])' "$WORK/report.json")
expect_eq "goaccess: no invalid line" 0 "$failed"
expect_eq "goaccess: one valid line per request" "$REQUESTS" "$valid"
check "goaccess: invalid-requests file is empty" test ! -s "$WORK/invalid.txt"

echo "# what the lines say"
line() { grep -F -- "$1" "$WORK/all.log" | head -1; }
expect_match "HEAD: %b is -" '"HEAD /head HTTP/1\.1" 200 - ' "$(line '/head ')"
expect_match "204: %b is -" '"GET /code/204 HTTP/1\.1" 204 - ' "$(line /code/204)"
expect_match "HTTP/2 request line" '"GET /h2\?x=1&y=%22z%22 HTTP/2\.0" 200 [0-9]+ ' "$(line /h2)"
expect_match "berth's 404 is logged" '"GET /no/route/here HTTP/1\.1" 404 [0-9]+ ' "$(line /no/route/here)"
expect_match "berth's 502 is logged" '"GET /dead/x HTTP/1\.1" 502 [0-9]+ ' "$(line /dead/x)"
expect_eq "UA: quote, backslash, tab and UTF-8 escaped (HTTP/1.1)" "$UA_LOGGED" "$(line '/ua HTTP/1.1' | grep -oF -- "$UA_LOGGED")"
expect_eq "UA: escaped the same over HTTP/2" "$UA_LOGGED" "$(line '/ua-h2 HTTP/2.0' | grep -oF -- "$UA_LOGGED")"
expect_match "empty Referer and UA logged as \"\"" '" 200 [0-9]+ "" ""$' "$(line /empty-referer)"
expect_match "absent Referer logged as \"-\"" '"GET / HTTP/1\.1" 200 [0-9]+ "-" "curl/' "$(line '"GET / ')"
expect_match "Referer logged" "\"$A/from\" \"Mozilla/5\\.0 \\(X11" "$(line /referer)"
expect_match "%u is the Basic-auth user" '^127\.0\.0\.1 - alice \[' "$(line /basic-auth)"
check "%r: quote and backslash in the path escaped" grep -qF -- '"GET /quote\"in\\path HTTP/1.1" 200' "$WORK/all.log"
expect_match "%h %l %u %t shape" \
    '^127\.0\.0\.1 - - \[[0-9]{2}/[A-Z][a-z]{2}/[0-9]{4}:[0-9]{2}:[0-9]{2}:[0-9]{2} [+-][0-9]{4}\] "' \
    "$(line /after-rotation-h2)"
finish
