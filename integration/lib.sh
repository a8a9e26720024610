# Shared helpers for berth's integration scripts. Source it, then call
# `finish` at the end. It sets:
#   ROOT   the repository root
#   BERTH  the release binary ($CARGO_TARGET_DIR or target/, release/berth)
#   WORK   a fresh mktemp -d directory, removed at exit (KEEP=1 keeps it)
# and an EXIT trap that stops every process started with `start_bg`.
# shellcheck shell=bash

# Every script runs under `timeout` (its whole process group is signalled on
# expiry, so berth and the app servers go too): re-exec once under it.
if [[ -z "${BERTH_INTEG_TIMED:-}" ]]; then
    export BERTH_INTEG_TIMED=1
    exec timeout -k 10 "${INTEG_TIMEOUT:-300}" bash "$0" "$@"
fi
unset BERTH_INTEG_TIMED

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
INTEG="$ROOT/integration"
TARGET=${CARGO_TARGET_DIR:-target}
[[ "$TARGET" == /* ]] || TARGET="$ROOT/$TARGET"
BERTH=${BERTH:-"$TARGET/release/berth"}
PASSED=0
FAILED=0
STARTED_PIDS=()

if [[ ! -x "$BERTH" ]]; then
    echo "no berth binary at $BERTH: run 'cargo build --release' first" >&2
    exit 1
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/berth-integ.XXXXXX")

cleanup() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || :
    done
    for pid in "${STARTED_PIDS[@]}"; do
        stop_pid "$pid" 0 5
    done
    if [[ "${KEEP:-0}" == 1 ]]; then
        echo "kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'echo "FAIL - aborted at $(basename "$0"):$LINENO: $BASH_COMMAND" >&2' ERR

# ── results ──────────────────────────────────────────────────────────────

pass() { PASSED=$((PASSED + 1)); echo "ok   - $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL - $*"; }

# check DESC CMD...: passes when CMD exits 0.
check() {
    local desc=$1
    shift
    if "$@"; then pass "$desc"; else fail "$desc"; fi
}

# expect_eq DESC EXPECTED ACTUAL
expect_eq() {
    if [[ "$2" == "$3" ]]; then pass "$1"; else fail "$1: expected '$2', got '$3'"; fi
}

# expect_match DESC REGEX ACTUAL (bash extended regex)
expect_match() {
    if [[ "$3" =~ $2 ]]; then pass "$1"; else fail "$1: '$3' does not match /$2/"; fi
}

# finish: prints the closing line and exits 1 if anything failed.
finish() {
    echo "$PASSED passed, $FAILED failed"
    [[ "$FAILED" == 0 ]]
}

# ── processes and ports ──────────────────────────────────────────────────

# free_port: a port the kernel says is free on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_port PORT [SECONDS] [PID]: polls until something accepts on
# 127.0.0.1:PORT; gives up at the deadline, or at once if PID has exited.
wait_port() {
    local port=$1 deadline=$((SECONDS + ${2:-10})) pid=${3:-}
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            echo "process $pid exited before listening on 127.0.0.1:$port" >&2
            return 1
        fi
        if ((SECONDS >= deadline)); then
            echo "nothing listening on 127.0.0.1:$port after ${2:-10}s" >&2
            return 1
        fi
        sleep 0.05
    done
}

# wait_until SECONDS DESC CMD...: polls CMD until it succeeds, for a
# readiness signal that is not a port (a log line, a file); at the deadline
# says what it was waiting for and returns 1.
wait_until() {
    local limit=$1 desc=$2 deadline=$((SECONDS + $1))
    shift 2
    until "$@"; do
        if ((SECONDS >= deadline)); then
            echo "gave up after ${limit}s waiting for $desc" >&2
            return 1
        fi
        sleep 0.05
    done
}

# start_bg NAME CMD...: runs CMD in the background, output in $WORK/NAME.log;
# sets LAST_PID. The EXIT trap kills it if it still runs.
start_bg() {
    local name=$1
    shift
    "$@" >"$WORK/$name.log" 2>&1 &
    LAST_PID=$!
    STARTED_PIDS+=("$LAST_PID")
}

# stop_pid PID [SIGNAL] [SECONDS]: signals PID, waits for it to exit and
# sets STOP_STATUS to its exit status (124 if it did not exit in time).
stop_pid() {
    local pid=$1 sig=${2:-TERM} deadline=$((SECONDS + ${3:-15}))
    kill -"$sig" "$pid" 2>/dev/null || :
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            kill -KILL "$pid" 2>/dev/null || :
            wait "$pid" 2>/dev/null || :
            STOP_STATUS=124
            return 0
        fi
        sleep 0.05
    done
    STOP_STATUS=0
    wait "$pid" || STOP_STATUS=$?
}

# start_app NAME: starts an app server on a free port; sets APP_PORT, APP_PID.
start_app() {
    APP_PORT=$(free_port)
    start_bg "app-$1" python3 "$INTEG/app_server.py" "$1" "$APP_PORT"
    APP_PID=$LAST_PID
    wait_port "$APP_PORT" 10 "$APP_PID"
}

# start_berth DIR CONFIG PORT: runs `berth run -c CONFIG` with DIR as its
# working directory (relative paths in the config are relative to it) and
# waits until PORT accepts; sets BERTH_PID. Output in $WORK/berth-*.log.
start_berth() {
    local dir=$1 config=$2 port=$3
    start_bg "berth-$port" bash -c 'cd "$1" && exec "$2" run -c "$3"' _ "$dir" "$BERTH" "$config"
    BERTH_PID=$LAST_PID
    if ! wait_port "$port" 15 "$BERTH_PID"; then
        echo "--- berth output:" >&2
        cat "$WORK/berth-$port.log" >&2
        return 1
    fi
}

# ── certificates ─────────────────────────────────────────────────────────

# make_leaf DIR NAME ec|rsa: a key and a certificate for NAME signed by the
# test CA (made on first use: DIR/ca.crt, key in DIR/pki/), in DIR/pki/.
# Both carry the extensions strict verifiers demand (key usage, key ids).
# CERT_DAYS (default 30) sets the leaf's lifetime; CERT_EXT adds extfile
# lines to it (tls-audit.sh: a CRL distribution point).
make_leaf() {
    local dir=$1 name=$2 pki=$1/pki key usage
    mkdir -p "$pki"
    if [[ ! -f "$dir/ca.crt" ]]; then
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 400 \
            -subj "/CN=berth integration CA" -keyout "$pki/ca.key" -out "$dir/ca.crt" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    fi
    case $3 in
        ec) key=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) usage= ;;
        rsa) key=(-newkey rsa:2048) usage=,keyEncipherment ;;
    esac
    openssl req "${key[@]}" -nodes -subj "/CN=$name" -keyout "$pki/$name.key" \
        -out "$pki/$name.csr" 2>/dev/null
    openssl x509 -req -in "$pki/$name.csr" -CA "$dir/ca.crt" -CAkey "$pki/ca.key" \
        -CAcreateserial -days "${CERT_DAYS:-30}" -out "$pki/$name.crt" 2>/dev/null \
        -extfile <(printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\n' "$name"
            printf '%s\n' "keyUsage=critical,digitalSignature$usage" \
                subjectKeyIdentifier=hash authorityKeyIdentifier=keyid "${CERT_EXT:-}")
}

# make_certs DIR: the test CA in DIR/ca.crt (not in certs/), and in DIR/certs/
#   a.test.pem              ECDSA P-256 leaf + CA + key (HAProxy style)
#   b.test.crt, b.test.key  RSA-2048 leaf + CA, and its key
make_certs() {
    local dir=$1 pki=$1/pki
    make_leaf "$dir" a.test ec
    make_leaf "$dir" b.test rsa
    mkdir -p "$dir/certs"
    cat "$pki/a.test.crt" "$dir/ca.crt" "$pki/a.test.key" >"$dir/certs/a.test.pem"
    cat "$pki/b.test.crt" "$dir/ca.crt" >"$dir/certs/b.test.crt"
    cp "$pki/b.test.key" "$dir/certs/b.test.key"
}

# https_curl ARGS...: curl trusting the test CA, with a.test and b.test
# resolving to 127.0.0.1:$TLS_PORT.
https_curl() {
    curl -sS --max-time 60 --cacert "$WORK/ca.crt" \
        --resolve "a.test:$TLS_PORT:127.0.0.1" --resolve "b.test:$TLS_PORT:127.0.0.1" "$@"
}

# json_get FIELD: reads JSON on stdin, prints FIELD ("" if absent or null).
json_get() {
    python3 -c 'import json,sys; v=json.load(sys.stdin).get(sys.argv[1]); print("" if v is None else v)' "$1"
}

# ── a process's resources ────────────────────────────────────────────────

# proc_fds PID: how many file descriptors PID has open.
proc_fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

# proc_rss PID: PID's resident memory in KiB.
proc_rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# client_conns PID PORT...: the TCP connections PID holds on those local
# ports (its listeners), in any state; the listening sockets are not counted.
client_conns() {
    local filter="" port
    for port in "${@:2}"; do filter+="${filter:+ or }sport = :$port"; done
    ss -Htnp "( $filter )" | grep -c "pid=$1," || :
}
