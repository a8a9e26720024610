#!/usr/bin/env bash
# Slow and greedy clients against the release berth (SPEC §2
# [global.limits]), with slowhttptest doing the attacking over TLS:
#   slow head (slowloris, -H), slow body (R-U-Dead-Yet, -B) under and over
#   max_body_bytes, slow read (-X), and many idle connections (plain TCP that
#   never sends a ClientHello, and TLS connections that never send a request).
# During each attack curl probes berth on a new TLS connection every 0.2 s,
# alternating HTTP/1.1 and HTTP/2; every probe must get its 200 within 1 s
# (the worst is printed). After each attack berth's open file descriptors
# must come back to where they were, and the limits must show: 408s for the
# slow heads, 413s for the oversize bodies, idle connections closed after
# header_read_timeout (no handshake) or idle_timeout (no request).
# Short limits keep it quick: header_read_timeout 2s, idle_timeout 3s.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

if ! command -v slowhttptest >/dev/null; then
    echo "no slowhttptest: apt-get install slowhttptest (test.sh does)" >&2
    exit 1
fi
HEAD_TIMEOUT=2
IDLE_TIMEOUT=3
ATTACK_SECONDS=${ATTACK_SECONDS:-10}
CONNS=${ATTACK_CONNS:-400}

make_certs "$WORK"
start_app web1 && WEB1=$APP_PORT
start_app web2 && WEB2=$APP_PORT
# The probes' own app server: they measure berth, not an app server that
# hundreds of attack requests keep busy.
start_app probe && PROBE=$APP_PORT
TLS_PORT=$(free_port)
cat >"$WORK/berth.toml" <<EOF
[global]
certs = "certs"
access_log = "logs/access.log"

[global.limits]
max_connections = 4000
header_read_timeout = "${HEAD_TIMEOUT}s"
idle_timeout = "${IDLE_TIMEOUT}s"
max_body_bytes = 65536

[[listener]]
bind = "127.0.0.1:$TLS_PORT"
tls = true

[[route]]
path_prefix = "/probe"
pool = "probe"

[[route]]
pool = "web"

[pools.probe]
[[pools.probe.servers]]
name = "probe"
addr = "127.0.0.1:$PROBE"

[pools.web]
response_timeout = "5s"
[[pools.web.servers]]
name = "web1"
addr = "127.0.0.1:$WEB1"
[[pools.web.servers]]
name = "web2"
addr = "127.0.0.1:$WEB2"
EOF
start_berth "$WORK" berth.toml "$TLS_PORT"
LOG="$WORK/logs/access.log"
URL="https://a.test:$TLS_PORT"
# slowhttptest resolves the URL's host itself: the address, and no SNI (so
# the default certificate).
ATTACK_URL="https://127.0.0.1:$TLS_PORT"

fds() { proc_fds "$BERTH_PID"; }
log_count() { # STATUS: access log lines with that status
    awk -v s="$1" '$9 == s' "$LOG" 2>/dev/null | wc -l
}
# Lines reach the log within a second (SPEC §6): wait for them.
wait_log_count() { # STATUS AT_LEAST
    wait_until 5 "$2 access log lines with status $1" bash -c \
        "(( \$(awk -v s='$1' '\$9 == s' '$LOG' | wc -l) >= $2 ))"
}
fds_at_most() { (($(fds) <= $1)); }
no_client_conns() { (($(client_conns "$BERTH_PID" "$TLS_PORT") == 0)); }
rss() { proc_rss "$BERTH_PID"; }

# A warm-up request, so the pools' connections are open before the baseline.
https_curl -o /dev/null "$URL/probe"
https_curl -o /dev/null --http2 "$URL/probe"
BASE_FDS=$(fds)
echo "# berth holds $BASE_FDS fds at rest"

# probe_during NAME PID: probes until PID (the attack) exits; checks every
# probe got 200 within 1 s and that berth held more fds than at rest
# meanwhile (the attack really was on). Prints the figures.
SUMMARY=()
PEAK_RSS=0 # KiB, the most seen by the latest probe_during
probe_during() {
    PEAK_RSS=0
    local name=$1 pid=$2 quick=${3:-} n=0 mem bad=0 worst=0 peak=0 out code secs fd version
    while kill -0 "$pid" 2>/dev/null; do
        version=--http1.1
        ((n % 2 == 0)) || version=--http2
        out=$(https_curl "$version" --max-time 5 -o /dev/null -w '%{http_code} %{time_total}' "$URL/probe" 2>&1 || :)
        read -r code secs <<<"$out"
        n=$((n + 1))
        if [[ "$code" != 200 ]] || ! awk -v s="$secs" 'BEGIN { exit !(s < 1) }'; then
            bad=$((bad + 1))
            echo "  probe $n: $out"
        fi
        worst=$(awk -v a="$worst" -v b="${secs:-99}" 'BEGIN { print (b > a) ? b : a }')
        fd=$(fds)
        ((fd <= peak)) || peak=$fd
        mem=$(rss)
        ((mem <= PEAK_RSS)) || PEAK_RSS=$mem
        sleep 0.2
    done
    wait "$pid" || :
    echo "  $name: $n probes, $bad slow or failed, worst ${worst}s; berth peaked at $peak fds"
    SUMMARY+=("$(printf '%-26s %3d probes, worst %5.3fs, peak %4d fds' "$name" "$n" "$worst" "$peak")")
    expect_eq "$name: every probe answered 200 within 1 s" "0 of $n" "$bad of $n"
    [[ -n "$quick" ]] || check "$name: the attack held connections open (peak $peak fds > $BASE_FDS at rest)" \
        test "$peak" -gt $((BASE_FDS + 20))
}

