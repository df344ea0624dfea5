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
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("serve_flags", nargs="*", help="extra flags for qualitygate serve (after --)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="qg-slow-"))
    (work / "gates.yml").write_text(CONFIG)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "exporter", "serve", "--config.file", str(work / "gates.yml"),
                             "--web.listen-address", f"127.0.0.1:{port}", "--storage.path", str(work / "state.db"),
                             "--log.level", "warn", *args.serve_flags], cwd=str(ROOT))
    try:
        for _ in range(150):
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
        else:
            print("the exporter did not become ready", file=sys.stderr)
            return 1

        def fds() -> int:
            return len(os.listdir(f"/proc/{proc.pid}/fd"))

        base = fds()
        started = time.monotonic()
        conns = []
        for i in range(args.connections):
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
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
            t0 = time.monotonic()
            r = requests.get(f"{url}/metrics", timeout=10)
            latencies.append(time.monotonic() - t0)
            assert r.status_code == 200
            if peak >= args.connections * 0.9 and extra <= 1:
                closed_after = time.monotonic() - started
                break
            time.sleep(0.1)
        stop.set()
        counters = [line for line in requests.get(f"{url}/metrics", timeout=10).text.splitlines()
                    if line.startswith("qualitygate_http_read_timeouts_total{")]
        latencies.sort()
        print(f"connections {args.connections}, serve flags {args.serve_flags or '(defaults)'}")
        print(f"descriptors: baseline {base}, peak +{peak}, now +{fds() - base}")
        print("all closed by the server after " + (f"{closed_after:.1f} s, clients still sending"
                                                   if closed_after is not None
                                                   else f"- (not within {args.seconds:g} s)"))
        print(f"/metrics during the run: {len(latencies)} scrapes, p50 {latencies[len(latencies) // 2] * 1000:.0f} ms,"
              f" max {latencies[-1] * 1000:.0f} ms")
        print("\n".join(counters))
        for c in conns:
            c.close()
        return 0
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    sys.exit(main())
