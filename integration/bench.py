#!/usr/bin/env python3
"""berth, HAProxy and nginx measured side by side (run it through
integration/bench, which installs the tools and builds the binaries).

Each proxy runs with one worker pinned to PROXY_CPU; this script, the load
generators (wrk, h2load, openssl s_time, its own idle-connection client) and
the two app servers run on LOAD_CPU. The proxies are interleaved, round after
round; every figure is the median over the rounds, and every throughput
figure is also given per second of the proxy's own CPU time (utime + stime
from /proc/PID/stat, summed over its processes), which is what stays
comparable on a shared, noisy machine.
"""

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROXY_CPU = os.environ.get("BENCH_PROXY_CPU", "0")
LOAD_CPU = os.environ.get("BENCH_LOAD_CPU", "1")
TICK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
PROXIES = ("berth", "haproxy", "nginx")
FIXED_RATE = 5000
IDLE_CONNECTIONS = 2000
HANDSHAKE_CLIENTS = 4
STARTED = []  # every process this script started, stopped at exit


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ── processes ───────────────────────────────────────────────────────────


def start(cmd, out, cwd=None, cpu=None):
    """Starts cmd (pinned to cpu when given), output to the file out."""
    if cpu is not None:
        cmd = ["taskset", "-c", cpu, *cmd]
    with open(out, "ab") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, cwd=cwd)
    STARTED.append(proc)
    return proc


def stop(proc, grace=10):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc in STARTED:
        STARTED.remove(proc)


def stop_all(*_):
    for proc in list(STARTED):
        stop(proc, 5)
    if _:
        sys.exit(1)


def run(cmd, seconds, cwd=None):
    """Runs a load generator to completion within a time bound; its stdout."""
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=seconds, cwd=cwd, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return proc.stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, seconds=15):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited ({proc.returncode}) before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {seconds}s")


def family(pid):
    """pid and every descendant (nginx: master and worker)."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return pids


def cpu_seconds(pid):
    """utime + stime of pid and its descendants, in seconds."""
    total = 0
    for p in family(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / TICK


def rss_kib(pid):
    total = 0
    for p in family(pid):
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * PAGE_KIB
        except OSError:
            pass
    return total


class Measured:
    """The proxy's CPU seconds spent inside a with-block."""

    def __init__(self, pid):
        self.pid = pid

    def __enter__(self):
        self.cpu0, self.wall0 = cpu_seconds(self.pid), time.monotonic()
        return self

    def __exit__(self, *exc):
        self.cpu = cpu_seconds(self.pid) - self.cpu0
        self.wall = time.monotonic() - self.wall0


# ── certificates ────────────────────────────────────────────────────────


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certs(work):
    """A CA, and an ECDSA P-256 and an RSA-2048 leaf for bench.test; returns
    {kind: (cert_path, key_path)} with the CA appended to each chain."""
    pki = work / "pki"
    pki.mkdir()
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-days", "30", "-subj", "/CN=berth bench CA", "-keyout", pki / "ca.key",
            "-out", pki / "ca.crt")
    certs = {}
    for kind, key in (("ec", ["ec", "-pkeyopt", "ec_paramgen_curve:P-256"]), ("rsa", ["rsa:2048"])):
        openssl("req", "-newkey", *key, "-nodes", "-subj", "/CN=bench.test",
                "-keyout", pki / f"{kind}.key", "-out", pki / f"{kind}.csr")
        ext = pki / "ext.cnf"
        ext.write_text("subjectAltName=DNS:bench.test\nextendedKeyUsage=serverAuth\n")
        openssl("x509", "-req", "-in", pki / f"{kind}.csr", "-CA", pki / "ca.crt",
                "-CAkey", pki / "ca.key", "-CAcreateserial", "-days", "30",
                "-extfile", ext, "-out", pki / f"{kind}.leaf")
        chain = pki / f"{kind}.crt"
        chain.write_text((pki / f"{kind}.leaf").read_text() + (pki / "ca.crt").read_text())
        certs[kind] = (chain, pki / f"{kind}.key")
    return certs


