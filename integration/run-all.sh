#!/usr/bin/env bash
# Runs every integration script against target/release/berth, prints a
# summary and the total as "N passed, M failed"; exits 1 if anything failed.
# A script that dies before its own closing line counts one more failure.
set -euo pipefail
INTEG=$(cd "$(dirname "$0")" && pwd)
SCRIPTS=(check.sh openssl.sh curl.sh goaccess.sh haproxy.sh service.sh operate.sh slowloris.sh tls-audit.sh)
passed=0
failed=0
summary=()
out=$(mktemp)
trap 'rm -f "$out"' EXIT

for script in "${SCRIPTS[@]}"; do
    echo "=== $script"
    start=$SECONDS
    status=0
    BERTH_INTEG_TIMED=1 timeout -k 10 "${INTEG_TIMEOUT:-300}" bash "$INTEG/$script" 2>&1 | tee "$out" || status=$?
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -1 || :)
    if [[ -z "$line" ]]; then
        line="0 passed, 1 failed"
        echo "FAIL - $script ended (status $status) without its closing line"
    elif [[ "$status" != 0 && "$line" =~ " 0 failed" ]]; then
        line="${line%% *} passed, 1 failed"
        echo "FAIL - $script exited $status"
    fi
    read -r p _ f _ <<<"$line"
    passed=$((passed + p))
    failed=$((failed + f))
    summary+=("$(printf '%-12s %-24s %3ss' "$script" "$line" $((SECONDS - start)))")
done

echo "=== integration summary"
printf '  %s\n' "${summary[@]}"
echo "$passed passed, $failed failed"
[[ "$failed" == 0 ]]
