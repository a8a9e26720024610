#!/usr/bin/env bash
# Operating berth without restarts (issue 5), against the release binary.
#
# First the admin API's answers and token; an invalid config refused by
# POST /reload and by SIGHUP; in certs/, a broken replacement refused, a
# file added and one removed, each seen within 5 seconds.
# Then, under a steady h2load load through TLS (HTTP/2 and HTTP/1.1 in
# turns, running the whole time), OPERATE_ROUNDS (default 20) rounds of:
#   a. a reload that adds a route (and a plain listener on odd rounds,
#      removed on even ones), by POST /reload and SIGHUP in turns: the new
#      route answers, the previous one is gone, run-time changes and table
#      ties survive, the unchanged listeners keep their sockets;
#   b. a certificate replaced in certs/ (a.test.pem renamed into place, or
#      b.test.crt + b.test.key overwritten one after the other): openssl
#      s_client sees the new serial within 5 seconds, without a signal;
#   c. a server registered through the admin API (it takes requests), then
#      deregistered;
#   d. a server registered, drained until berth logs it "drained", removed.
# then prints the load's request and error counts and fails on any error.
# After the loop:
#   e. a SIGTERM and a start again: /status shows the same servers, states
#      and weights; a stale state file (its pool gone) and a corrupt one are
#      reported and berth starts;
#   g. /metrics parses with prometheus-client's parsers, every metric of
#      SPEC §8 is there, and each moves when it should;
#   f. SIGTERM during a 3-second request: it ends 200, berth exits 0, the
#      request's log line is on disk; a second SIGTERM exits 1 at once.
# Needs h2load (apt nghttp2-client) and ss (iproute2); makes a venv for
# prometheus-client under ~/.cache/berth-integ (BERTH_INTEG_VENV) on first use.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ROUNDS=${OPERATE_ROUNDS:-20}
TOKEN=operate-token
VENV=${BERTH_INTEG_VENV:-$HOME/.cache/berth-integ}
command -v h2load >/dev/null || {
    echo "no h2load: apt-get install nghttp2-client (test.sh does)" >&2
    exit 1
}
if ! "$VENV/bin/python" -c 'import prometheus_client' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q prometheus-client
fi
PY=$VENV/bin/python

# ── the site: app servers, certificates, config ─────────────────────────
make_certs "$WORK"
start_app web1 && WEB1=$APP_PORT
start_app web2 && WEB2=$APP_PORT
start_app keep1 && KEEP1=$APP_PORT
start_app spare1 && SPARE1=$APP_PORT
start_app spare2 && SPARE2=$APP_PORT
start_app side1 && SIDE1=$APP_PORT SIDE1_PID=$APP_PID
start_app side2 && SIDE2=$APP_PORT SIDE2_PID=$APP_PID
NOBODY=$(free_port) # side3's address: nothing listens there
TLS_PORT=$(free_port)
ADMIN_PORT=$(free_port)
PROXY_PORT=$(free_port)    # PROXY v2 from 127.0.0.1
UNTRUSTED_PORT=$(free_port) # PROXY v2 from 10.0.0.0/8 only
EXTRA_PORT=$(free_port)    # a plain listener, there on odd rounds

# write_config ROUND [noside]: berth.toml with the route /rROUND/ to pool
# side, and the extra listener when ROUND is odd; with noside, no pool side.
write_config() {
    local round=$1 extra=""
    if ((round % 2)); then
        extra=$'[[listener]]\nbind = "127.0.0.1:'"$EXTRA_PORT"$'"\ntls = false\n'
    fi
    cat >"$WORK/berth.toml.new" <<EOF
[global]
certs = "certs"
access_log = "logs/access.log"
log_format = "combined_plus"
admin = "127.0.0.1:$ADMIN_PORT"
admin_token = "$TOKEN"
state_file = "state/berth.state"
drain_delay = "2s"
drain_timeout = "10s"

[[listener]]
bind = "127.0.0.1:$TLS_PORT"
tls = true
health_path = "/berth-health"

[[listener]]
bind = "127.0.0.1:$PROXY_PORT"
tls = true
proxy_protocol = "v2"
proxy_from = ["127.0.0.1/32"]

[[listener]]
bind = "127.0.0.1:$UNTRUSTED_PORT"
tls = true
proxy_protocol = "v2"
proxy_from = ["10.0.0.0/8"]

$extra
[[route]]
path_prefix = "/r$round/"
strip_prefix = true
pool = "side"

[[route]]
pool = "website"

[pools.website]
connect_timeout = "1s"
affinity = { mode = "cookie", cookie = "BERTH", drain_quiet = "300ms" }
[[pools.website.servers]]
name = "web1"
addr = "127.0.0.1:$WEB1"
[[pools.website.servers]]
name = "web2"
addr = "127.0.0.1:$WEB2"

[pools.side]
connect_timeout = "1s"
affinity = { mode = "client_ip" }
health = { path = "/health", interval = "200ms", timeout = "500ms", rise = 1, fall = 1 }
[[pools.side.servers]]
name = "side1"
addr = "127.0.0.1:$SIDE1"
[[pools.side.servers]]
name = "side2"
addr = "127.0.0.1:$SIDE2"
[[pools.side.servers]]
name = "side3"
addr = "127.0.0.1:$NOBODY"
EOF
    if [[ "${2:-}" == noside ]]; then
        python3 - "$WORK/berth.toml.new" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
text = re.sub(r'\[\[route\]\]\npath_prefix = "/r\d+/"\nstrip_prefix = true\npool = "side"\n', "", text)
text = text[: text.index("[pools.side]")]
open(path, "w").write(text)
PY
    fi
    mv "$WORK/berth.toml.new" "$WORK/berth.toml"
}

