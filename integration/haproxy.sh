#!/usr/bin/env bash
# berth behind a real HAProxy in TCP mode, standing in for the AWS NLB
# (send-proxy-v2) and then the classic ELB (send-proxy): three berth
# instances with identical configs (but for their port and access log),
# cookie affinity over three app servers. 30 clients, each from its own
# loopback address, get a cookie tie and keep requesting (a new connection
# each time) while one berth is stopped with SIGTERM and started again.
# Asserted per round: no failed request, every tied request served by its
# app server, the drained berth exits 0 after HAProxy took it out on its
# 503 health_path, and the three access logs hold exactly one line per
# request, each with the client's own address (never HAProxy's).
# Then the negatives through HAProxy: a missing, wrong-version or untrusted
# PROXY header is refused before any HTTP, nothing reaches an app server,
# and berth warns once (rate-limited) naming the listener.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

HAPROXY=${HAPROXY:-$(command -v haproxy || echo /usr/sbin/haproxy)}
if [[ ! -x "$HAPROXY" ]]; then
    echo "no haproxy at $HAPROXY: apt-get install haproxy (test.sh does)" >&2
    exit 1
fi
CLIENTS=30
FIRST_CLIENT=10 # client i connects from 127.0.0.(10+i); HAProxy from 127.0.0.1

make_certs "$WORK"
APP_PORTS=()
for app in app01 app02 app03; do
    start_app "$app"
    APP_PORTS+=("$APP_PORT")
done

# ── the client population ────────────────────────────────────────────────
cat >"$WORK/clients.py" <<'EOF'
"""clients.py PORT CA N FIRST STOP_FILE TIED_FILE OUT LIMIT_S

N clients, client i from 127.0.0.(FIRST+i), each a new TLS connection per
request to 127.0.0.1:PORT (SNI a.test): first a request without a cookie
(the tie), then requests with its cookie until STOP_FILE exists or LIMIT_S
passed. TIED_FILE is created once every client holds a tie. Every request
is recorded in OUT (JSON)."""
import http.client, json, os, socket, ssl, sys, threading, time

port, ca, n, first = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
stop_file, tied_file, out, limit = sys.argv[5], sys.argv[6], sys.argv[7], float(sys.argv[8])
deadline = time.time() + limit
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["http/1.1"])
tied = threading.Semaphore(0)


def request(src, path, cookie):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(src, 0))
    try:
        sock = ctx.wrap_socket(sock, server_hostname="a.test")
        conn = http.client.HTTPConnection("a.test", port, timeout=5)
        conn.sock = sock
        conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, resp.getheader("X-Served-By"), resp.getheader("Set-Cookie"), body
    finally:
        sock.close()


def client(i, record):
    src = f"127.0.0.{first + i}"
    record.update(addr=src, tie=None, requests=[])
    seq = 0
    while time.time() < deadline and (record["tie"] is None or not os.path.exists(stop_file)):
        seq += 1
        path = f"/c{i}/{seq}"
        tie = record["tie"]
        r = {"path": path, "t": time.time(), "tied": tie}
        try:
            status, served, set_cookie, body = request(src, path, f"BERTH={tie}" if tie else None)
            r.update(status=status, served=served, set_cookie=set_cookie)
            if status == 200:
                echo = json.loads(body)
                r.update(xff=echo["x_forwarded_for"], xport=echo["x_forwarded_port"],
                         cookie_up=echo["headers"].get("cookie"))
            if tie is None and status == 200 and (set_cookie or "").startswith("BERTH="):
                record["tie"] = set_cookie.split(";")[0][len("BERTH="):]
                tied.release()
        except Exception as err:  # noqa: BLE001 - every failure is recorded
            r["error"] = f"{type(err).__name__}: {err}"
        record["requests"].append(r)
        time.sleep(0.01)


records = [{} for _ in range(n)]
threads = [threading.Thread(target=client, args=(i, records[i]), daemon=True) for i in range(n)]
for t in threads:
    t.start()
