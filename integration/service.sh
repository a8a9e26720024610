#!/usr/bin/env bash
# The service files in config/: berth.service passes `systemd-analyze
# verify` and keeps its stop timeout above drain_delay + drain_timeout of
# config/berth.toml; berth.logrotate, run by the real logrotate (forced, with
# its postrotate pointed at our berth instead of systemctl), rotates a live
# access log: berth reopens on SIGUSR1, no line is lost, yesterday's file
# stays uncompressed (delaycompress) and the one before is gzipped.
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
cat >"$WORK/berth.toml" <<EOF
[global]
certs = "certs"
access_log = "$WORK/log/access.log"
[[listener]]
bind = "127.0.0.1:$TLS_PORT"
tls = true
[[route]]
pool = "web"
[pools.web]
[[pools.web.servers]]
name = "web1"
addr = "127.0.0.1:$APP_PORT"
EOF
start_berth "$WORK" berth.toml "$TLS_PORT"
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
stop_pid "$BERTH_PID" TERM 15
expect_eq "berth exits 0" 0 "$STOP_STATUS"

finish
