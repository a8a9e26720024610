#!/usr/bin/env python3
"""Many idle connections to berth, to see how long it keeps them (stdlib only).

    idle_clients.py PORT CA NAME SILENT TLS_IDLE [DEADLINE]

Opens TLS_IDLE connections that complete a TLS handshake for NAME
(trusting CA) and then send nothing, then SILENT plain TCP connections that
send nothing (not even a TLS ClientHello). Prints "open" once all are open
(the caller's readiness signal), then waits until berth has closed every
one, or DEADLINE seconds (default 60) have passed, and prints one line:

    silent=N closed_silent=N min_silent=S max_silent=S tls=N closed_tls=N min_tls=S max_tls=S

in seconds: min_* is the shortest time from a connect to its close, max_*
the longest from a connection's open (TCP, or TLS handshake done) to its
close. With many connections at once the client itself lags: berth's
timer starts after the connect began and before the open was seen.
"""

import asyncio
import ssl
import sys
import time


async def hold(port, context, name, opened):
    """Opens one connection and returns (seconds from connect to close,
    seconds from open to close), or None if it failed to open or was still
    open at the deadline."""
    connect = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname=name if context else None
        )
    except OSError:
        opened.append(False)
        return None
    opened.append(True)
    began = time.monotonic()
    try:
        while await reader.read(4096):
            pass
    except (OSError, ssl.SSLError):
        pass  # a reset or a TLS close without close_notify: closed all the same
    writer.close()
    closed = time.monotonic()
    return closed - connect, closed - began


def span(name, times):
    low = min((t[0] for t in times), default=0)
    high = max((t[1] for t in times), default=0)
    return f"min_{name}={low:.2f} max_{name}={high:.2f}"


async def main(argv):
    if len(argv) not in (6, 7):
        print(__doc__, file=sys.stderr)
        return 2
    port, ca, name = int(argv[1]), argv[2], argv[3]
    silent, tls = int(argv[4]), int(argv[5])
    deadline = float(argv[6]) if len(argv) == 7 else 60.0
    context = ssl.create_default_context(cafile=ca)
    opened = []
    # The TLS ones first: their handshakes keep this client busy, which
    # would make it late to see the silent ones closed.
    tasks = [asyncio.ensure_future(hold(port, context, name, opened)) for _ in range(tls)]
    while len(opened) < tls:
        await asyncio.sleep(0.01)
    tasks += [asyncio.ensure_future(hold(port, None, name, opened)) for _ in range(silent)]
    while len(opened) < len(tasks):
        await asyncio.sleep(0.01)
    print("open" if all(opened) else f"only {sum(opened)} of {len(tasks)} opened", flush=True)
    done, _ = await asyncio.wait(tasks, timeout=deadline)
    times = [t.result() if t in done else None for t in tasks]
    silent_times = [t for t in times[tls:] if t is not None]
    tls_times = [t for t in times[:tls] if t is not None]
    print(
        f"silent={silent} closed_silent={len(silent_times)} {span('silent', silent_times)} "
        f"tls={tls} closed_tls={len(tls_times)} {span('tls', tls_times)}",
        flush=True,
    )
    for task in tasks:
        task.cancel()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv)))