for _ in range(n):
    if not tied.acquire(timeout=max(0.0, deadline - time.time())):
        break
else:
    open(tied_file, "w").close()
for t in threads:
    t.join(max(0.0, deadline - time.time()) + 6)
with open(out, "w") as f:
    json.dump(records, f)
EOF

# ── reading a round: the clients' records and the three access logs ──────
cat >"$WORK/analyse.py" <<'EOF'
"""analyse.py CLIENTS_JSON T_DOWN T_UP FRONTEND_PORT LOG1 LOG2 LOG3

Prints key=value facts about a round, and "detail: ..." lines for what
went wrong."""
import collections, json, re, sys

records = json.load(open(sys.argv[1]))
t_down, t_up, fport = float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
logs = sys.argv[5:]
facts, details = {}, []
LINE = re.compile(r'^(\S+) - (\S+) \[[^\]]+\] "((?:[^"\\]|\\.)*)" (\d{3}) (\S+) "[^"]*" "[^"]*" '
                  r'"([^"]*)" "([^"]*)" (\S+) (\d+)$')

requests = [dict(r, client=i, addr=rec["addr"]) for i, rec in enumerate(records) for r in rec["requests"]]
answered = [r for r in requests if "status" in r]
failed = [r for r in requests if r.get("status") != 200]
tied = [r for r in answered if r["tied"]]
facts["requests"] = len(requests)
facts["failures"] = len(failed)
for r in failed:
    details.append(f"failed: client {r['addr']} {r['path']} at +{r['t'] - t_down:.3f}s from SIGTERM: "
                   + r.get("error", f"HTTP {r.get('status')}"))
facts["during_down"] = sum(1 for r in requests if t_down <= r["t"] <= t_up)
ties = collections.Counter(rec["tie"] for rec in records)
facts["tied_clients"] = sum(n for tie, n in ties.items() if tie)
facts["ties"] = " ".join(f"{k}={v}" for k, v in sorted(ties.items(), key=str))
facts["tie_first_served"] = sum(1 for rec in records if rec["tie"] and next(
    r for r in rec["requests"] if "status" in r)["served"] == rec["tie"])
mism = [r for r in tied if r.get("served") != r["tied"]]
facts["mismatches"] = len(mism)
for r in mism[:5]:
    details.append(f"mismatch: {r['addr']} {r['path']} tied to {r['tied']}, served by {r.get('served')}")
facts["reties"] = sum(1 for r in tied if r.get("set_cookie"))
ok = [r for r in answered if r["status"] == 200]
facts["xff_wrong"] = sum(1 for r in ok if r["xff"] != r["addr"])
facts["xport_wrong"] = sum(1 for r in ok if r["xport"] != fport)
facts["cookie_forwarded"] = sum(1 for r in ok if r["cookie_up"] and "BERTH=" in r["cookie_up"])

# The access logs: client lines (/cI/N), HAProxy's health checks, anything else.
expected = collections.Counter((r["addr"], r["path"]) for r in answered)
seen, per_berth, health_h, health_ok, other = collections.Counter(), {}, set(), set(), []
new_at, hits, outcomes, wrong_h, wrong_server = {}, [], collections.Counter(), [], []
tie_of = {rec["addr"]: rec["tie"] for rec in records}
addr_of = {f"/c{i}/": rec["addr"] for i, rec in enumerate(records)}
for b, path in enumerate(logs, 1):
    per_berth[b] = 0
    for line in open(path, encoding="utf-8"):
        m = LINE.match(line.rstrip("\n"))
        if not m:
            other.append(line.rstrip())
            continue
        h, _, req, status, _, _, server, outcome, _ = m.groups()
        target = req.split(" ")[1] if req.count(" ") == 2 else ""
        if target == "/berth-health":
            health_h.add(h)
            if status == "200":
                health_ok.add(b)
            continue
        prefix = re.match(r"^/c\d+/", target)
        if not prefix or prefix.group(0) not in addr_of:
            other.append(line.rstrip())
            continue
        per_berth[b] += 1
        seen[(h, target)] += 1
        outcomes[outcome] += 1
        client = addr_of[prefix.group(0)]
        if h != client:
            wrong_h.append(f"log b{b}: %h {h} for {client}'s {target}")
        if outcome == "new":
            new_at[client] = b
        elif server != tie_of[client]:
            wrong_server.append(f"log b{b}: {client} tied to {tie_of[client]}, server {server}")
        if outcome == "hit":
            hits.append((client, b))
