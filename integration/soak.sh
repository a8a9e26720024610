#!/usr/bin/env bash
# Soak: SOAK_SECONDS (default 600) of mixed traffic, attacks and app-server
# faults against the release berth, sampling its memory and open fds.
#   integration/soak.sh                    the 10-minute run
#   SOAK_SECONDS=60 integration/soak.sh    a short one
# Traffic (all the time):
#   - soak_client.py: HTTP/1.1 over TLS, 6 workers (half keep-alive, half a
#     new connection per request), each a GET, a 256 KiB upload (digest
#     checked) and a 1 MiB download (digest checked), with a cookie tie;
#   - HTTP/2: curl, 5 requests per connection, tied to app01 by cookie;
#   - the PROXY v1 listener: curl --haproxy-protocol, tied to app02.
# Attacks and faults (after the warm-up), in turn:
#   slowloris and slow read (slowhttptest, 100 and 50 connections), heads
#   berth must refuse with 400 (bad_clients.py malformed), connections
#   without the PROXY header (bad_clients.py proxyless), requests to an app
#   server that never answers (504 after response_timeout); and every
#   FAULT_INTERVAL seconds app03 is killed (SIGKILL) and restarted 8 s later.
# Asserted: every request tied to app01 or app02 (never faulted) succeeds on
# its server; the attacks get the answers the spec gives; berth's open fds
# and RSS, measured at rest (no client connected) after the warm-up and at
# the end, stay within a bound. Samples every SAMPLE_SECONDS go to
# $WORK/samples.tsv (KEEP=1 keeps $WORK; SOAK_SAMPLES=FILE copies it there).
set -euo pipefail
SOAK_SECONDS=${SOAK_SECONDS:-600}
export INTEG_TIMEOUT=${INTEG_TIMEOUT:-$((SOAK_SECONDS + 240))}
source "$(dirname "$0")/lib.sh"

for tool in slowhttptest curl; do
    command -v "$tool" >/dev/null || {
        echo "no $tool: apt-get install $tool (test.sh does)" >&2
        exit 1
    }
done
WARMUP=$((SOAK_SECONDS / 10 > 60 ? 60 : SOAK_SECONDS / 10))
FAULT_INTERVAL=${FAULT_INTERVAL:-40}
SAMPLE_SECONDS=${SAMPLE_SECONDS:-5}
WORKERS=6
CONTROL="$WORK/control"
mkdir -p "$CONTROL"

make_certs "$WORK"
start_app app01 && APP01=$APP_PORT
start_app app02 && APP02=$APP_PORT
start_app app03 && APP03=$APP_PORT APP03_PID=$APP_PID
STALL=$(free_port)
# An app server that accepts, reads and never answers.
start_bg stall python3 -c '
import socket, sys, threading
s = socket.create_server(("127.0.0.1", int(sys.argv[1])))
def hold(c):
    while c.recv(65536):
        pass
while True:
    threading.Thread(target=hold, args=(s.accept()[0],), daemon=True).start()
' "$STALL"
wait_port "$STALL" 10 "$LAST_PID"
TLS_PORT=$(free_port)
PROXY_PORT=$(free_port)
cat >"$WORK/berth.toml" <<EOF
[global]
certs = "certs"
access_log = "logs/access.log"
log_format = "combined_plus"

[global.limits]
header_read_timeout = "3s"
idle_timeout = "5s"
max_body_bytes = 4194304

[[listener]]
bind = "127.0.0.1:$TLS_PORT"
tls = true

[[listener]]
bind = "127.0.0.1:$PROXY_PORT"
tls = false
proxy_protocol = "any"
proxy_from = ["127.0.0.0/8"]

[[route]]
path_prefix = "/stall/"
pool = "stall"

[[route]]
pool = "web"

[pools.stall]
response_timeout = "1s"
[[pools.stall.servers]]
name = "stall"
addr = "127.0.0.1:$STALL"

[pools.web]
response_timeout = "10s"
affinity = { mode = "cookie", cookie = "BERTH" }
health = { path = "/health", interval = "1s", timeout = "500ms", rise = 2, fall = 2 }
[[pools.web.servers]]
name = "app01"
addr = "127.0.0.1:$APP01"
[[pools.web.servers]]
name = "app02"
addr = "127.0.0.1:$APP02"
[[pools.web.servers]]
name = "app03"
addr = "127.0.0.1:$APP03"
EOF
start_berth "$WORK" berth.toml "$TLS_PORT"
wait_port "$PROXY_PORT" 10 "$BERTH_PID"
LOG="$WORK/logs/access.log"