# ── the proxies ─────────────────────────────────────────────────────────


def berth_config(dirs, port, apps, cert):
    certs = dirs / "certs"
    certs.mkdir()
    shutil.copy(cert[0], certs / "bench.test.crt")
    shutil.copy(cert[1], certs / "bench.test.key")
    servers = "".join(
        f'[[pools.website.servers]]\nname = "app0{i + 1}"\naddr = "127.0.0.1:{p}"\n'
        for i, p in enumerate(apps)
    )
    (dirs / "berth.toml").write_text(f"""\
# berth's production defaults (config/berth.toml) with one worker thread.
[global]
certs = "certs"
access_log = "logs/access.log"
log_format = "combined"
state_file = "state/berth.state"
workers = 1

[[listener]]
bind = "127.0.0.1:{port}"
tls = true

[[route]]
pool = "website"

[pools.website]
balance = "round_robin"
affinity = {{ mode = "cookie", cookie = "BERTH" }}

{servers}""")
    return [os.environ["BENCH_BERTH"], "run", "-c", "berth.toml"]


def haproxy_config(dirs, port, apps, cert):
    pem = dirs / "bench.test.pem"
    pem.write_text(cert[0].read_text() + cert[1].read_text())
    servers = "".join(
        f"    server app0{i + 1} 127.0.0.1:{p} cookie app0{i + 1}\n" for i, p in enumerate(apps)
    )
    (dirs / "haproxy.cfg").write_text(f"""\
global
    nbthread 1
    maxconn 8000
    ssl-default-bind-options ssl-min-ver TLSv1.2
    log stdout format raw local0

defaults
    mode http
    log global
    option httplog
    option forwardfor
    timeout connect 3s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    timeout http-keep-alive 60s

frontend https
    bind 127.0.0.1:{port} ssl crt {pem} alpn h2,http/1.1
    http-request set-header X-Forwarded-Proto https
    http-request set-header X-Forwarded-Port %[dst_port]
    default_backend website

backend website
    balance roundrobin
    cookie BERTH insert indirect nocache httponly secure
    http-reuse safe
{servers}""")
    # -db: foreground, one process; the log goes to stdout, i.e. a file.
    return ["haproxy", "-db", "-f", "haproxy.cfg"]


def nginx_config(dirs, port, apps, cert):
    servers = "".join(f"        server 127.0.0.1:{p};\n" for p in apps)
    (dirs / "logs").mkdir()
    (dirs / "nginx.conf").write_text(f"""\
worker_processes 1;
daemon off;
pid {dirs}/nginx.pid;
error_log {dirs}/logs/error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 10000; }}
http {{
    access_log {dirs}/logs/access.log combined buffer=64k flush=1s;
    client_body_temp_path {dirs}/tmp-body;
    proxy_temp_path {dirs}/tmp-proxy;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;
    keepalive_timeout 60s;
    upstream website {{
{servers}        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {cert[0]};
        ssl_certificate_key {cert[1]};
        location / {{
            proxy_pass http://website;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto https;
            proxy_set_header X-Forwarded-Port $server_port;
        }}
    }}
}}
""")
    return ["nginx", "-p", f"{dirs}/", "-e", f"{dirs}/logs/error.log", "-c", f"{dirs}/nginx.conf"]


CONFIGS = {"berth": berth_config, "haproxy": haproxy_config, "nginx": nginx_config}


class Proxy:
    def __init__(self, name, work, apps, cert):
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=work))
        self.port = free_port()
        cmd = CONFIGS[name](self.dir, self.port, apps, cert)
        self.proc = start(cmd, self.dir / "stdout.log", cwd=self.dir, cpu=PROXY_CPU)
        try:
            wait_port(self.port, self.proc)
        except RuntimeError:
            log(f"--- {name} output:\n{(self.dir / 'stdout.log').read_text(errors='replace')}")
            self.close()
            raise
        self.url = f"https://127.0.0.1:{self.port}/"

    def pid(self):
        return self.proc.pid

    def close(self):
        stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


