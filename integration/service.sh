#!/usr/bin/env bash
# The service files in config/: berth.service passes `systemd-analyze
# verify` and keeps its stop timeout above drain_delay + drain_timeout of
# config/berth.toml; berth.logrotate, run by the real logrotate (forced, with
# its postrotate pointed at our berth instead of systemctl), rotates a live
# access log: berth reopens on SIGUSR1, no line is lost, yesterday's file
# stays uncompressed (delaycompress) and the one before is gzipped. That
# berth runs under strace, with the admin API, reloads and the certificate
# watch exercised too: every system call it makes must be allowed by the
# unit's SystemCallFilter, or systemd would kill it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

UNIT="$ROOT/config/berth.service"
SNIPPET="$ROOT/config/berth.logrotate"
LOGROTATE=${LOGROTATE:-$(command -v logrotate || echo /usr/sbin/logrotate)}

echo "# config/berth.service"
if command -v systemd-analyze >/dev/null; then
    # verify wants the programs named to exist: point them at our binary.
    sed "s|/usr/local/bin/berth|$BERTH|g" "$UNIT" >"$WORK/berth.service"
    if out=$(systemd-analyze verify "$WORK/berth.service" 2>&1) && [[ -z "$out" ]]; then
        pass "systemd-analyze verify: no complaint"
    else
        fail "systemd-analyze verify:"
        sed 's/^/    /' <<<"$out"
    fi
else
    fail "no systemd-analyze: apt-get install systemd (test.sh does)"
fi
unit_has() { grep -qxF -- "$1" "$UNIT"; }
check "ExecStart runs berth with /etc/berth/berth.toml" \
    unit_has 'ExecStart=/usr/local/bin/berth run -c /etc/berth/berth.toml'
check 'ExecReload sends SIGHUP' unit_has 'ExecReload=/bin/kill -HUP $MAINPID'
check "KillSignal=SIGTERM" unit_has 'KillSignal=SIGTERM'
check "AmbientCapabilities=CAP_NET_BIND_SERVICE" unit_has 'AmbientCapabilities=CAP_NET_BIND_SERVICE'
check "User=berth" unit_has 'User=berth'
check "NoNewPrivileges, ProtectSystem=strict, PrivateTmp" \
    bash -c 'grep -qx NoNewPrivileges=yes "$1" && grep -qx ProtectSystem=strict "$1" && grep -qx PrivateTmp=yes "$1"' _ "$UNIT"
# TimeoutStopSec against the shipped config's drain settings.
read -r stop drain < <(python3 - "$UNIT" "$ROOT/config/berth.toml" <<'EOF'
import re, sys, tomllib
unit, config = open(sys.argv[1]).read(), tomllib.load(open(sys.argv[2], "rb"))
def seconds(text):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", text)
    return int(m[1]) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m[2]]
g = config.get("global", {})
stop = seconds(re.search(r"^TimeoutStopSec=(\S+)$", unit, re.M)[1])
print(stop, seconds(g.get("drain_delay", "0s")) + seconds(g.get("drain_timeout", "30s")))
EOF
)
check "TimeoutStopSec (${stop}s) is above drain_delay + drain_timeout (${drain}s)" \
    python3 -c 'import sys; sys.exit(not float(sys.argv[1]) > float(sys.argv[2]))' "$stop" "$drain"

echo "# config/berth.logrotate with a running berth"
if [[ ! -x "$LOGROTATE" ]]; then
    fail "no logrotate: apt-get install logrotate (test.sh does)"
    finish
    exit 1
fi
make_certs "$WORK"
start_app web1
TLS_PORT=$(free_port)
ADMIN_PORT=$(free_port)
# Everything a service does: admin API, state file, health checks, a host
# name to resolve, reloads, the certificate watch.
cat >"$WORK/berth.toml" <<EOF
[global]
certs = "certs"
access_log = "$WORK/log/access.log"
admin = "127.0.0.1:$ADMIN_PORT"
state_file = "state/berth.state"
[[listener]]
bind = "127.0.0.1:$TLS_PORT"
tls = true
[[route]]
pool = "web"
[pools.web]
health = { path = "/health", interval = "200ms" }
[[pools.web.servers]]
name = "web1"
addr = "localhost:$APP_PORT"
EOF
# berth under strace, to hold its system calls against the unit's
# SystemCallFilter; STRACE_PID is strace, BERTH_PID berth itself.
STRACE=${STRACE:-$(command -v strace || echo /usr/bin/strace)}
if [[ ! -x "$STRACE" ]]; then
    fail "no strace: apt-get install strace (test.sh does)"
    finish
    exit 1
fi
start_bg berth bash -c 'cd "$1" && exec "$2" -f -qq -o "$1/syscalls.trace" "$3" run -c berth.toml' \
    _ "$WORK" "$STRACE" "$BERTH"
STRACE_PID=$LAST_PID
wait_port "$TLS_PORT" 20 "$STRACE_PID"
wait_port "$ADMIN_PORT" 10 "$STRACE_PID"
BERTH_PID=$(pgrep -P "$STRACE_PID")
# The snippet as shipped but for where the log is, whose it is (there is no
# user berth here) and how the signal gets to berth (no systemd here).
sed -e "s|/var/log/berth/|$WORK/log/|" -e "s/create 0640 berth berth/create 0640 $(id -un) $(id -gn)/" \
    -e "s|systemctl kill -s USR1 berth.service|kill -USR1 $BERTH_PID|" "$SNIPPET" >"$WORK/logrotate.conf"
