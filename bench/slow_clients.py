"""Slow-loris clients against a real `qualitygate serve`: how long they hold connections, and
whether /metrics stays fast meanwhile.

Opens N connections: half send a request head one header line at a time, half send an
attestation's head and then its body one byte at a time, each every 0.3 s, for as long as the
server keeps the connection. Scrapes /metrics every 0.1 s until the server has closed them all
(or `--seconds` pass), then prints the figures and the read-timeout counter.

    .venv/bin/python bench/slow_clients.py [--connections 300] [--seconds 30] [-- SERVE FLAGS...]
    .venv/bin/python bench/slow_clients.py -- --web.read-timeout 0s     # the limit turned off
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import exporter

CONFIG = """\
tracker: slow-clients
phases:
  - id: p
    steps:
      - id: s
        gates:
          - id: alive
            interval: 1s
            timeout: 1s
            command: { argv: ["true"] }
          - id: signoff
            manual: { max_age: 1d }
"""

HEAD = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
BODY = (b"POST /api/gates/signoff/attestations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n{")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("serve_flags", nargs="*", help="extra flags for qualitygate serve (after --)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="qg-slow-") as tmp:
        work = Path(tmp)
        (work / "gates.yml").write_text(CONFIG)
        with exporter(work / "gates.yml", work, *args.serve_flags) as exp:
            def fds() -> int:
                return len(os.listdir(f"/proc/{exp.proc.pid}/fd"))

            base = fds()
            started = time.monotonic()
            conns = []
            for i in range(args.connections):
                c = socket.create_connection(("127.0.0.1", exp.port), timeout=5)
                c.sendall(HEAD if i % 2 else BODY)
                conns.append(c)
            stop = threading.Event()

            def dribble() -> None:
                n = 0
                while not stop.wait(0.3):
                    for i, c in enumerate(conns):
                        with contextlib.suppress(OSError):
                            c.sendall(f"X-Slow-{n}: a\r\n".encode() if i % 2 else b"1")
                    n += 1

            threading.Thread(target=dribble, daemon=True).start()
            peak, latencies, closed_after = 0, [], None
            while time.monotonic() - started < args.seconds:
                extra = fds() - base
                peak = max(peak, extra)
                latencies.append(exp.scrape()[0])
                if peak >= args.connections * 0.9 and extra <= 1:
                    closed_after = time.monotonic() - started
                    break
                time.sleep(0.1)
            stop.set()
            counters = [line for line in exp.metrics_text().splitlines()
                        if line.startswith("qualitygate_http_read_timeouts_total{")]
            latencies.sort()
            print(f"connections {args.connections}, serve flags {args.serve_flags or '(defaults)'}")
            print(f"descriptors: baseline {base}, peak +{peak}, now +{fds() - base}")
            print("all closed by the server after " + (f"{closed_after:.1f} s, clients still sending"
                                                       if closed_after is not None
                                                       else f"- (not within {args.seconds:g} s)"))
            p50, worst = latencies[len(latencies) // 2], latencies[-1]
            print(f"/metrics during the run: {len(latencies)} scrapes, p50 {p50 * 1000:.0f} ms, "
                  f"max {worst * 1000:.0f} ms")
            print("\n".join(counters))
            for c in conns:
                c.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