# ── helpers ──────────────────────────────────────────────────────────────

# admin METHOD PATH [JSON]: the admin API with the token; sets CODE, BODY.
admin() {
    local out args=(-sS --max-time 20 -X "$1" -H "Authorization: Bearer $TOKEN")
    [[ $# -ge 3 ]] && args+=(-H "Content-Type: application/json" --data "$3")
    out=$(curl "${args[@]}" -w '\n%{http_code}' "http://127.0.0.1:$ADMIN_PORT$2") || out=$'\n000'
    CODE=${out##*$'\n'}
    BODY=${out%$'\n'*}
}

# pyq EXPR: evaluates EXPR with `d` the JSON document on stdin, prints it.
pyq() {
    python3 -c 'import json,sys; d=json.load(sys.stdin); r=eval(sys.argv[1]); print(r if isinstance(r, str) else json.dumps(r))' "$1"
}

# server_field POOL NAME FIELD: a field of a server in /status ("" if absent).
server_field() {
    admin GET /status
    pyq "next((str(s.get('$3')) for s in d['pools'].get('$1', {}).get('servers', []) if s['name'] == '$2'), '')" <<<"$BODY" 2>/dev/null || :
}

# servers_summary: every pool's servers, one "pool name addr state admin_state
# weight backup" line each, sorted.
servers_summary() {
    admin GET /status
    pyq "'\n'.join(sorted(f\"{p} {s['name']} {s['addr']} {s['state']} {s['admin_state']} {s['weight']} {s['backup']}\" for p, v in d['pools'].items() for s in v['servers']))" <<<"$BODY"
}

# served_by PATH: which app server answered a GET of https://a.test/PATH.
served_by() {
    https_curl -o /dev/null -D - "https://a.test:$TLS_PORT$1" 2>/dev/null |
        tr -d '\r' | sed -n 's/^[Xx]-[Ss]erved-[Bb]y: //p'
}

# serial_served NAME: the serial of the certificate berth serves for NAME.
serial_served() {
    openssl s_client -connect "127.0.0.1:$TLS_PORT" -servername "$1" </dev/null 2>/dev/null |
        openssl x509 -noout -serial 2>/dev/null | sed 's/^serial=//'
}

# subject_is NAME CN: berth's certificate for SNI NAME is CN's.
subject_is() {
    [[ "$(openssl s_client -connect "127.0.0.1:$TLS_PORT" -servername "$1" </dev/null 2>/dev/null |
        openssl x509 -noout -subject 2>/dev/null)" =~ CN\ ?=\ ?$2$ ]]
}

# persisted_ok: the run-time changes made at the start are all in /status.
persisted_ok() {
    local got
    got=$(servers_summary | grep -E '^(website keeper|website web2|side side3) ' | awk '{print $1, $2, $5, $6}' | tr '\n' ';')
    [[ "$got" == "side side3 maint 30;website keeper ready 50;website web2 ready 70;" ]]
}

# Conditions for wait_until.
log_count() { grep -c -- "$1" "$WORK/berth-$TLS_PORT.log" || :; } # REGEX: lines of berth's log
log_grew() { (($(log_count "$1") > $2)); }                           # REGEX N: more than N lines
log_has() { grep -E -- "$1" "$WORK/berth-$TLS_PORT.log" | grep -qE -- "$2"; } # REGEX1 REGEX2 on one line
route_to_side() { [[ "$(served_by "$1")" =~ ^side[12]$ ]]; }          # PATH
serves_serial() { [[ "$(serial_served "$1")" == "$2" ]]; }             # NAME SERIAL
took_requests() { [[ "$(server_field "$1" "$2" requests)" -gt 0 ]]; }  # POOL NAME
port_closed() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }     # PORT
in_flight_somewhere() {
    admin GET /status
    [[ "$(pyq "sum(s['in_flight'] for p in d['pools'].values() for s in p['servers'])" <<<"$BODY")" -ge 1 ]]
}
# listening_socket PORT: the inode of the socket listening on PORT (a re-bind
# makes a new one).
listening_socket() { ss -Hltne "sport = :$1" | grep -o 'ino:[0-9]*' | head -1; }
healthz_is() { [[ "$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/healthz")" == "$1" ]]; }

# metrics: fetches /metrics into $WORK/metrics.txt, its type in MTYPE.
metrics() {
    MTYPE=$(curl -sS --max-time 10 -H "Authorization: Bearer $TOKEN" -o "$WORK/metrics.txt" \
        -w '%{content_type}' "http://127.0.0.1:$ADMIN_PORT/metrics")
}
# metric SAMPLE [LABEL=VALUE ...]: fetches /metrics, prints the sum.
metric() {
    metrics
    "$PY" "$INTEG/metrics.py" value "$WORK/metrics.txt" "$MTYPE" "$@"
}
metric_is() { [[ "$(metric "${@:2}")" == "$1" ]]; }       # VALUE SAMPLE [LABELS]
metric_above() { local v; v=$(metric "${@:2}"); [[ "$v" != absent ]] && python3 -c 'import sys; sys.exit(not float(sys.argv[1]) > float(sys.argv[2]))' "$v" "$1"; }

cpu_seconds() { # PID: user + system CPU seconds used so far
    awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"
}

# ── start ────────────────────────────────────────────────────────────────
write_config 0
start_berth "$WORK" berth.toml "$TLS_PORT"
wait_port "$ADMIN_PORT" 10 "$BERTH_PID"

echo "# the admin API"
code=$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/healthz")
expect_eq "/healthz needs no token" 200 "$code"
hdr=$(curl -sS -D - -o /dev/null "http://127.0.0.1:$ADMIN_PORT/status" | tr -d '\r')
expect_match "/status without the token: 401 asking for a Bearer token" \
    '^http/1.1 401.*www-authenticate: bearer' "$(tr '\n[:upper:]' ' [:lower:]' <<<"$hdr")"
code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$ADMIN_PORT/reload")
expect_eq "POST /reload without the token: 401" 401 "$code"
code=$(curl -sS -o /dev/null -w '%{http_code}' -X DELETE -H "Authorization: Bearer wrong" \
    "http://127.0.0.1:$ADMIN_PORT/pools/website/servers/web1")
expect_eq "DELETE with a wrong token: 401" 401 "$code"
admin PUT /pools/website/servers/web1 '{"weight":5000}'
expect_match "weight 5000: 400 naming the field" '^400 .*weight' "$CODE $BODY"
admin PUT /pools/website/servers/web1 '{"state":"asleep"}'
expect_match "state asleep: 400 naming the field" '^400 .*state' "$CODE $BODY"
admin POST /pools/website/servers '{"name":"x",'
expect_eq "bad JSON: 400" 400 "$CODE"
check "web1 is still there, ready, weight 100" \
    test "$(server_field website web1 admin_state) $(server_field website web1 weight)" == "ready 100"
# The run-time changes that every reload and the restart must keep.
admin POST /pools/website/servers "{\"name\":\"keeper\",\"addr\":\"127.0.0.1:$KEEP1\",\"weight\":50}"
expect_eq "register keeper in website" 201 "$CODE"
admin POST /pools/website/servers "{\"name\":\"keeper\",\"addr\":\"127.0.0.1:$KEEP1\"}"
expect_eq "registering keeper again: 409" 409 "$CODE"
admin POST /pools/nosuch/servers "{\"name\":\"x\",\"addr\":\"127.0.0.1:$KEEP1\"}"
expect_eq "registering in an unknown pool: 404" 404 "$CODE"
admin POST /pools/website/servers '{"name":"bad","addr":"not an address"}'
expect_eq "registering a bad address: 400" 400 "$CODE"
admin PUT /pools/website/servers/web2 '{"weight":70}'
expect_eq "web2 weight 70" 200 "$CODE"
admin PUT /pools/side/servers/side3 '{"state":"maint","weight":30}'
expect_eq "side3 in maint, weight 30" 200 "$CODE"
check "the run-time changes show in /status" persisted_ok
check "they are in the state file" test -s "$WORK/state/berth.state"

echo "# an invalid config is refused whole; the running one keeps serving"
cp "$WORK/berth.toml" "$WORK/berth.toml.good"
# Two errors: a route to a pool that does not exist, a server name twice.
sed -i 's/^pool = "website"$/pool = "nosuch"/; s/^name = "web2"$/name = "web1"/' "$WORK/berth.toml"
admin POST /reload
expect_eq "POST /reload of a bad config: 400" 400 "$CODE"
expect_match "it names both errors" 'nosuch.*web1|web1.*nosuch' "$(tr '\n' ' ' <<<"$BODY")"
expect_match "/r0/ routes to pool side after the refused POST /reload" '^side[12]$' "$(served_by /r0/x)"
n=$(log_count nosuch)
kill -HUP "$BERTH_PID"
check "berth logs the refused SIGHUP reload" wait_until 5 "berth to log the refused SIGHUP reload" \
    log_grew nosuch "$n"
expect_match "/r0/ still routes to pool side" '^side[12]$' "$(served_by /r0/x)"
mv "$WORK/berth.toml.good" "$WORK/berth.toml"

echo "# certs/: a broken replacement is refused, a new file is served, a removed one goes"
good=$(serial_served a.test)
cp "$WORK/certs/a.test.pem" "$WORK/a.test.pem.good"
n=$(log_count 'a\.test\.pem')
printf -- '-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n' >"$WORK/certs/a.test.pem"
check "berth reports the broken a.test.pem" wait_until 5 "berth to name a.test.pem" log_grew 'a\.test\.pem' "$n"
expect_eq "a.test keeps its last good certificate" "$good" "$(serial_served a.test)"
mv "$WORK/a.test.pem.good" "$WORK/certs/a.test.pem"
make_leaf "$WORK" c.test ec
cat "$WORK/pki/c.test.crt" "$WORK/pki/c.test.key" >"$WORK/certs/c.test.pem"
check "an added c.test.pem is served within 5 s" wait_until 5 "c.test's certificate" subject_is c.test c.test
rm "$WORK/certs/c.test.pem"
check "once removed, c.test gets the default certificate (a.test.pem) within 5 s" \
    wait_until 5 "the default certificate for c.test" subject_is c.test a.test

# ── the load ─────────────────────────────────────────────────────────────
mkdir -p "$WORK/load"
load_loop() {
    local i=0 proto
    while [[ ! -e "$WORK/load.stop" ]]; do
        i=$((i + 1))
        proto=(-c 4 -m 8)
        ((i % 2)) || proto=(--h1 -c 8 -m 1)
        h2load "${proto[@]}" -D 3 -t 1 --connect-to="127.0.0.1:$TLS_PORT" \
            "https://a.test:$TLS_PORT/load" >"$WORK/load/$i.txt" 2>&1 ||
            echo "h2load exited $?" >>"$WORK/load/$i.txt"
    done
}
load_loop &
LOAD_PID=$!
STARTED_PIDS+=("$LOAD_PID")
CPU0=$(cpu_seconds "$BERTH_PID")
T0=$SECONDS
wait_until 10 "the load to reach berth" \
    grep -qs ' /load ' "$WORK/logs/access.log"

# ── the rounds ───────────────────────────────────────────────────────────
SOCKETS=$(listening_socket "$TLS_PORT") SOCKETS+=" $(listening_socket "$PROXY_PORT")"
expect_match "ss shows the listening sockets" '^ino:[0-9]+ ino:[0-9]+$' "$SOCKETS"
CERT_MS=()
round_fail=0
rfail() { round_fail=$((round_fail + 1)); fail "round $r: $*"; }
for ((r = 1; r <= ROUNDS; r++)); do
    echo "# round $r of $ROUNDS"

    # a. reload with a new route (and the extra listener on odd rounds)
    write_config "$r"
    if ((r % 2)); then
        admin POST /reload
        [[ "$CODE" == 200 ]] || rfail "POST /reload: $CODE $BODY"
    else
        kill -HUP "$BERTH_PID"
    fi
    wait_until 5 "/r$r/ to answer from pool side" route_to_side "/r$r/x" || rfail "the new route /r$r/ does not answer"
    # 127.0.0.1's client_ip tie in pool side survives every reload.
    side=$(served_by "/r$r/tie")
    SIDE_TIE=${SIDE_TIE:-$side}
    [[ "$side" == "$SIDE_TIE" ]] || rfail "the client_ip tie to $SIDE_TIE did not survive the reload: $side"
    prev=$(served_by "/r$((r - 1))/x")
    [[ "$prev" =~ ^(web1|web2|keep1|spare1|spare2)$ ]] || rfail "the old route /r$((r - 1))/ still goes to '$prev'"
    if ((r % 2)); then
        code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$EXTRA_PORT/e" || :)
        [[ "$code" == 200 ]] || rfail "the added listener answers $code"
    else
        wait_until 5 "the removed listener to stop accepting" \
            port_closed "$EXTRA_PORT" || rfail "the removed listener still accepts"
    fi
    persisted_ok || rfail "run-time changes lost by the reload: $(servers_summary | tr '\n' ';')"

    # b. a certificate replaced in certs/, no signal
    if ((r % 2)); then
        name=a.test
        make_leaf "$WORK" a.test ec
        cat "$WORK/pki/a.test.crt" "$WORK/ca.crt" "$WORK/pki/a.test.key" >"$WORK/a.test.pem.tmp"
    else
        name=b.test
        make_leaf "$WORK" b.test ec
    fi
    want=$(openssl x509 -noout -serial -in "$WORK/pki/$name.crt" | sed 's/^serial=//')
    t=$(date +%s%N)
    if ((r % 2)); then
        mv "$WORK/a.test.pem.tmp" "$WORK/certs/a.test.pem"
    else
        cat "$WORK/pki/b.test.crt" "$WORK/ca.crt" >"$WORK/certs/b.test.crt"
        cp "$WORK/pki/b.test.key" "$WORK/certs/b.test.key"
    fi
    if wait_until 5 "$name's new serial $want" serves_serial "$name" "$want"; then
        CERT_MS+=($((($(date +%s%N) - t) / 1000000)))
    else
        rfail "$name still served with serial $(serial_served "$name") 5 s after the replacement, not $want"
    fi

    # c. a server registered, then deregistered
    admin POST /pools/website/servers "{\"name\":\"reg$r\",\"addr\":\"127.0.0.1:$SPARE1\",\"weight\":100}"
    [[ "$CODE" == 201 ]] || rfail "register reg$r: $CODE $BODY"
    wait_until 5 "reg$r to take requests" took_requests website "reg$r" || rfail "reg$r took no request"
    admin DELETE "/pools/website/servers/reg$r"
    [[ "$CODE" == 200 ]] || rfail "deregister reg$r: $CODE $BODY"
    [[ -z "$(server_field website "reg$r" name)" ]] || rfail "reg$r still in /status"

    # d. a server drained, then removed once berth says it is drained
    admin POST /pools/website/servers "{\"name\":\"drn$r\",\"addr\":\"127.0.0.1:$SPARE2\"}"
    [[ "$CODE" == 201 ]] || rfail "register drn$r: $CODE $BODY"
    wait_until 5 "drn$r to take requests" took_requests website "drn$r" || rfail "drn$r took no request"
    admin PUT "/pools/website/servers/drn$r" '{"state":"drain"}'
    [[ "$CODE" == 200 ]] || rfail "drain drn$r: $CODE $BODY"
    state=$(server_field website "drn$r" state)
    [[ "$state" == drain ]] || rfail "drn$r state '$state', not drain"
    wait_until 5 "berth to log drn$r drained" \
        log_has drained "drn$r\\b" ||
        rfail "no 'drained' log line for drn$r; in /status: $(admin GET /status && pyq "[s for s in d['pools']['website']['servers'] if s['name'] == 'drn$r']" <<<"$BODY")"
    admin DELETE "/pools/website/servers/drn$r"
    [[ "$CODE" == 200 ]] || rfail "remove drn$r: $CODE $BODY"
done
((round_fail == 0)) && pass "$ROUNDS rounds of reload, certificate, register, drain under load"
expect_eq "the unchanged listeners were never re-bound (same sockets)" \
    "$SOCKETS" "$(listening_socket "$TLS_PORT") $(listening_socket "$PROXY_PORT")"

# ── the load's result ────────────────────────────────────────────────────
touch "$WORK/load.stop"
wait "$LOAD_PID" || :
LOAD_S=$((SECONDS - T0))
CPU1=$(cpu_seconds "$BERTH_PID")
read -r REQUESTS ERRORS < <(python3 - "$WORK"/load/*.txt <<'EOF'
import re, sys
requests = errors = 0
for path in sys.argv[1:]:
    text = open(path).read()
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", text)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if not m or not codes or "h2load exited" in text:
        errors += 1
        print(f"{path}: {text.strip()[-400:]}", file=sys.stderr)
        continue
    done, failed, timeout = int(m[3]), int(m[5]), int(m[7])
    requests += done
    errors += failed + timeout + sum(int(c) for c in codes.groups()[1:])
print(requests, errors)
EOF
)
echo "load: $REQUESTS requests, $ERRORS errors in ${LOAD_S}s ($((REQUESTS / (LOAD_S > 0 ? LOAD_S : 1))) per second); berth used $(python3 -c "print(round($CPU1 - $CPU0, 1))") CPU-seconds"
if ((${#CERT_MS[@]} > 0)); then
    echo "certificate replacement seen by s_client after (ms): min $(printf '%s\n' "${CERT_MS[@]}" | sort -n | head -1), max $(printf '%s\n' "${CERT_MS[@]}" | sort -n | tail -1)"
fi
check "the load ran ($REQUESTS requests)" test "$REQUESTS" -gt 0
expect_eq "not one request of the load failed" 0 "$ERRORS"

# ── e. restart after run-time changes ────────────────────────────────────
echo "# restart keeps run-time changes"
BEFORE=$(servers_summary)
stop_pid "$BERTH_PID" TERM 20
expect_eq "berth exits 0 on SIGTERM" 0 "$STOP_STATUS"
mv "$WORK/berth-$TLS_PORT.log" "$WORK/berth-run1.log"
start_berth "$WORK" berth.toml "$TLS_PORT"
wait_port "$ADMIN_PORT" 10 "$BERTH_PID"
AFTER=$(servers_summary)
if [[ "$BEFORE" == "$AFTER" ]]; then pass "/status: the same servers, states and weights after the restart"; else
    fail "/status differs after the restart"
    diff <(echo "$BEFORE") <(echo "$AFTER") | sed 's/^/    /'
fi
check "keeper, web2's weight, side3's maint are back" persisted_ok

echo "# a stale state file: its pool side is gone from the config"
stop_pid "$BERTH_PID" TERM 20
mv "$WORK/berth-$TLS_PORT.log" "$WORK/berth-run2.log"
write_config "$ROUNDS" noside
start_berth "$WORK" berth.toml "$TLS_PORT"
wait_port "$ADMIN_PORT" 10 "$BERTH_PID"
check "berth says pool side's run-time changes are dropped" log_has 'side' 'run-time|state'
expect_eq "website's run-time changes still apply" "website keeper 50;website web2 70;" \
    "$(servers_summary | grep -E '^website (keeper|web2) ' | awk '{print $1, $2, $6}' | tr '\n' ';')"
expect_eq "no pool side in /status" "" "$(admin GET /status && pyq "'side' if 'side' in d['pools'] else ''" <<<"$BODY")"
write_config "$ROUNDS"

echo "# a corrupt state file is reported, and berth starts with its config"
stop_pid "$BERTH_PID" TERM 20
printf '{"this is": not a state file\n\x00\xff' >"$WORK/state/berth.state"
mv "$WORK/berth-$TLS_PORT.log" "$WORK/berth-run3.log"
start_berth "$WORK" berth.toml "$TLS_PORT"
wait_port "$ADMIN_PORT" 10 "$BERTH_PID"
check "berth reports the state file" grep -q 'berth.state' "$WORK/berth-$TLS_PORT.log"
expect_match "it serves the configured servers" '^(web1|web2)$' "$(served_by /after-corrupt)"
expect_eq "without the lost run-time server" "" "$(server_field website keeper name)"

# ── g. metrics ───────────────────────────────────────────────────────────
echo "# /metrics"
metrics
echo "  Content-Type: $MTYPE"
if out=$("$PY" "$INTEG/metrics.py" check "$WORK/metrics.txt" "$MTYPE" 2>&1); then
    pass "/metrics parses; every metric of SPEC §8 is there with its labels"
else
    fail "/metrics:"
    sed 's/^/    /' <<<"$out"
fi

req0=$(metric berth_requests_total pool=website code=200)
ok0=$(metric berth_tls_handshakes_total result=ok)
dur0=$(metric berth_request_duration_seconds_count)
for i in 1 2 3 4 5; do https_curl -o /dev/null "https://a.test:$TLS_PORT/m$i"; done
want=$((${req0/absent/0} + 5))
check "berth_requests_total{pool=website,code=200} +5 after 5 requests" \
    wait_until 5 "requests_total to reach $want" metric_is "$want" berth_requests_total pool=website code=200
check "berth_tls_handshakes_total{result=ok} +5 with them" metric_is "$((${ok0/absent/0} + 5))" berth_tls_handshakes_total result=ok
check "berth_request_duration_seconds_count grows" metric_above "${dur0/absent/0}" berth_request_duration_seconds_count

failed0=$(metric berth_tls_handshakes_total result=failed)
# Not TLS at all, then a TLS 1.1-only client: two failed handshakes.
python3 -c 'import socket,sys; s=socket.create_connection(("127.0.0.1", int(sys.argv[1]))); s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"); s.settimeout(5); s.recv(100)' "$TLS_PORT" 2>/dev/null || :
openssl s_client -connect "127.0.0.1:$TLS_PORT" -servername a.test -tls1_1 -cipher 'DEFAULT@SECLEVEL=0' </dev/null >/dev/null 2>&1 || :
check "berth_tls_handshakes_total{result=failed} +2 after two bad handshakes" \
    wait_until 5 "failed handshakes to reach $((${failed0/absent/0} + 2))" metric_is "$((${failed0/absent/0} + 2))" berth_tls_handshakes_total result=failed

mal0=$(metric berth_proxy_header_rejected_total listener="127.0.0.1:$PROXY_PORT" reason=malformed)
unt0=$(metric berth_proxy_header_rejected_total listener="127.0.0.1:$UNTRUSTED_PORT" reason=untrusted_peer)
# A v2 signature with version 3: malformed. Then a peer outside proxy_from.
python3 -c 'import socket,sys; s=socket.create_connection(("127.0.0.1", int(sys.argv[1]))); s.sendall(b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x31, 0x11, 0, 12]) + bytes(12)); s.settimeout(5); s.recv(100)' "$PROXY_PORT" 2>/dev/null || :
python3 -c 'import socket,sys; s=socket.create_connection(("127.0.0.1", int(sys.argv[1]))); s.settimeout(5); s.recv(100)' "$UNTRUSTED_PORT" 2>/dev/null || :
check "berth_proxy_header_rejected_total{reason=malformed} +1 after a bad PROXY header" \
    wait_until 5 "the malformed count to move" metric_is "$((${mal0/absent/0} + 1))" berth_proxy_header_rejected_total listener="127.0.0.1:$PROXY_PORT" reason=malformed
check "berth_proxy_header_rejected_total{reason=untrusted_peer} +1 after a peer outside proxy_from" \
    wait_until 5 "the untrusted_peer count to move" metric_is "$((${unt0/absent/0} + 1))" berth_proxy_header_rejected_total listener="127.0.0.1:$UNTRUSTED_PORT" reason=untrusted_peer
# A good PROXY v2 header then TLS is served (the listener is live, not just refusing).
check "a valid PROXY v2 connection is served" python3 - "$PROXY_PORT" "$WORK/ca.crt" <<'EOF'
import socket, ssl, struct, sys
port, ca = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port), timeout=10)
addrs = socket.inet_aton("192.0.2.7") + socket.inet_aton("127.0.0.1") + struct.pack("!HH", 40000, port)
s.sendall(b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(addrs)) + addrs)
ctx = ssl.create_default_context(cafile=ca)
t = ctx.wrap_socket(s, server_hostname="a.test")
t.sendall(b"GET /via-proxy HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
data = b""
while chunk := t.recv(65536):
    data += chunk
sys.exit(0 if data.startswith(b"HTTP/1.1 200") and b'"x_forwarded_for": "192.0.2.7"' in data else 1)
EOF

check "berth_connections_active has the TLS listener" \
    test "$(metric berth_connections_active listener="127.0.0.1:$TLS_PORT")" != absent
expect_eq "berth_log_lines_dropped_total is 0" 0 "$(metric berth_log_lines_dropped_total)"

admin GET /status
for file in a.test.pem b.test.crt; do
    end=$(openssl x509 -noout -enddate -in "$WORK/certs/$file" | sed 's/^notAfter=//')
    expect_eq "berth_cert_expiry_timestamp_seconds{cert=$file} is its notAfter ($end)" \
        "$(date -u -d "$end" +%s)" "$(metric berth_cert_expiry_timestamp_seconds cert="$file")"
    expect_eq "/status certificates: $file, not_after" "$(date -u -d "$end" +%Y-%m-%dT%H:%M:%SZ)" \
        "$(pyq "next((c['not_after'] for c in d['certificates'] if c['file'] == '$file'), 'absent')" <<<"$BODY")"
done

# Affinity in pool side (client_ip): curl's first request ties 127.0.0.1.
new0=$(metric berth_affinity_decisions_total pool=side result=new)
tied=$(served_by "/r$ROUNDS/a")
hit0=$(metric berth_affinity_decisions_total pool=side result=hit)
for i in 1 2 3; do
    got=$(served_by "/r$ROUNDS/b$i")
    [[ "$got" == "$tied" ]] || fail "client_ip tie to $tied not honoured: $got"
done
check "berth_affinity_decisions_total{pool=side,result=hit} +3 after 3 tied requests" \
    metric_is "$((${hit0/absent/0} + 3))" berth_affinity_decisions_total pool=side result=hit
check "berth_affinity_decisions_total{result=new} counted the tie" metric_above "${new0/absent/0}" berth_affinity_decisions_total pool=side result=new
check "berth_affinity_entries{pool=side} holds the tie" metric_above 0 berth_affinity_entries pool=side
purged0=$(metric berth_affinity_purged_total pool=side)
moved0=$(metric berth_affinity_decisions_total pool=side result=moved)
# The tied app server dies: health checks mark it down.
if [[ "$tied" == side1 ]]; then kill_pid=$SIDE1_PID; else kill_pid=$SIDE2_PID; fi
stop_pid "$kill_pid" KILL 5 2>/dev/null # (no "Killed" notice)
check "berth_server_up{pool=side,server=$tied} turns 0 when its app server dies" \
    wait_until 5 "server_up to drop" metric_is 0 berth_server_up pool=side server="$tied"
check "berth_server_up for the other one stays 1" metric_is 1 berth_server_up pool=side server="$([[ $tied == side1 ]] && echo side2 || echo side1)"
check "berth_affinity_purged_total{pool=side} counts the dropped tie" metric_above "${purged0/absent/0}" berth_affinity_purged_total pool=side
other=$(served_by "/r$ROUNDS/after")
check "the tied request moves to the other server ($other)" test -n "$other" -a "$other" != "$tied"
check "berth_affinity_decisions_total{result=moved} +1" metric_is "$((${moved0/absent/0} + 1))" berth_affinity_decisions_total pool=side result=moved

# ── f. SIGTERM during a slow request ─────────────────────────────────────
echo "# SIGTERM during a 3-second request"
t=$SECONDS
https_curl -o "$WORK/slow.json" -w '%{http_code}' "https://a.test:$TLS_PORT/delay/3000" >"$WORK/slow.code" 2>&1 &
SLOW=$!
wait_until 5 "the slow request to be in flight" in_flight_somewhere
kill -TERM "$BERTH_PID"
code=$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/healthz" || :)
expect_eq "/healthz turns 503 at once" 503 "$code"
code=$(https_curl -o /dev/null -w '%{http_code}' "https://a.test:$TLS_PORT/berth-health" || :)
expect_eq "health_path turns 503 during drain_delay" 503 "$code"
wait "$SLOW" || :
expect_eq "the slow request ends 200" 200 "$(cat "$WORK/slow.code")"
stop_pid "$BERTH_PID" 0 15
expect_eq "berth exits 0 once it is done" 0 "$STOP_STATUS"
check "the drain took as long as the request (~3 s)" test $((SECONDS - t)) -ge 3
expect_match "the last access log line is that request, on disk" \
    '"GET /delay/3000 HTTP/(1.1|2.0)" 200 ' "$(tail -1 "$WORK/logs/access.log")"

echo "# a second SIGTERM exits at once with 1"
mv "$WORK/berth-$TLS_PORT.log" "$WORK/berth-run4.log"
start_berth "$WORK" berth.toml "$TLS_PORT"
wait_port "$ADMIN_PORT" 10 "$BERTH_PID"
https_curl -o /dev/null "https://a.test:$TLS_PORT/delay/5000" >/dev/null 2>&1 &
SLOW=$!
wait_until 5 "the slow request to be in flight" in_flight_somewhere
kill -TERM "$BERTH_PID"
wait_until 5 "/healthz to say draining" healthz_is 503 || :
t=$SECONDS
stop_pid "$BERTH_PID" TERM 3
expect_eq "the second SIGTERM: exit 1" 1 "$STOP_STATUS"
check "at once, not after the request" test $((SECONDS - t)) -lt 3
wait "$SLOW" || :

finish
