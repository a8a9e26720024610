#!/usr/bin/env python3
"""A small app server for berth's integration scripts (stdlib only).

    app_server.py NAME PORT          serve on 127.0.0.1:PORT as NAME
    app_server.py --download-sha N   print the sha256 of /download?bytes=N

Every response carries `X-Served-By: NAME`. Paths:

    /download?bytes=N   N bytes of deterministic content, streamed in chunks
    /code/NNN           an empty response with status NNN (204, 404, ...); to a
                        POST or PUT, sent before the body is read
    /health             200 ok
    POST/PUT anything   the body is streamed through sha256; the reply is
                        JSON {"server", "sha256", "length", ...}
    anything else       JSON: which server answered, the path it got, and
                        the Host and X-Forwarded-* headers it saw
"""

import hashlib
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

CHUNK = 64 * 1024


def download_chunks(total):
    """Deterministic content: block i is sha256(str(i)) repeated to 64 KiB."""
    index = 0
    while total > 0:
        seed = hashlib.sha256(str(index).encode()).digest()
        block = (seed * (CHUNK // len(seed)))[: min(CHUNK, total)]
        yield block
        total -= len(block)
        index += 1


def download_sha256(total):
    digest = hashlib.sha256()
    for block in download_chunks(total):
        digest.update(block)
    return digest.hexdigest()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as berth pools connections
    server_version = "integ-app"

    def log_message(self, fmt, *args):  # quiet: the scripts read berth's log
        pass

    def send_head(self, status, length, content_type="application/json"):
        self.send_response(status)
        self.send_header("X-Served-By", self.server.name)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def reply_json(self, status, doc, head_only=False):
        body = (json.dumps(doc, sort_keys=True) + "\n").encode()
        self.send_head(status, len(body))
        if not head_only:
            self.wfile.write(body)

    def echo(self):
        h = self.headers
        return {
            "server": self.server.name,
            "method": self.command,
            "path": self.path,
            "host": h.get("Host"),
            "x_forwarded_for": h.get("X-Forwarded-For"),
            "x_forwarded_proto": h.get("X-Forwarded-Proto"),
            "x_forwarded_port": h.get("X-Forwarded-Port"),
            "headers": {k.lower(): v for k, v in h.items()},
        }

    def read_body(self, digest):
        """Streams the request body into digest; returns its length."""
        if h := self.headers.get("Content-Length"):
            left, length = int(h), 0
            while left > 0:
                data = self.rfile.read(min(CHUNK, left))
                if not data:
                    raise ConnectionError("body cut short")
                digest.update(data)
                left -= len(data)
                length += len(data)
            return length
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            length = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return length
                left = size
                while left > 0:
                    data = self.rfile.read(min(CHUNK, left))
                    if not data:
                        raise ConnectionError("chunk cut short")
                    digest.update(data)
                    left -= len(data)
                length += size
                self.rfile.readline()  # CRLF after the chunk
        return 0

    def handle_get(self, head_only):
        url = urlsplit(self.path)
        if url.path == "/download":
            total = int(parse_qs(url.query).get("bytes", ["0"])[0])
            self.send_head(200, total, "application/octet-stream")
            if not head_only:
                for block in download_chunks(total):
                    self.wfile.write(block)
        elif url.path.startswith("/code/"):
            status = int(url.path[len("/code/"):])
            self.send_response(status)
            self.send_header("X-Served-By", self.server.name)
            if status not in (204, 304):
                self.send_header("Content-Length", "0")
            self.end_headers()
        elif url.path == "/health":
            self.send_head(200, 3, "text/plain")
            if not head_only:
                self.wfile.write(b"ok\n")
        else:
            self.reply_json(200, self.echo(), head_only)

    def do_GET(self):
        self.handle_get(False)

    def do_HEAD(self):
        self.handle_get(True)

    def do_POST(self):
        if self.path.startswith("/code/"):
            # An early answer, as to a refused upload: sent before the body
            # is read.
            body = b"refused before reading\n"
            self.send_head(int(self.path[len("/code/"):]), len(body), "text/plain")
            self.wfile.write(body)
            self.wfile.flush()
            self.read_body(hashlib.sha256())  # then drained, for keep-alive
            return
        digest = hashlib.sha256()
        length = self.read_body(digest)
        doc = self.echo()
        doc.update(sha256=digest.hexdigest(), length=length)
        self.reply_json(200, doc)

    do_PUT = do_POST


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 drops connects under load (the
    # soak's slow-read bursts), which berth then rightly retries elsewhere.
    request_queue_size = 128


def main(argv):
    if len(argv) == 3 and argv[1] == "--download-sha":
        print(download_sha256(int(argv[2])))
        return 0
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    server = Server(("127.0.0.1", int(argv[2])), Handler)
    server.name = argv[1]
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
