#!/usr/bin/env bash
# Every test of berth, in one command:
#   1. installs the outside tools that are missing (curl, openssl, goaccess,
#      python3 and its venv module, haproxy, h2load, logrotate,
#      systemd-analyze, ss, strace, slowhttptest, testssl.sh) with apt-get;
#   2. cargo fmt --check, cargo clippy -D warnings, cargo test (unit and
#      tests/), cargo build --release;
#   3. integration/run-all.sh against the release binary.
# Closes with "N passed, M failed": the integration checks plus one per
# cargo step. Exits non-zero if anything failed.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step() { echo; echo "━━━ $*"; }

# ── 1. outside tools ─────────────────────────────────────────────────────
missing=()
# tool:package, for the tools whose package has another name
for tool in curl openssl goaccess python3 haproxy h2load:nghttp2-client logrotate \
    systemd-analyze:systemd ss:iproute2 strace slowhttptest testssl:testssl.sh; do
    # haproxy and logrotate are in /usr/sbin, not always on a user's PATH
    command -v "${tool%%:*}" >/dev/null || [[ -x "/usr/sbin/${tool%%:*}" ]] || missing+=("${tool#*:}")
done
# operate.sh and tls-audit.sh make venvs (prometheus-client, sslyze)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]} > 0)); then
    step "installing ${missing[*]} with apt-get"
    sudo=()
    [[ "$(id -u)" == 0 ]] || sudo=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -q </dev/null
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
fi

# ── 2. cargo ─────────────────────────────────────────────────────────────
passed=0
failed=0
failures=()
run_step() { # NAME CMD...
    local name=$1
    shift
    step "$name: $*"
    if "$@"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        failures+=("$name")
    fi
}
run_step fmt cargo fmt --check
run_step clippy cargo clippy --all-targets -- -D warnings
run_step test cargo test
run_step build cargo build --release

# ── 3. integration ───────────────────────────────────────────────────────
if [[ " ${failures[*]-} " == *" build "* ]]; then
    echo "no release binary: integration scripts not run"
else
    step "integration: integration/run-all.sh"
    log=$(mktemp)
    trap 'rm -f "$log"' EXIT
    integration/run-all.sh | tee "$log" || failures+=(integration)
    read -r p _ f _ < <(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -1 || echo "0 passed, 1 failed")
    passed=$((passed + p))
    failed=$((failed + f))
fi

step "done"
if ((${#failures[@]} > 0)); then
    echo "failed: ${failures[*]}"
fi
echo "$passed passed, $failed failed"
((${#failures[@]} == 0 && failed == 0))
