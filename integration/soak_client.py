#!/usr/bin/env python3
"""HTTP/1.1 traffic for integration/soak.sh (stdlib only).

    soak_client.py PORT CA WORKERS CONTROL_DIR OUT STABLE

WORKERS threads talk to berth's TLS listener on 127.0.0.1:PORT (SNI a.test,
trusting CA) until CONTROL_DIR/stop exists; while CONTROL_DIR/pause exists
they stop sending (finishing the request at hand) and CONTROL_DIR/paused-N
says worker N is idle. Half keep their connection alive, half open a new
one per request. Each worker loops over: a GET, a 256 KiB upload whose
sha256 the app echoes, a 1 MiB download checked against the app's
deterministic content, all carrying the worker's cookie tie (cookie BERTH,
taken from berth's Set-Cookie).

STABLE is a comma-separated list of servers no fault touches. A request
that carried a tie to one of them must succeed (200, right content) and be
served by that server: anything else is a "must" failure. Other requests
(no tie yet, or tied to a server being faulted) are counted, with their
statuses. On stop, writes a JSON summary to OUT.
"""

import collections
import hashlib
import http.client
import json
import os
import socket
import ssl
import sys
import threading
import time
from http.cookies import SimpleCookie

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from app_server import download_sha256  # noqa: E402

DOWNLOAD = 1024 * 1024
UPLOAD = os.urandom(256 * 1024)
UPLOAD_SHA = hashlib.sha256(UPLOAD).hexdigest()
DOWNLOAD_SHA = download_sha256(DOWNLOAD)

lock = threading.Lock()
counts = collections.Counter()  # (kind, outcome) -> n
must_failures = []  # the first few, for the report


class TlsConnection(http.client.HTTPConnection):
    """HTTPS to 127.0.0.1:PORT with SNI (and Host) a.test."""

    def __init__(self, port, context):
        super().__init__("a.test", port, timeout=30)
        self.context = context

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self.context.wrap_socket(sock, server_hostname="a.test")


class Worker:
    def __init__(self, n, port, context, control, stable, keep_alive):
        self.n, self.port, self.context = n, port, context
        self.control, self.stable, self.keep_alive = control, stable, keep_alive
        self.cookie = None  # the route berth tied this worker to
        self.conn = None

    def connection(self):
        if self.conn is None:
            self.conn = TlsConnection(self.port, self.context)
        return self.conn

    def request(self, kind, method, path, body=None):
        tie = self.cookie
        must = tie in self.stable
        headers = {"Cookie": f"BERTH={tie}"} if tie else {}
        if body is not None:
            headers["Content-Type"] = "application/octet-stream"
        outcome, served = None, None
        try:
            conn = self.connection()
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            served = resp.getheader("X-Served-By")
            for value in resp.headers.get_all("Set-Cookie") or []:
                jar = SimpleCookie(value)
                if "BERTH" in jar:
                    self.cookie = jar["BERTH"].value
            if resp.status != 200:
                outcome = f"status {resp.status}"
            elif kind == "upload" and json.loads(data).get("sha256") != UPLOAD_SHA:
                outcome = "upload digest mismatch"
            elif kind == "download" and hashlib.sha256(data).hexdigest() != DOWNLOAD_SHA:
                outcome = f"download digest mismatch ({len(data)} bytes)"
            elif must and served != tie:
                outcome = f"tied to {tie}, served by {served}"
            else:
                outcome = "ok"
            if not self.keep_alive or resp.will_close:
                self.close()
        except (OSError, http.client.HTTPException, ValueError) as err:
            outcome = f"error {type(err).__name__}"
            self.close()
        with lock:
            counts[(kind, "must" if must else "other", outcome)] += 1
            if must and outcome != "ok" and len(must_failures) < 20:
                must_failures.append(f"{time.strftime('%H:%M:%S')} {kind} {path} {outcome}")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def run(self):
        paused = os.path.join(self.control, f"paused-{self.n}")
        while not os.path.exists(os.path.join(self.control, "stop")):
            if os.path.exists(os.path.join(self.control, "pause")):
                self.close()
                open(paused, "w").close()
                time.sleep(0.1)
                continue
            if os.path.exists(paused):
                os.unlink(paused)
            self.request("get", "GET", f"/page?w={self.n}")
            self.request("upload", "POST", "/upload", UPLOAD)
            self.request("download", "GET", f"/download?bytes={DOWNLOAD}")
        self.close()


def main(argv):
    if len(argv) != 7:
        print(__doc__, file=sys.stderr)
        return 2
    port, ca, workers, control, out = int(argv[1]), argv[2], int(argv[3]), argv[4], argv[5]
    stable = set(argv[6].split(","))
    context = ssl.create_default_context(cafile=ca)
    context.set_alpn_protocols(["http/1.1"])
    threads = [
        threading.Thread(target=Worker(n, port, context, control, stable, n % 2 == 0).run)
        for n in range(workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    summary = {
        "counts": [
            {"kind": k, "class": c, "outcome": o, "n": n} for (k, c, o), n in sorted(counts.items())
        ],
        "must_failures": must_failures,
    }
    with open(out, "w") as f:
        json.dump(summary, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