check "the postrotate line was rewritten for the test" grep -q "kill -USR1 $BERTH_PID" "$WORK/logrotate.conf"
out=$("$LOGROTATE" -d -s "$WORK/logrotate.state" "$WORK/logrotate.conf" 2>&1)
if grep -q '^error' <<<"$out"; then fail "logrotate -d:"; grep '^error' <<<"$out" | sed 's/^/    /'; else
    pass "logrotate -d: no error"
fi

lines() { local n; n=$(grep -c -- "$2" "$1" 2>/dev/null) || :; echo "${n:-0}"; }
# requests TAG N: N requests whose path starts with /TAG.
requests() { for ((i = 0; i < $2; i++)); do https_curl -o /dev/null "https://a.test:$TLS_PORT/$1/$i"; done; }
rotate() { # logrotate -f: renames, then SIGUSR1 to berth
    "$LOGROTATE" -f -s "$WORK/logrotate.state" "$WORK/logrotate.conf"
}
requests one 5
wait_until 5 "5 lines in access.log" bash -c "(( \$(grep -c ' /one/' '$WORK/log/access.log' 2>/dev/null) == 5 ))"
rotate
requests two 5
check "after a rotation berth writes to a new access.log" \
    wait_until 5 "the new lines in access.log" bash -c "(( \$(grep -c ' /two/' '$WORK/log/access.log' 2>/dev/null) == 5 ))"
expect_eq "the rotated access.log.1 holds the 5 earlier lines (delaycompress)" 5 "$(lines "$WORK/log/access.log.1" ' /one/')"
expect_eq "access.log holds none of them" 0 "$(lines "$WORK/log/access.log" ' /one/')"
rotate
requests three 5
check "after a second rotation, access.log again" \
    wait_until 5 "the third lines in access.log" bash -c "(( \$(grep -c ' /three/' '$WORK/log/access.log' 2>/dev/null) == 5 ))"
expect_eq "access.log.1 holds the second 5" 5 "$(lines "$WORK/log/access.log.1" ' /two/')"
expect_eq "access.log.2.gz holds the first 5, compressed" 5 "$(zcat "$WORK/log/access.log.2.gz" 2>/dev/null | grep -c ' /one/' || :)"

echo "# the system calls berth makes fit the unit's SystemCallFilter"
admin() { curl -sS -o /dev/null -w '%{http_code}' -X "$1" "http://127.0.0.1:$ADMIN_PORT$2" ${3:+--data "$3"}; }
expect_eq "register a server" 201 "$(admin POST /pools/web/servers "{\"name\":\"r1\",\"addr\":\"127.0.0.1:$APP_PORT\"}")"
expect_eq "drain it" 200 "$(admin PUT /pools/web/servers/r1 '{"state":"drain"}')"
expect_eq "/status" 200 "$(admin GET /status)"
expect_eq "/metrics" 200 "$(admin GET /metrics)"
expect_eq "POST /reload" 200 "$(admin POST /reload)"
kill -HUP "$BERTH_PID"
make_leaf "$WORK" a.test ec
serial=$(openssl x509 -noout -serial -in "$WORK/pki/a.test.crt")
cat "$WORK/pki/a.test.crt" "$WORK/ca.crt" "$WORK/pki/a.test.key" >"$WORK/certs/a.test.pem"
served_serial() {
    [[ "$(openssl s_client -connect "127.0.0.1:$TLS_PORT" -servername a.test </dev/null 2>/dev/null |
        openssl x509 -noout -serial 2>/dev/null)" == "$serial" ]]
}
check "the replaced certificate is served" wait_until 10 "the new certificate" served_serial
requests four 3
kill -TERM "$BERTH_PID"
wait "$STRACE_PID" && STOP_STATUS=0 || STOP_STATUS=$? # strace exits as berth did
expect_eq "berth exits 0 (strace says)" 0 "$STOP_STATUS"

# group_calls FILTER...: the system calls in the groups and names given,
# expanded by systemd-analyze.
group_calls() {
    local item
    for item in "$@"; do
        if [[ "$item" == @* ]]; then
            # shellcheck disable=SC2046 # one word per line
            group_calls $(systemd-analyze syscall-filter "$item" | sed -E 's/^\s+//' | grep -vE '^(#|$)' | tail -n +2)
        else
            echo "$item"
        fi
    done
}
sed -nE 's/^[0-9]+ +([a-z_0-9]+)\(.*/\1/p' "$WORK/syscalls.trace" | sort -u >"$WORK/used"
# shellcheck disable=SC2046 # the unit's lists, one word each
group_calls $(sed -nE 's/^SystemCallFilter=([^~].*)$/\1/p' "$UNIT") | sort -u >"$WORK/allowed"
# shellcheck disable=SC2046
group_calls $(sed -nE 's/^SystemCallFilter=~(.*)$/\1/p' "$UNIT") | sort -u >"$WORK/denied"
check "strace saw berth's system calls ($(wc -l <"$WORK/used"))" test "$(wc -l <"$WORK/used")" -gt 20
expect_eq "none outside the allowed groups" "" "$(comm -23 "$WORK/used" "$WORK/allowed" | tr '\n' ' ')"
expect_eq "none in the denied ones" "" "$(comm -12 "$WORK/used" "$WORK/denied" | tr '\n' ' ')"

finish
