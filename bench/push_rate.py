"""Pushed evidence: how many 100 KiB coverage reports one exporter accepts per second, and how long
after a push's 202 the new gate_value is on /metrics.

A real `qualitygate serve` on loopback with a state file (every 202 is a committed SQLite row)
and one push-sourced coverage gate. Cobertura reports of the given size (real <class>/<line>
elements) are generated with distinct line rates.

- rate: CLIENTS threads push on kept-alive connections for SECONDS; accepted pushes per second,
  and the exporter's CPU seconds per push.
- latency: PUSHES pushes one after another; after each 202, /metrics is polled on a kept-alive
  connection until gate_value is the pushed rate; p50/p95/max of that time.

    .venv/bin/python bench/push_rate.py [--kib 100] [--clients 4] [--seconds 10] [--pushes 50]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import cpu_seconds, exporter, machine, percentile

TOKEN = "bench-push-token"
CONFIG = """\
tracker: bench
push_tokens_file: tokens
phases:
  - id: p
    steps:
      - id: s
        gates:
          - id: cov
            interval: 1h
            coverage: {push: {max_age: 1d}}
            expect: ">= 50%"
"""


def cobertura(rate: float, size: int) -> bytes:
    """A Cobertura report of about `size` bytes whose line-rate is `rate`."""
    head = (f'<?xml version="1.0" ?>\n<coverage version="7.4" timestamp="1700000000000" line-rate="{rate:.6f}" '
            f'branch-rate="0" lines-covered="{round(rate * 1e6)}" lines-valid="1000000">\n'
            "<sources><source>/src</source></sources>\n"
            '<packages><package name="app" line-rate="0.9">\n<classes>\n')
    tail = "</classes>\n</package></packages>\n</coverage>\n"
    parts, n, used = [head], 0, len(head) + len(tail)
    while used < size:
        lines = "".join(f'<line number="{i}" hits="{1 if i % 10 else 0}"/>\n' for i in range(1, 41))
        block = (f'<class name="mod{n}.py" filename="app/mod{n}.py" line-rate="0.9" branch-rate="0">'
                 f"<methods/><lines>\n{lines}</lines></class>\n")
        parts.append(block)
        used += len(block)
        n += 1
    parts.append(tail)
    return "".join(parts).encode()


def post(conn: http.client.HTTPConnection, body: bytes) -> int:
    conn.request("POST", "/api/gates/cov/evidence?commit=bench&run_id=", body=body,
                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/xml"})
    resp = conn.getresponse()
    resp.read()
    return resp.status


def rate_phase(port: int, reports: list[bytes], clients: int, seconds: float) -> tuple[int, int, float]:
    """(accepted, refused, elapsed seconds) with `clients` threads pushing for `seconds`."""
    accepted = [0] * clients
    refused = [0] * clients
    stop = time.monotonic() + seconds

    def worker(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        i = k
        while time.monotonic() < stop:
            if post(conn, reports[i % len(reports)]) == 202:
                accepted[k] += 1
            else:
                refused[k] += 1
            i += clients
        conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(accepted), sum(refused), time.monotonic() - t0


def gate_value(conn: http.client.HTTPConnection) -> float | None:
    conn.request("GET", "/metrics")
    resp = conn.getresponse()
    for line in resp.read().decode().splitlines():
        if line.startswith("gate_value{") and 'gate="cov"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def latency_phase(port: int, size: int, pushes: int) -> list[float]:
    """Seconds from each push's 202 to its value on /metrics."""
    push_conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    scrape_conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    out = []
    for i in range(pushes):
        rate = round(0.6 + (i % 37) / 100 + i / 1e5, 6)  # a new value every time
        body = cobertura(rate, size)
        if (status := post(push_conn, body)) != 202:
            raise SystemExit(f"push {i} was refused ({status})")
        t0 = time.perf_counter()
        deadline = t0 + 10
        while abs((gate_value(scrape_conn) or -1.0) - rate) > 1e-9:
            if time.perf_counter() > deadline:
                raise SystemExit(f"push {i}: gate_value did not become {rate} within 10s")
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kib", type=int, default=100, help="report size in KiB (default 100)")
    ap.add_argument("--clients", type=int, default=4, help="concurrent pushers in the rate phase (default 4)")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the rate phase (default 10)")
    ap.add_argument("--pushes", type=int, default=50, help="pushes in the latency phase (default 50)")
    args = ap.parse_args()
    size = args.kib * 1024
    with tempfile.TemporaryDirectory(prefix="qg-push-rate-") as tmp:
        work = Path(tmp)
        (work / "tokens").write_text(TOKEN + "\n")
        (work / "gates.yml").write_text(CONFIG)
        reports = [cobertura(0.5 + i / 100, size) for i in range(20)]
        with exporter(work / "gates.yml", work) as exp:
            pid = exp.proc.pid
            post(http.client.HTTPConnection("127.0.0.1", exp.port, timeout=60), reports[0])  # warm up
            cpu0 = cpu_seconds(pid)
            accepted, refused, elapsed = rate_phase(exp.port, reports, args.clients, args.seconds)
            cpu = cpu_seconds(pid) - cpu0
            lat = latency_phase(exp.port, size, args.pushes)
            stored = (work / "state.db").stat().st_size
    result = {
        "report_bytes": len(reports[0]), "clients": args.clients, "seconds": round(elapsed, 2),
        "accepted": accepted, "refused": refused, "pushes_per_second": round(accepted / elapsed, 1),
        "exporter_cpu_ms_per_push": round(cpu / max(1, accepted) * 1000, 2),
        "latency_pushes": len(lat), "p50_ms": round(percentile(lat, 0.5) * 1000, 2),
        "p95_ms": round(percentile(lat, 0.95) * 1000, 2), "max_ms": round(max(lat) * 1000, 2),
        "mean_ms": round(statistics.fmean(lat) * 1000, 2), "state_file_bytes": stored, "machine": machine(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