# ── the measurements ────────────────────────────────────────────────────

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def wrk(url, connections, seconds, latency=False):
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s"]
    if latency:
        cmd.append("--latency")
    out = run(cmd + [url], seconds + 30)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result = {"requests": requests, "non2xx": int(bad.group(1)) if bad else 0,
              "errors": sum(map(int, errors.groups())) if errors else 0}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
        if m:
            result[f"p{pct}_ms"] = float(m.group(1)) * UNITS[m.group(2)]
    return result


def keep_alive(proxy, seconds):
    with Measured(proxy.pid()) as m:
        r = wrk(proxy.url, 64, seconds, latency=True)
    return {"ka_rps": r["requests"] / m.wall, "ka_per_cpu": r["requests"] / m.cpu,
            "ka_p50_ms": r["p50_ms"], "ka_p99_ms": r["p99_ms"], "ka_errors": r["errors"] + r["non2xx"]}


def big_responses(proxy, seconds):
    with Measured(proxy.pid()) as m:
        r = wrk(proxy.url + "1m", 8, seconds)
    return {"mib_s": r["requests"] / m.wall, "mib_per_cpu": r["requests"] / m.cpu,
            "mib_errors": r["errors"] + r["non2xx"]}


def fixed_rate(proxy, seconds, work):
    """p50/p99 at FIXED_RATE req/s over 50 keep-alive HTTP/1.1 connections."""
    logfile = work / f"h2load-{proxy.name}.log"
    clients = 50
    cmd = ["h2load", "--h1", "-t1", f"-c{clients}", f"--rps={FIXED_RATE // clients}",
           f"-D{seconds}", "--warm-up-time=1", f"--log-file={logfile}", proxy.url]
    with Measured(proxy.pid()) as m:
        out = run(cmd, seconds + 30)
    durations = []
    with open(logfile) as f:
        for line in f:
            cols = line.split()
            if len(cols) >= 3 and cols[1].startswith("2"):
                durations.append(int(cols[2]) / 1000)
    logfile.unlink()
    if len(durations) < 100:
        raise RuntimeError(f"h2load: only {len(durations)} good responses\n{out[-800:]}")
    if len(durations) < 0.95 * FIXED_RATE * seconds:
        log(f"  {proxy.name}: the fixed-rate run reached only {len(durations) / seconds:.0f} req/s "
            "(the load CPU is busy): its latencies are not at the target rate")
    durations.sort()
    pick = lambda q: durations[min(len(durations) - 1, int(q * len(durations)))]  # noqa: E731
    return {"fr_p50_ms": pick(0.50), "fr_p99_ms": pick(0.99),
            "fr_cpu_pct": 100 * m.cpu / m.wall, "fr_rps": len(durations) / seconds}


def handshakes(proxy, seconds, mode):
    """Connections per second with openssl s_time: -new makes a full TLS 1.3
    handshake per connection, -reuse resumes; each fetches / once (HTTP/1.0,
    so one request per connection)."""
    cmd = ["openssl", "s_time", "-connect", f"127.0.0.1:{proxy.port}", "-tls1_3",
           f"-{mode}", "-time", str(seconds), "-www", "/"]
    with Measured(proxy.pid()) as m:
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for _ in range(HANDSHAKE_CLIENTS)]
        outs = [p.communicate(timeout=seconds + 30)[0] for p in procs]
    count = 0
    for out in outs:
        m2 = re.search(r"(\d+) connections in [\d.]+ real seconds", out)
        if not m2:
            raise RuntimeError(f"s_time: no result\n{out[-800:]}")
        count += int(m2.group(1))
    return count / m.wall, count / m.cpu


