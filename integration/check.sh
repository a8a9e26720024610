#!/usr/bin/env bash
# `berth check` as an operator runs it: from berth's directory, with the
# certificates dropped into certs/. Every shipped config passes; typos,
# missing or broken certificates fail naming what is wrong; an expired
# certificate is only a warning. Also the exit statuses of SPEC §1.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# berth_in DIR ARGS...: runs berth in DIR; output in OUT, status in RC.
berth_in() {
    local dir=$1
    shift
    OUT=$(cd "$dir" && timeout 20 "$BERTH" "$@" 2>&1) && RC=0 || RC=$?
}
expect_rc() { # DESC EXPECTED: RC as expected, else show OUT
    if [[ "$RC" == "$2" ]]; then pass "$1"; else
        fail "$1: exit $RC, expected $2"
        sed 's/^/    /' <<<"$OUT" | head -30
    fi
}
says() { # DESC REGEX: OUT matches REGEX
    if grep -qE -- "$2" <<<"$OUT"; then pass "$1"; else
        fail "$1: no /$2/ in:"
        sed 's/^/    /' <<<"$OUT" | head -30
    fi
}

# An operator's directory: certs/ for a.test and b.test, config/ copied.
OP="$WORK/op"
make_certs "$OP"
cp -r "$ROOT/config" "$OP/config"

echo "# every shipped config passes"
shopt -s nullglob
configs=("$OP"/config/*.toml "$OP"/config/examples/*.toml)
check "config/ holds configs to check" test "${#configs[@]}" -gt 0
for file in "${configs[@]}"; do
    rel=${file#"$OP"/}
    # A certificate for the name the config asks to default to, and certs
    # where the config looks for them, as the operator would provide.
    name=$(sed -nE 's/^[[:space:]]*default_cert[[:space:]]*=[[:space:]]*"([^"]+)".*/\1/p' "$file" | head -1)
    if [[ -n "$name" && ! -f "$OP/certs/$name.crt" ]]; then
        make_leaf "$OP" "$name" ec
        cp "$OP/pki/$name.crt" "$OP/pki/$name.key" "$OP/certs/"
    fi
    certs=$(sed -nE 's/^[[:space:]]*certs[[:space:]]*=[[:space:]]*"([^"]+)".*/\1/p' "$file" | head -1)
    if [[ -n "$certs" && "$certs" != certs && ! -e "$OP/$certs" ]]; then
        mkdir -p "$(dirname "$OP/$certs")" && ln -s "$OP/certs" "$OP/$certs"
    fi
    berth_in "$OP" check -c "$rel"
    expect_rc "berth check -c $rel exits 0" 0
done

echo "# typos are named with their line"
cat >"$OP/typo.toml" <<'EOF'
[global]
access_log = "-"
[global.limits]
max_conections = 10
[[listener]]
bind = "127.0.0.1:8080"
tls = false
[[route]]
pool = "web"
[pools.web]
balanse = "round_robin"
[[pools.web.servers]]
name = "web1"
addr = "127.0.0.1:8081"
EOF
berth_in "$OP" check -c typo.toml
expect_rc "typo.toml: exit 1" 1
says "names max_conections and its line 4" 'typo\.toml:4:[0-9]+.*max_conections'
says "names balanse and its line 11 (every problem, not just the first)" 'typo\.toml:11:[0-9]+.*balanse'
if [[ -f "$OP/config/berth.toml" ]]; then
    # A typo in the shipped config, right under its [global] line.
    at=$(grep -n '^\[global\]' "$OP/config/berth.toml" | head -1 | cut -d: -f1)
    sed "${at}a acces_log = \"logs/access.log\"" "$OP/config/berth.toml" >"$OP/config/typo-berth.toml"
    berth_in "$OP" check -c config/typo-berth.toml
    expect_rc "config/berth.toml with a typo: exit 1" 1
    says "names acces_log and its line $((at + 1))" "typo-berth\.toml:$((at + 1)):[0-9]+.*acces_log"
fi
berth_in "$OP" run -c typo.toml
expect_rc "berth run on a bad config: exit 1" 1
berth_in "$OP" check -c no-such-file.toml
expect_rc "missing config file: exit 1" 1
says "names the missing file" 'no-such-file\.toml'

echo "# certificates"
cat >"$OP/tls.toml" <<'EOF'
[global]
certs = "certs"
access_log = "-"
[[listener]]
bind = "127.0.0.1:8443"
tls = true
[[route]]
pool = "web"
[pools.web]
[[pools.web.servers]]
name = "web1"
addr = "127.0.0.1:8081"
EOF
berth_in "$OP" check -c tls.toml
expect_rc "TLS listener with certs/ populated: exit 0" 0
says "summary lists a.test" 'a\.test'
says "summary lists b.test" 'b\.test'
mkdir "$WORK/empty"
cp "$OP/tls.toml" "$WORK/empty/"
berth_in "$WORK/empty" check -c tls.toml
expect_rc "TLS listener with no certs/ directory: exit 1" 1
says "names the certs directory" 'certs'
berth_in "$WORK/empty" run -c tls.toml
expect_rc "berth run with no certificate: exit 1" 1

# A broken file beside good ones is an error for check (run still serves).
cp -r "$OP/certs" "$WORK/broken-certs"
echo "not a certificate" >"$WORK/broken-certs/zz-broken.pem"
sed 's|^certs = "certs"|certs = "'"$WORK"'/broken-certs"|' "$OP/tls.toml" >"$OP/broken.toml"
berth_in "$OP" check -c broken.toml
expect_rc "a file that does not parse: check exits 1" 1
says "names the broken file" 'zz-broken\.pem'

# An expired certificate: a warning, exit 0.
EXP="$WORK/expired"
mkdir -p "$EXP/certs"
: >"$EXP/index.txt"
echo 01 >"$EXP/serial"
printf '[ca]\ndefault_ca=x\n[x]\ndatabase=%s/index.txt\nserial=%s/serial\nnew_certs_dir=%s\ndefault_md=sha256\npolicy=p\ncopy_extensions=copy\n[p]\ncommonName=supplied\n' \
    "$EXP" "$EXP" "$EXP" >"$EXP/ca.cnf"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=old.test \
    -addext subjectAltName=DNS:old.test -keyout "$EXP/k.pem" -out "$EXP/r.csr" 2>/dev/null
openssl ca -batch -notext -config "$EXP/ca.cnf" -selfsign -keyfile "$EXP/k.pem" -in "$EXP/r.csr" \
    -startdate 20200101000000Z -enddate 20200201000000Z -out "$EXP/c.pem" 2>/dev/null
cat "$EXP/c.pem" "$EXP/k.pem" >"$EXP/certs/old.test.pem"
cp "$OP/tls.toml" "$EXP/"
berth_in "$EXP" check -c tls.toml
expect_rc "only an expired certificate: check exits 0" 0
says "warns that it expired" '(warning.*(expire|EXPIRED))|EXPIRED'

echo "# exit statuses of berth run"
start_app busy
sed "s|127.0.0.1:8080|127.0.0.1:$APP_PORT|" "$OP/typo.toml" | grep -vE '^(max_conections|balanse)' >"$OP/busy.toml"
berth_in "$OP" run -c busy.toml
expect_rc "address in use: exit 2" 2
says "names the address" "127\.0\.0\.1:$APP_PORT"
berth_in "$OP" --version
expect_rc "--version: exit 0" 0
says "--version prints berth and a version" '^berth [0-9]+\.[0-9]+\.[0-9]+'
finish