rss_kib() { proc_rss "$BERTH_PID"; }
fds() { proc_fds "$BERTH_PID"; }
threads() { awk '/^Threads/ {print $2}' "/proc/$BERTH_PID/status"; }
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / t}' "/proc/$BERTH_PID/stat"; }
no_client_conns() { (($(client_conns "$BERTH_PID" "$TLS_PORT" "$PROXY_PORT") == 0)); }

# ── the sampler ──────────────────────────────────────────────────────────
T0=$SECONDS
echo -e "t_s\trss_kib\tfds\tthreads\tcpu_s" >"$WORK/samples.tsv"
(
    while [[ ! -e "$CONTROL/stop-sampler" ]] && kill -0 "$BERTH_PID" 2>/dev/null; do
        echo -e "$((SECONDS - T0))\t$(rss_kib)\t$(fds)\t$(threads)\t$(cpu_s)" >>"$WORK/samples.tsv"
        sleep "$SAMPLE_SECONDS"
    done
) &
STARTED_PIDS+=($!)

# ── traffic ──────────────────────────────────────────────────────────────
start_bg h1 python3 "$INTEG/soak_client.py" "$TLS_PORT" "$WORK/ca.crt" "$WORKERS" "$CONTROL" \
    "$WORK/h1.json" app01,app02
H1_PID=$LAST_PID

# loop NAME CMD...: runs CMD (one batch of requests, printing "status server"
# lines) until stop, standing still while paused.
loop() {
    local name=$1
    shift
    while [[ ! -e "$CONTROL/stop" ]]; do
        if [[ -e "$CONTROL/pause" ]]; then
            touch "$CONTROL/paused-$name"
            sleep 0.1
            continue
        fi
        rm -f "$CONTROL/paused-$name"
        "$@" || :
    done
}
h2_batch() {
    https_curl --http2 --max-time 20 -b BERTH=app01 -w '%{http_code} %header{x-served-by} %{http_version}\n' \
        -o /dev/null -o /dev/null -o /dev/null -o /dev/null -o /dev/null \
        "https://a.test:$TLS_PORT/h2/[1-5]" 2>>"$WORK/h2.err"
}
proxy_batch() {
    curl -sS --max-time 20 --haproxy-protocol -b BERTH=app02 -w '%{http_code} %header{x-served-by}\n' \
        -o /dev/null -o /dev/null -o /dev/null "http://127.0.0.1:$PROXY_PORT/pp/[1-3]" 2>>"$WORK/proxy.err"
}
start_bg h2 loop h2 h2_batch
start_bg proxy loop proxy proxy_batch

# pause_traffic: every client stops and berth has no client connection.
pause_traffic() {
    rm -f "$CONTROL"/paused-*
    touch "$CONTROL/pause"
    wait_until 60 "the clients to pause" bash -c \
        "(( \$(ls '$CONTROL' | grep -c '^paused-') == $WORKERS + 2 ))"
    wait_until 30 "berth's client connections to close" no_client_conns
}
resume_traffic() { rm -f "$CONTROL/pause"; }

# at_rest LABEL: the figures with no client connected.
at_rest() {
    # Upstream pool connections time out on their own; berth's own count
    # settles within a couple of seconds once clients are gone.
    local prev=-1 now
    for _ in $(seq 1 20); do
        now=$(fds)
        [[ "$now" != "$prev" ]] || break
        prev=$now
        sleep 1
    done
    REST_RSS=$(rss_kib)
    REST_FDS=$(fds)
    echo "  $1: RSS ${REST_RSS} KiB, ${REST_FDS} fds, $(threads) threads, CPU $(cpu_s)s"
}

# ── attacks and faults ───────────────────────────────────────────────────
declare -A ATTACKS=()
attack_bad() { # NAME: counts a misbehaving attack
    ATTACKS[$1 bad]=$((${ATTACKS[$1 bad]:-0} + 1))
}
attack_ran() { # NAME COUNT
    ATTACKS[$1]=$((${ATTACKS[$1]:-0} + $2))
}
STALLED=0
FAULTS=0
next_fault=$SECONDS
app03_down_until=0
round=0