async def idle_connections(port, count):
    """Opens count TLS connections, one request on each, keeps them open;
    returns (the open writers, responses that were not 200)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    gate = asyncio.Semaphore(32)
    request = b"GET / HTTP/1.1\r\nHost: bench.test\r\n\r\n"

    async def one():
        async with gate:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=ctx, server_hostname="bench.test")
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: *(\d+)", head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            return writer, head.startswith(b"HTTP/1.1 200")

    done = await asyncio.gather(*(one() for _ in range(count)))
    return [w for w, _ in done], sum(1 for _, ok in done if not ok)


def idle_rss(proxy):
    """KiB of proxy RSS per idle TLS connection that has served one request."""
    run(["wrk", "-t1", "-c8", "-d1s", proxy.url], 30)  # warm up pools and caches
    time.sleep(0.5)  # let the proxy close the warm-up connections
    before = rss_kib(proxy.pid())

    async def hold():
        writers, bad = await idle_connections(proxy.port, IDLE_CONNECTIONS)
        if bad:
            raise RuntimeError(f"{bad} idle-connection requests failed")
        await asyncio.sleep(1)
        after = rss_kib(proxy.pid())
        for w in writers:
            w.close()
        return after

    after = asyncio.run(hold())
    return (after - before) / IDLE_CONNECTIONS


def measure(name, work, apps, certs, seconds):
    """Every figure for one proxy, one round. A scenario that fails is
    reported and left out; the others still run."""
    res = {}

    def attempt(what, step):
        try:
            step()
        except (RuntimeError, OSError, subprocess.SubprocessError, AttributeError) as err:
            log(f"  {name}: {what} failed: {err}")

    def hs(key, proxy, mode):
        res[key], res[f"{key}_per_cpu"] = handshakes(proxy, seconds, mode)

    proxy = Proxy(name, work, apps, certs["ec"])
    try:
        attempt("idle connections", lambda: res.update(idle_kib=idle_rss(proxy)))
        attempt("keep-alive", lambda: res.update(keep_alive(proxy, seconds)))
        attempt("fixed rate", lambda: res.update(fixed_rate(proxy, seconds, work)))
        attempt("1 MiB responses", lambda: res.update(big_responses(proxy, seconds)))
        attempt("full handshakes", lambda: hs("hs_ec", proxy, "new"))
        attempt("resumed handshakes", lambda: hs("hs_resumed", proxy, "reuse"))
    finally:
        proxy.close()
    proxy = Proxy(name, work, apps, certs["rsa"])
    try:
        attempt("RSA handshakes", lambda: hs("hs_rsa", proxy, "new"))
    finally:
        proxy.close()
    return res


def app_baseline(apps, seconds):
    """The app servers loaded directly, as the proxies load them."""
    procs = [p for p in STARTED if p.args[-1] in {str(a) for a in apps}]
    cpu0 = sum(cpu_seconds(p.pid) for p in procs)
    t0 = time.monotonic()
    r = wrk(f"http://127.0.0.1:{apps[0]}/", 64, seconds)
    wall = time.monotonic() - t0
    cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu0
    return {"rps": r["requests"] / wall, "per_cpu": r["requests"] / cpu}


# ── the table ───────────────────────────────────────────────────────────

# key, label, unit, higher is better, target: (kind, factor)
ROWS = [
    ("ka_rps", "keep-alive requests/s (wall)", "req/s", True, None),
    ("ka_per_cpu", "keep-alive requests per proxy CPU-s", "req", True, ("best", 1.25)),
    ("ka_p50_ms", "keep-alive latency p50", "ms", False, None),
    ("ka_p99_ms", "keep-alive latency p99", "ms", False, None),
    ("hs_ec", "full TLS 1.3 handshakes/s, ECDSA (wall)", "hs/s", True, None),
    ("hs_ec_per_cpu", "full TLS 1.3 ECDSA handshakes per proxy CPU-s", "hs", True, ("best", 2.0)),
    ("hs_rsa", "full TLS 1.3 handshakes/s, RSA-2048 (wall)", "hs/s", True, None),
    ("hs_rsa_per_cpu", "full TLS 1.3 RSA handshakes per proxy CPU-s", "hs", True, None),
    ("hs_resumed", "resumed TLS 1.3 handshakes/s (wall)", "hs/s", True, None),
    ("hs_resumed_per_cpu", "resumed TLS 1.3 handshakes per proxy CPU-s", "hs", True, None),
    ("fr_rps", f"rate reached in the {FIXED_RATE} req/s run", "req/s", True, None),
    ("fr_p50_ms", f"p50 at {FIXED_RATE} req/s", "ms", False, None),
    ("fr_p99_ms", f"p99 at {FIXED_RATE} req/s", "ms", False, ("haproxy", 1.0)),
    ("fr_cpu_pct", f"proxy CPU at {FIXED_RATE} req/s", "%", False, None),
    ("idle_kib", "RSS per idle TLS connection", "KiB", False, ("best", 0.5)),
    ("mib_s", "1 MiB responses (wall)", "MiB/s", True, None),
    ("mib_per_cpu", "1 MiB responses per proxy CPU-s", "MiB", True, ("best", 1.2)),
]


def medians(rounds, name):
    keys = {k for r in rounds for k in r.get(name, {})}
    return {k: statistics.median(r[name][k] for r in rounds if k in r.get(name, {})) for k in keys}


def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def verdict(key, higher, target, med):
    """'met'/'NOT met' for a row with a target, with the factor reached."""
    b = med.get("berth", {}).get(key)
    others = [med.get(p, {}).get(key) for p in ("haproxy", "nginx")]
    others = [o for o in others if o is not None]
    if target is None or b is None or not others:
        return ""
    kind, factor = target
    if key.startswith("fr_"):
        reached = [med.get(p, {}).get("fr_rps", 0) for p in ("berth", kind if kind != "best" else "haproxy")]
        if min(reached) < 0.95 * FIXED_RATE:
            return f"not measured: the run reached {min(reached):,.0f} req/s, not {FIXED_RATE:,}"
    ref = med["haproxy"].get(key) if kind == "haproxy" else (max(others) if higher else min(others))
    if ref is None or ref == 0:
        return ""
    got = b / ref
    ok = got >= factor if higher else got <= factor
    sign = "≥" if higher else "≤"
    return f"{'met' if ok else 'NOT met'}: {got:.2f}× (target {sign} {factor}×)"


def table(med, present):
    head = ["figure", "unit", *present]
    if "berth" in present:
        head += [f"berth/{p}" for p in present if p != "berth"]
    head.append("target")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label, unit, higher, target in ROWS:
        vals = [med.get(p, {}).get(key) for p in present]
        row = [label, unit, *map(fmt, vals)]
        if "berth" in present:
            b = med["berth"].get(key)
            for p in present:
                if p != "berth":
                    o = med[p].get(key)
                    row.append(f"{b / o:.2f}" if b is not None and o else "-")
        row.append(verdict(key, higher, target, med) if "berth" in present else "")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def svg_chart(med, path):
    """A bar chart of berth's advantage over each proxy (>1 = berth better:
    ratio for higher-is-better figures, inverse ratio for the others)."""
    rows = [(label, higher, key, target) for key, label, _, higher, target in ROWS
            if key.endswith(("per_cpu", "_kib")) or key in ("fr_p99_ms", "ka_p99_ms")]
    others = [p for p in ("haproxy", "nginx") if p in med]
    colours = {"haproxy": "#2b6cb0", "nginx": "#2f855a"}
    bar, gap, left, width = 14, 16, 330, 420
    top = 50
    height = top + len(rows) * (bar * len(others) + gap) + 50
    vals = []
    for label, higher, key, _ in rows:
        b = med["berth"].get(key)
        for p in others:
            o = med[p].get(key)
            vals.append((b / o if higher else o / b) if b and o else 0)
    scale = max([2.5, *vals]) * 1.05
    x = lambda v: left + width * v / scale  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 80}" height="{height}" '
           'font-family="sans-serif" font-size="12">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="10" y="20" font-size="14" font-weight="bold">berth vs HAProxy and nginx: '
           'how many times better (medians; &gt; 1 = berth better)</text>']
    for i, p in enumerate(others):
        out.append(f'<rect x="{left + i * 120}" y="30" width="10" height="10" fill="{colours[p]}"/>'
                   f'<text x="{left + i * 120 + 14}" y="39">berth vs {p}</text>')
    y = top
    i = 0
    for label, higher, key, target in rows:
        out.append(f'<text x="{left - 8}" y="{y + bar * len(others) / 2 + 4}" '
                   f'text-anchor="end">{label}</text>')
        for p in others:
            v = vals[i]
            i += 1
            out.append(f'<rect x="{left}" y="{y}" width="{max(0, x(v) - left):.1f}" height="{bar - 2}" '
                       f'fill="{colours[p]}"/><text x="{x(v) + 4:.1f}" y="{y + bar - 4}">{v:.2f}×</text>')
            y += bar
        if target and target[0] == "best":
            t = target[1] if higher else 1 / target[1]
            ty = y - bar * len(others)
            out.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{ty - 2}" y2="{y}" stroke="#c53030" '
                       'stroke-width="2" stroke-dasharray="3,2"/>')
        y += gap
    out.append(f'<line x1="{x(1):.1f}" x2="{x(1):.1f}" y1="{top - 4}" y2="{y - gap + 4}" stroke="black"/>')
    out.append(f'<text x="10" y="{height - 15}" fill="#c53030">dashed red: the target</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


# ── main ────────────────────────────────────────────────────────────────


def versions():
    def first(cmd):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (p.stdout + p.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"
    return {
        "berth": first([os.environ["BENCH_BERTH"], "--version"]),
        "haproxy": first(["haproxy", "-v"]),
        "nginx": first(["nginx", "-v"]),
        "wrk": first(["wrk", "-v"]),
        "h2load": first(["h2load", "--version"]),
        "openssl": first(["openssl", "version"]),
        "kernel": first(["uname", "-sr"]),
        "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                     if l.startswith("model name")), "?"),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10, help="length of each load run")
    parser.add_argument("--proxies", default=",".join(PROXIES))
    parser.add_argument("--out", default=str(ROOT / "bench-results"))
    args = parser.parse_args()
    present = [p for p in args.proxies.split(",") if p]
    if not set(present) <= set(PROXIES):
        parser.error(f"--proxies: choose among {', '.join(PROXIES)}")
    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    os.sched_setaffinity(0, {int(LOAD_CPU)})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="berth-bench."))
    try:
        certs = make_certs(work)
        apps = [free_port(), free_port()]
        for port in apps:
            proc = start([os.environ["BENCH_APP"], str(port)], work / f"app-{port}.log")
            wait_port(port, proc)
        load0 = os.getloadavg()
        base = app_baseline(apps, min(args.seconds, 5))
        log(f"app server alone: {base['rps']:,.0f} req/s, {base['per_cpu']:,.0f} req per app CPU-s")
        rounds = []
        for n in range(args.rounds):
            results = {}
            for name in present:
                log(f"round {n + 1}/{args.rounds}: {name}")
                results[name] = measure(name, work, apps, certs, args.seconds)
                log("  " + json.dumps({k: round(v, 2) for k, v in sorted(results[name].items())}))
            results["loadavg"] = os.getloadavg()
            rounds.append(results)
        load1 = os.getloadavg()
    finally:
        stop_all()
        shutil.rmtree(work, ignore_errors=True)
    med = {p: medians(rounds, p) for p in present}
    text = table(med, present)
    print(text)
    doc = {"versions": versions(), "args": vars(args), "app_baseline": base,
           "loadavg_before": load0, "loadavg_after": load1, "rounds": rounds, "medians": med}
    (out / "results.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / "table.md").write_text(text + "\n")
    if "berth" in present and len(present) > 1:
        svg_chart(med, out / "ratios.svg")
    log(f"results in {out}/ (results.json, table.md{', ratios.svg' if len(present) > 1 else ''})")


if __name__ == "__main__":
    main()