facts["log_client_lines"] = sum(seen.values())
missing, extra = expected - seen, seen - expected
facts["log_missing"] = sum(missing.values())
facts["log_extra"] = sum(extra.values())
for (h, p), n in list(missing.items())[:5]:
    details.append(f"answered but not logged: {h} {p}")
for (h, p), n in list(extra.items())[:5]:
    details.append(f"logged {n} time(s) more than answered: {h} {p}")
facts["log_wrong_h"] = len(wrong_h)
facts["log_wrong_server"] = len(wrong_server)
details += wrong_h[:5] + wrong_server[:5] + [f"unexpected log line: {l}" for l in other[:5]]
facts["log_other"] = len(other)
facts["log_outcomes"] = " ".join(f"{k}={outcomes[k]}" for k in ("new", "hit", "moved"))
facts["per_berth"] = " ".join(f"b{b}={n}" for b, n in per_berth.items())
facts["cross_instance"] = sum(1 for client, b in hits if new_at.get(client) not in (None, b))
facts["health_h"] = " ".join(sorted(health_h))
facts["health_ok_berths"] = len(health_ok)
for k, v in facts.items():
    print(f"{k}={v}")
for d in details:
    print(f"detail: {d}")
EOF

# count FILE STRING: how many lines of FILE contain STRING.
count() { awk -v s="$2" 'index($0, s) { n++ } END { print n + 0 }' "$1"; }
# at_least N FILE STRING: whether at least N lines of FILE contain STRING.
at_least() { (($(count "$2" "$3") >= $1)); }
# gone PID: whether PID has exited.
gone() { ! kill -0 "$1" 2>/dev/null; }
# berth's stderr without its terminal colours.
plain() { sed 's/\x1b\[[0-9;]*m//g' "$1"; }