# chaos_until T: attacks in turn, and app03's faults, until SECONDS >= T
# and at least 4 rounds (one of each attack) have run.
chaos_until() {
    local until=$1 rounds=0
    while ((SECONDS < until || rounds < 4)); do
        rounds=$((rounds + 1))
        round=$((round + 1))
        if ((app03_down_until == 0 && SECONDS >= next_fault)); then
            kill -KILL "$APP03_PID"
            wait "$APP03_PID" 2>/dev/null || :
            FAULTS=$((FAULTS + 1))
            app03_down_until=$((SECONDS + 8))
            echo "  $((SECONDS - T0))s: app03 killed"
        elif ((app03_down_until != 0 && SECONDS >= app03_down_until)); then
            app03_back
            next_fault=$((SECONDS + FAULT_INTERVAL))
        fi
        case $((round % 4)) in
            # slowhttptest's own verdict is not judged: the clients' requests are.
            0) slowhttptest -H -c 100 -r 50 -i 1 -l 6 -p 2 -u "https://127.0.0.1:$TLS_PORT/" >/dev/null 2>&1 || :
                attack_ran "slowloris connections" 100 ;;
            1) slowhttptest -X -c 50 -r 50 -w 16 -y 64 -n 1 -z 32 -k 2 -l 6 -p 2 \
                -u "https://127.0.0.1:$TLS_PORT/download?bytes=1048576" >/dev/null 2>&1 || :
                attack_ran "slow read connections" 50 ;;
            2) if out=$(python3 "$INTEG/bad_clients.py" malformed "$PROXY_PORT"); then
                attack_ran "malformed heads refused" "${out#ok }"
            else
                echo "$out"
                attack_bad malformed
            fi ;;
            3) if out=$(python3 "$INTEG/bad_clients.py" proxyless "$PROXY_PORT"); then
                attack_ran "connections without PROXY header closed" "${out#ok }"
            else
                echo "$out"
                attack_bad "no PROXY header"
            fi
            code=$(https_curl --max-time 5 -o /dev/null -w '%{http_code}' "https://a.test:$TLS_PORT/stall/x" || :)
            if [[ "$code" == 504 ]]; then STALLED=$((STALLED + 1)); else attack_bad "stalled app (got $code)"; fi
            sleep 1 ;;
        esac
    done
}
app03_back() {
    start_bg app-app03 python3 "$INTEG/app_server.py" app03 "$APP03"
    APP03_PID=$LAST_PID
    wait_port "$APP03" 10 "$APP03_PID"
    app03_down_until=0
    echo "  $((SECONDS - T0))s: app03 back"
}

# The warm-up runs every attack and a fault once, so what berth keeps
# (allocator arenas, pooled connections) has been reached before the
# figures it is judged against are taken.
echo "# warm-up: ${WARMUP}s of traffic, every attack, a fault"
wait_until 30 "the first requests" test -s "$LOG"
chaos_until $((T0 + WARMUP))
((app03_down_until == 0)) || app03_back
pause_traffic
at_rest "at rest after the warm-up"
WARM_RSS=$REST_RSS WARM_FDS=$REST_FDS WARM_T=$((SECONDS - T0))
resume_traffic

END=$((T0 + SOAK_SECONDS))
echo "# $((END - SECONDS))s of traffic, attacks and faults"
chaos_until "$END"
((app03_down_until == 0)) || app03_back

echo "# the end: traffic stops"
pause_traffic
at_rest "at rest at the end"
END_RSS=$REST_RSS END_FDS=$REST_FDS
touch "$CONTROL/stop" "$CONTROL/stop-sampler"
wait_until 60 "the HTTP/1.1 clients' summary" test -s "$WORK/h1.json"

# ── results ──────────────────────────────────────────────────────────────
echo "# requests"
python3 - "$WORK/h1.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
for c in d["counts"]:
    print(f'  h1 {c["kind"]:9} {c["class"]:6} {c["outcome"]:40} {c["n"]:6}')
for f in d["must_failures"]:
    print("  MUST FAILED:", f)
