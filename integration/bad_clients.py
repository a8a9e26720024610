#!/usr/bin/env python3
"""Clients that misbehave, for integration/soak.sh (stdlib only).

    bad_clients.py malformed PORT   smuggling-style heads (SPEC §4) to a
                                    plain listener with proxy_protocol on,
                                    each behind a valid PROXY v1 header:
                                    each must get a 400 and a closed
                                    connection
    bad_clients.py proxyless PORT   plain requests without the PROXY header
                                    to that listener: each must be closed
                                    without a byte of response

Prints "ok N" when all N behaved as berth should, else one line per case
that did not, and exits 1.
"""

import socket
import sys

HEADS = {
    "CL and TE": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two CLs": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "signed CL": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
    "TE gzip": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n",
    "h2c upgrade": b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"
    b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
    "NUL in value": b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n",
}


def exchange(port, data):
    """Sends data, returns everything berth sent until it closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def malformed(port):
    problems = []
    proxy = f"PROXY TCP4 192.0.2.7 127.0.0.1 40000 {port}\r\n".encode()
    for name, head in HEADS.items():
        try:
            answer = exchange(port, proxy + head)
        except OSError as err:
            problems.append(f"{name}: {err}")
            continue
        # Exactly one response: a 400, then the close (recv returned b"").
        if not answer.startswith(b"HTTP/1.1 400 ") or answer.count(b"HTTP/1.") != 1:
            problems.append(f"{name}: {answer[:60]!r}")
    return len(HEADS), problems


def proxyless(port):
    problems = []
    count = 5
    for _ in range(count):
        try:
            answer = exchange(port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        except ConnectionResetError:
            answer = b""  # closed: what berth should do
        except OSError as err:
            problems.append(f"proxyless: {err}")
            continue
        if answer:
            problems.append(f"proxyless: answered {answer[:60]!r}")
    return count, problems


def main(argv):
    if len(argv) != 3 or argv[1] not in ("malformed", "proxyless"):
        print(__doc__, file=sys.stderr)
        return 2
    count, problems = (malformed if argv[1] == "malformed" else proxyless)(int(argv[2]))
    for problem in problems:
        print(problem)
    if not problems:
        print(f"ok {count}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