# ── one round: HAProxy with SEND in front of three berths with PROTO ─────
round() {
    local proto=$1 send=$2 dir="$WORK/$1" hport b
    mkdir -p "$dir"
    hport=$(free_port)
    local -a ports=() pids=()
    for b in 1 2 3; do
        ports[b]=$(free_port)
        cat >"$dir/b$b.toml" <<EOF
[global]
certs = "$WORK/certs"
access_log = "logs/b$b.log"
log_format = "combined_plus"
drain_delay = "1s"     # > HAProxy's inter x fall: it stops sending first
drain_timeout = "5s"

[[listener]]
bind = "127.0.0.1:${ports[b]}"
tls = true
proxy_protocol = "$proto"
proxy_from = ["127.0.0.1"]
health_path = "/berth-health"

[[route]]
pool = "apps"

[pools.apps]
balance = "round_robin"
affinity = { mode = "cookie" }
$(for a in 1 2 3; do printf '[[pools.apps.servers]]\nname = "app0%s"\naddr = "127.0.0.1:%s"\n' "$a" "${APP_PORTS[a - 1]}"; done)
EOF
        start_berth "$dir" "b$b.toml" "${ports[b]}"
        pids[b]=$BERTH_PID
    done
    cat >"$dir/haproxy.cfg" <<EOF
global
    maxconn 2000
defaults
    mode tcp
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    timeout check 1s
    retries 3
    option redispatch 1
frontend lb
    bind 127.0.0.1:$hport
    default_backend berths
backend berths
    balance roundrobin
    source 127.0.0.1
    option httpchk GET /berth-health
    http-check expect status 200
    default-server check inter 200ms fall 1 rise 1 $send check-ssl check-sni a.test ca-file $WORK/ca.crt verify required
    server b1 127.0.0.1:${ports[1]}
    server b2 127.0.0.1:${ports[2]}
    server b3 127.0.0.1:${ports[3]}
EOF
    local hlog="$WORK/haproxy-$proto.log" hpid cpid t_down t_up before
    start_bg "haproxy-$proto" "$HAPROXY" -db -f "$dir/haproxy.cfg"
    hpid=$LAST_PID
    wait_port "$hport" 10 "$hpid"

    echo "# $proto: $CLIENTS clients through HAProxy ($send) on 127.0.0.1:$hport"
    start_bg "clients-$proto" python3 "$WORK/clients.py" "$hport" "$WORK/ca.crt" "$CLIENTS" \
        "$FIRST_CLIENT" "$dir/stop" "$dir/tied" "$dir/clients.json" 40
    cpid=$LAST_PID
    check "$proto: every client got a cookie tie" wait_until 15 "the clients' ties" test -e "$dir/tied"
    expect_eq "$proto: no berth taken out before the bounce" 0 "$(count "$hlog" "is DOWN")"

    echo "# $proto: SIGTERM to b2 while the clients run, then b2 started again"
    t_down=$(date +%s.%N)
    kill -TERM "${pids[2]}"
    check "$proto: HAProxy takes b2 out: its health_path answers 503 while it drains" \
        wait_until 5 "b2 DOWN in HAProxy's log" \
        at_least 1 "$hlog" "Server berths/b2 is DOWN, reason: Layer7 wrong status, code: 503"
    stop_pid "${pids[2]}" 0 15
    expect_eq "$proto: b2 drained and exited 0" 0 "$STOP_STATUS"
    before=$(count "$dir/logs/b2.log" '"GET /c')
    mv "$WORK/berth-${ports[2]}.log" "$WORK/berth-${ports[2]}.first.log"
    start_berth "$dir" b2.toml "${ports[2]}"
    pids[2]=$BERTH_PID
    check "$proto: HAProxy puts b2 back" wait_until 5 "b2 UP in HAProxy's log" \
        at_least 1 "$hlog" "Server berths/b2 is UP"
    t_up=$(date +%s.%N)
    check "$proto: the restarted b2 serves clients again (20 requests logged)" \
        wait_until 10 "b2's access log" at_least $((before + 20)) "$dir/logs/b2.log" '"GET /c'

    touch "$dir/stop"
    check "$proto: the clients stop" wait_until 15 "the clients to stop" gone "$cpid"
    local status=0
    wait "$cpid" || status=$?
    expect_eq "$proto: the client population exited 0" 0 "$status"
    stop_pid "$hpid"
    for b in 1 2 3; do kill -TERM "${pids[b]}"; done
    for b in 1 2 3; do
        stop_pid "${pids[b]}" 0 15
        expect_eq "$proto: b$b: SIGTERM drains, exit 0" 0 "$STOP_STATUS"
    done
    expect_eq "$proto: HAProxy took only b2 out, once, and put it back" "1 1 0 0 0 0" \
        "$(for s in b2 b1 b3; do printf '%s %s ' "$(count "$hlog" "Server berths/$s is DOWN")" \
            "$(count "$hlog" "Server berths/$s is UP")"; done | sed 's/ $//')"

    local -A f=()
    local k v
    while IFS='=' read -r k v; do
        if [[ "$k" == detail:* ]]; then echo "    ${k#detail: }${v:+=$v}"; else f[$k]=$v; fi
    done < <(python3 "$WORK/analyse.py" "$dir/clients.json" "$t_down" "$t_up" "$hport" \
        "$dir/logs/b1.log" "$dir/logs/b2.log" "$dir/logs/b3.log")
    echo "round $proto: ${f[requests]} requests, ${f[failures]} failed" \
        "(${f[during_down]} while b2 was out); ties ${f[ties]}; client lines per berth: ${f[per_berth]}"
    expect_eq "$proto: no failed request (any failure is listed above)" 0 "${f[failures]}"
    check "$proto: requests kept coming while b2 was out (${f[during_down]})" test "${f[during_down]}" -gt 0
    expect_eq "$proto: every client tied" "$CLIENTS" "${f[tied_clients]}"
    expect_match "$proto: ties spread over the three app servers" \
        '^app01=[0-9]+ app02=[0-9]+ app03=[0-9]+$' "${f[ties]}"
    expect_eq "$proto: the tying response came from the app server its cookie names" \
        "$CLIENTS" "${f[tie_first_served]}"
    expect_eq "$proto: every tied request served by its tied app server" 0 "${f[mismatches]}"
    expect_eq "$proto: no tied request re-tied (no Set-Cookie)" 0 "${f[reties]}"
    expect_eq "$proto: BERTH cookie never forwarded to the app" 0 "${f[cookie_forwarded]}"
    expect_eq "$proto: X-Forwarded-For is the client's own address" 0 "${f[xff_wrong]}"
    expect_eq "$proto: X-Forwarded-Port is HAProxy's frontend port (the header's)" 0 "${f[xport_wrong]}"
    expect_eq "$proto: the three logs hold every answered request" 0 "${f[log_missing]}"
    expect_eq "$proto: ... and once only" 0 "${f[log_extra]}"
    expect_eq "$proto: %h is the client's address from the PROXY header, never HAProxy's" \
        0 "${f[log_wrong_h]}"
    expect_eq "$proto: no other log lines" 0 "${f[log_other]}"
    expect_eq "$proto: logged outcomes: one new per client, the rest hit" \
        "new=$CLIENTS hit=$((f[log_client_lines] - CLIENTS)) moved=0" "${f[log_outcomes]}"
    expect_eq "$proto: logged server is the tie's" 0 "${f[log_wrong_server]}"
    expect_match "$proto: every berth served clients" \
        '^b1=[1-9][0-9]* b2=[1-9][0-9]* b3=[1-9][0-9]*$' "${f[per_berth]}"
    check "$proto: ties made on one berth honoured by the others (${f[cross_instance]})" \
        test "${f[cross_instance]}" -gt 0
    expect_eq "$proto: HAProxy's checks (PROXY $proto, TLS) passed on all three" 3 "${f[health_ok_berths]}"
    expect_eq "$proto: health checks logged with HAProxy's own address (LOCAL/UNKNOWN)" \
        127.0.0.1 "${f[health_h]}"
}