EOF
h1_must=$(python3 -c 'import json,sys; print(sum(c["n"] for c in json.load(open(sys.argv[1]))["counts"] if c["class"]=="must"))' "$WORK/h1.json")
h1_must_bad=$(python3 -c 'import json,sys; print(sum(c["n"] for c in json.load(open(sys.argv[1]))["counts"] if c["class"]=="must" and c["outcome"]!="ok"))' "$WORK/h1.json")
h1_all=$(python3 -c 'import json,sys; print(sum(c["n"] for c in json.load(open(sys.argv[1]))["counts"]))' "$WORK/h1.json")
h1_other_bad=$(python3 -c 'import json,sys; print(sum(c["n"] for c in json.load(open(sys.argv[1]))["counts"] if c["class"]!="must" and c["outcome"]!="ok"))' "$WORK/h1.json")
h2_all=$(wc -l <"$WORK/h2.log")
h2_bad=$(grep -vc '^200 app01 2$' "$WORK/h2.log" || :)
pp_all=$(wc -l <"$WORK/proxy.log")
pp_bad=$(grep -vc '^200 app02$' "$WORK/proxy.log" || :)
echo "  h1: $h1_all requests, $h1_must tied to app01/app02 ($h1_must_bad failed), $h1_other_bad others not ok"
echo "  h2: $h2_all requests tied to app01, $h2_bad not '200 app01'"
echo "  PROXY v1: $pp_all requests tied to app02, $pp_bad not '200 app02'"
echo "# attacks and faults"
for key in "${!ATTACKS[@]}"; do echo "  $key: ${ATTACKS[$key]}"; done | sort
echo "  stalled app: $STALLED requests answered 504"
echo "  app03 killed and restarted: $FAULTS times"
slowloris_408=$(awk '$9 == 408' "$LOG" | wc -l)
echo "  access log: $(wc -l <"$LOG") lines; by status: $(awk '{print $9}' "$LOG" | sort | uniq -c | awk '{printf "%s=%s ", $2, $1}')"
echo "# berth"
awk -F'\t' 'NR > 1 { if (!n || $2 > max) max = $2; if (!n || $2 < min) min = $2; if ($3 > fmax) fmax = $3; n++ }
    END { printf "  %d samples: RSS %d..%d KiB, fds up to %d\n", n, min, max, fmax }' "$WORK/samples.tsv"
echo "  at rest after warm-up: RSS $WARM_RSS KiB, $WARM_FDS fds; at the end: RSS $END_RSS KiB, $END_FDS fds; CPU $(cpu_s)s"
# Under load, after the warm-up: the peaks of the first and the second half.
awk -F'\t' -v from="$WARM_T" 'NR > 1 && $1 >= from { t[n] = $1; r[n] = $2; f[n] = $3; n++ }
    END { if (n < 2) exit; h = int(n / 2)
          for (i = 0; i < n; i++) { if (i < h) { if (r[i] > r1) r1 = r[i]; if (f[i] > f1) f1 = f[i] }
                                    else { if (r[i] > r2) r2 = r[i]; if (f[i] > f2) f2 = f[i] } }
          printf "  under load after warm-up: peak RSS %d KiB then %d KiB, peak fds %d then %d (first half, second half)\n", r1, r2, f1, f2 }' "$WORK/samples.tsv"
cp "$WORK/samples.tsv" "${SOAK_SAMPLES:-/dev/null}"

expect_eq "h1: every request tied to a healthy server succeeded on it ($h1_must)" 0 "$h1_must_bad"
check "h1: enough tied requests to mean something ($h1_must)" test "$h1_must" -ge 20
expect_eq "h2: every request succeeded on app01 ($h2_all)" 0 "$h2_bad"
expect_eq "PROXY v1: every request succeeded on app02 ($pp_all)" 0 "$pp_bad"
check "h2 and PROXY traffic ran" test "$h2_all" -gt 0 -a "$pp_all" -gt 0
bad_attacks=$(for key in "${!ATTACKS[@]}"; do [[ "$key" != *" bad" ]] || echo "$key"; done)
expect_eq "every attack got the spec's answer" "" "$bad_attacks"
check "app03 faulted at least once ($FAULTS)" test "$FAULTS" -ge 1
check "slowloris connections timed out with 408 ($slowloris_408 of ${ATTACKS[slowloris connections]:-0})" \
    test "$slowloris_408" -ge $((${ATTACKS[slowloris connections]:-0} / 2))
# Flat: at rest, berth holds what it held after the warm-up (give or take
# pooled upstream connections) and its RSS grew by at most a quarter or 8 MiB.
check "fds flat at rest: $WARM_FDS after warm-up, $END_FDS at the end (<= +8)" \
    test "$END_FDS" -le $((WARM_FDS + 8))
rss_bound=$((WARM_RSS / 4 > 8192 ? WARM_RSS * 5 / 4 : WARM_RSS + 8192))
check "RSS flat at rest: $WARM_RSS KiB after warm-up, $END_RSS KiB at the end (<= $rss_bound)" \
    test "$END_RSS" -le "$rss_bound"
check "berth still running" kill -0 "$BERTH_PID"
finish