# attack NAME ARGS...: slowhttptest against berth, probed all along.
attack() {
    local name=$1
    shift
    start_bg "slowhttptest-${name// /-}" slowhttptest -c "$CONNS" -r 200 -l "$ATTACK_SECONDS" -p 2 "$@"
    local pid=$LAST_PID
    # Ready once berth holds a good part of the attack's connections.
    wait_until 10 "the $name attack to open connections" fds_at_most_not $((BASE_FDS + 50))
    probe_during "$name" "$pid"
    # Afterwards berth lets go of every attack connection.
    check "$name: berth holds no client connection after the attack" \
        wait_until $((IDLE_TIMEOUT + HEAD_TIMEOUT + 5)) "berth's client connections to close" no_client_conns
}
fds_at_most_not() { ! fds_at_most "$1"; }

echo "# slow head (slowloris): a header line every second"
before=$(log_count 408)
attack "slow head" -H -i 1 -x 10 -u "$ATTACK_URL/"
wait_log_count 408 $((before + CONNS / 2)) || :
got=$(($(log_count 408) - before))
check "slow head: header_read_timeout answered 408 to the attack ($got of $CONNS)" test "$got" -ge $((CONNS / 2))

echo "# slow body under max_body_bytes: 8 KiB declared, 10 bytes a second"
attack "slow body" -B -i 1 -x 5 -s 8192 -u "$ATTACK_URL/upload"

echo "# slow body over max_body_bytes: 1 MiB declared"
# Refused at once: the attack holds nothing open, so it is only probed.
before=$(log_count 413)
start_bg slowhttptest-oversize slowhttptest -c "$CONNS" -r 200 -l "$ATTACK_SECONDS" -p 2 \
    -B -i 1 -x 5 -s 1048576 -u "$ATTACK_URL/upload"
probe_during "oversize body" "$LAST_PID" quick
wait_log_count 413 $((before + CONNS / 2)) || :
got=$(($(log_count 413) - before))
check "oversize body: max_body_bytes answered 413 ($got of $CONNS)" test "$got" -ge $((CONNS / 2))

echo "# slow read: 1 MiB downloads read through a small window"
RSS_BEFORE=$(rss)
# Opened at 100 a second (not 200): 400 TLS handshakes and 400 downloads
# starting at once are a CPU burst on a 2-core machine, not a slow read.
attack "slow read" -r 100 -X -w 16 -y 64 -n 1 -z 32 -k 2 -u "$ATTACK_URL/download?bytes=1048576"

per_conn=$(((PEAK_RSS - RSS_BEFORE) / CONNS))
echo "  slow read: RSS ${RSS_BEFORE} KiB before, peak ${PEAK_RSS} KiB: $per_conn KiB per slow reader"
# Bounded buffering: a response chunk queued for the client, the next
# one read from the app server, TLS buffers and state: well under the
# 1 MiB response (hyper's default buffers held ~850 KiB).
check "slow read: berth holds at most 384 KiB per slow reader ($per_conn KiB)" test "$per_conn" -le 384

echo "# many idle connections: silent TCP and idle TLS"
start_bg idle python3 "$INTEG/idle_clients.py" "$TLS_PORT" "$WORK/ca.crt" a.test \
    $((CONNS * 2)) $((CONNS / 2)) 30
IDLE_PID=$LAST_PID
# Probed from the first connections on: the client takes seconds to open
# them all, and berth closes the silent ones meanwhile.
wait_until 10 "the idle connections to open" fds_at_most_not $((BASE_FDS + 50))
probe_during "idle connections" "$IDLE_PID"
cat "$WORK/idle.log"
result=$(tail -1 "$WORK/idle.log")
check "idle: every connection opened" grep -qx open "$WORK/idle.log"
expect_match "idle: every silent connection closed" "closed_silent=$((CONNS * 2)) " "$result"
expect_match "idle: every idle TLS connection closed" "closed_tls=$((CONNS / 2)) " "$result"
max_silent=$(sed -E 's/.*max_silent=([0-9.]+).*/\1/' <<<"$result")
max_tls=$(sed -E 's/.*max_tls=([0-9.]+).*/\1/' <<<"$result")
min_silent=$(sed -E 's/.*min_silent=([0-9.]+).*/\1/' <<<"$result")
min_tls=$(sed -E 's/.*min_tls=([0-9.]+).*/\1/' <<<"$result")
# min_* is timed from the connect (berth's clock starts later: not early),
# max_* from the open (berth's clock started earlier: not late); the bound
# leaves room for a busy machine.
check "idle: no ClientHello -> closed after header_read_timeout (${min_silent}..${max_silent}s, ${HEAD_TIMEOUT}s)" \
    awk -v a="$min_silent" -v b="$max_silent" -v t="$HEAD_TIMEOUT" 'BEGIN { exit !(a >= t - 0.05 && b <= t + 1.5) }'
check "idle: no request -> closed after idle_timeout (${min_tls}..${max_tls}s, ${IDLE_TIMEOUT}s)" \
    awk -v a="$min_tls" -v b="$max_tls" -v t="$IDLE_TIMEOUT" 'BEGIN { exit !(a >= t - 0.05 && b <= t + 1.5) }'
check "idle: berth holds no client connection afterwards" \
    wait_until 10 "berth's client connections to close" no_client_conns

check "berth still running" kill -0 "$BERTH_PID"
echo "# summary"
printf '  %s\n' "${SUMMARY[@]}"
echo "  berth: $(awk '/VmHWM/ {print "peak RSS", $2, $3}' "/proc/$BERTH_PID/status"), CPU $(awk '{printf "%.1fs", ($14 + $15) / 100}' "/proc/$BERTH_PID/stat")"
finish