round v2 send-proxy-v2
round v1 "send-proxy check-send-proxy"

# ── negatives: the wrong PROXY header, or none, through HAProxy ──────────
echo "# refused connections"
HITS=$(free_port)
cat >"$WORK/hits.py" <<'EOF'
"""hits.py PORT: answers every request 200 and counts them; GET /hits
(not counted) tells how many."""
import sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
lock, count = threading.Lock(), [0]
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        with lock:
            if self.path != "/hits":
                count[0] += 1
            body = f"{count[0]}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
start_bg hits python3 "$WORK/hits.py" "$HITS"
wait_port "$HITS" 10 "$LAST_PID"
hits() { curl -sS --max-time 5 "http://127.0.0.1:$HITS/hits"; }

# Listeners N1..N4 get the wrong header (or none); C, the last one (so it
# is the one start_berth probes), is the control.
NEG="$WORK/neg"
mkdir -p "$NEG"
declare -A LPORT FPORT
for l in n1 n2 n3 n4 c; do LPORT[$l]=$(free_port) FPORT[$l]=$(free_port); done
listener() { # NAME PROTO
    printf '[[listener]]\nbind = "127.0.0.1:%s"\ntls = true\nproxy_protocol = "%s"\nproxy_from = ["127.0.0.1"]\n\n' \
        "${LPORT[$1]}" "$2"
}
cat >"$NEG/berth.toml" <<EOF
[global]
certs = "$WORK/certs"
access_log = "logs/neg.log"
log_format = "combined_plus"

$(listener n1 v2)
$(listener n2 v2)
$(listener n3 v1)
$(listener n4 v2)
$(listener c v2)
[[route]]
pool = "hits"
[pools.hits]
[[pools.hits.servers]]
name = "hits"
addr = "127.0.0.1:$HITS"
EOF
start_berth "$NEG" berth.toml "${LPORT[c]}"
NEG_PID=$BERTH_PID
NEG_ERR="$WORK/berth-${LPORT[c]}.log"
section() { # NAME SERVER-OPTIONS
    printf 'listen %s\n    bind 127.0.0.1:%s\n    server s 127.0.0.1:%s %s\n' "$1" "${FPORT[$1]}" "${LPORT[$1]}" "$2"
}
cat >"$NEG/haproxy.cfg" <<EOF
global
    maxconn 100
defaults
    mode tcp
    timeout connect 1s
    timeout client 5s
    timeout server 5s
$(section n1 "source 127.0.0.1")
$(section n2 "send-proxy source 127.0.0.1")
$(section n3 "send-proxy-v2 source 127.0.0.1")
$(section n4 "send-proxy-v2 source 127.0.0.3")
$(section c "send-proxy-v2 source 127.0.0.1")
EOF
start_bg haproxy-neg "$HAPROXY" -db -f "$NEG/haproxy.cfg"
NEG_HAPROXY=$LAST_PID
# Probing a frontend makes HAProxy connect on: only the control's.
wait_port "${FPORT[c]}" 10 "$NEG_HAPROXY"

via() { # FRONTEND: one request through HAProxy from 127.0.0.2; "code exit"
    local out rc=0
    out=$(curl -sS --max-time 10 --cacert "$WORK/ca.crt" --interface 127.0.0.2 \
        --resolve "a.test:${FPORT[$1]}:127.0.0.1" -o /dev/null -w '%{http_code}' \
        "https://a.test:${FPORT[$1]}/$1" 2>>"$WORK/curl-neg.err") || rc=$?
    echo "$out $rc"
}
expect_eq "control: send-proxy-v2 to a v2 listener -> 200" "200 0" "$(via c)"
expect_eq "control reached the app" 1 "$(hits)"
for case in "n1 no send-proxy, v2 listener" \
    "n2 send-proxy (v1), v2 listener" \
    "n3 send-proxy-v2, v1 listener" \
    "n4 send-proxy-v2 from 127.0.0.3, outside proxy_from"; do
    read -r l desc <<<"$case"
    results=$(for _ in 1 2 3; do via "$l"; done | xargs)
    expect_match "$desc: 3 connections refused, no HTTP answer (\"code curl-exit\" x3)" \
        '^000 [1-9][0-9]* 000 [1-9][0-9]* 000 [1-9][0-9]*$' "$results"
done
expect_eq "nothing reached the app server" 1 "$(hits)"
stop_pid "$NEG_HAPROXY"
stop_pid "$NEG_PID"
expect_eq "berth exits 0" 0 "$STOP_STATUS"
expect_eq "one access log line: the control's, with the client's address" \
    "127.0.0.2 GET /c HTTP/2.0 200" \
    "$(awk '{ print $1, substr($6, 2), $7, substr($8, 1, length($8) - 1), $9 }' "$NEG/logs/neg.log" | xargs)"
for case in "n1 malformed" "n2 malformed" "n3 malformed" "n4 untrusted_peer 127.0.0.3"; do
    read -r l reason peer <<<"$case"
    warns=$(plain "$NEG_ERR" | awk -v l="listener=127.0.0.1:${LPORT[$l]} " \
        'index($0, "PROXY header refused") && index($0, l)')
    expect_eq "$l: one warning for 3 refusals (rate-limited)" 1 "$(count <(echo -n "$warns") refused)"
    expect_match "$l: a WARN naming the listener, reason $reason${peer:+, peer $peer}" \
        "WARN .*listener=127\.0\.0\.1:${LPORT[$l]} client\.addr=${peer:-127.0.0.1}:[0-9]+ reason=\"$reason\" suppressed=0" \
        "$warns"
done
finish
