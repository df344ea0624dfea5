"""What acting as one costs: a forwarded write and a gathered status page, beside the direct ones, in one run.

Three real shards of one tracker of 9,000 gates (about 3,000 each; file gates at 15 s and one
manual gate per step) on 127.0.0.10-12, and one unsharded exporter of the same tracker.
Measured, as medians of alternating requests:
- an attestation POSTed to the owning shard, against one POSTed to another shard (handed on);
- /api/progress/status and / of the single exporter, against a shard's (gathered from all three):
  cold (the 2 s cache expired: every peer asked) and warm (from the cache).

    .venv/bin/python bench/shard_latency.py [--gates-per-shard 3000] [--rounds 15]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exporter.engine.runtime import load_configs  # noqa: E402
from exporter.engine.sharding import owner_of  # noqa: E402

PER_STEP = 10


def write_tracker(path: Path, gates: int) -> None:
    lines = ["tracker: bench", "defaults: {interval: 15s, timeout: 5s}", "phases:"]
    steps = gates // PER_STEP
    for p in range(10):
        lines += [f"  - id: p{p}", "    steps:"]
        for s in range(steps // 10):
            lines += [f"      - id: s{p}-{s}", "        gates:",
                      f"          - {{id: m{p}-{s}, tier: critical, manual: {{max_age: 1d}}}}"]
            lines += [f"          - {{id: f{p}-{s}-{g}, file: {{path: /etc/hostname}}}}" for g in range(PER_STEP - 1)]
    path.write_text("\n".join(lines) + "\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.10", 0))
        return int(s.getsockname()[1])


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as fh:
        return subprocess.Popen([sys.executable, "-m", "exporter", "serve", "--log.level", "warn", *args],
                                stdout=fh, stderr=subprocess.STDOUT, cwd=str(ROOT))


def request(host: str, port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes, float]:
    conn = http.client.HTTPConnection(host, port, timeout=60)
    t0 = time.perf_counter()
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
    resp = conn.getresponse()
    data = resp.read()
    elapsed = time.perf_counter() - t0
    conn.close()
    return resp.status, data, elapsed


def wait_ready(host: str, port: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if request(host, port, "GET", "/-/ready")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{host}:{port} not ready within {timeout:g}s")


def ms(values: list[float]) -> str:
    return f"{1000 * statistics.median(values):7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gates-per-shard", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=15)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        config = tmp / "bench.yml"
        write_tracker(config, 3 * opts.gates_per_shard)
        (tmp / "secret").write_text(os.urandom(24).hex())
        whole = load_configs([str(config)])[0]
        port = free_port()
        procs = [start(["--config.file", str(config), "--web.listen-address", f"127.0.0.1{i}:{port}",
                        "--storage.path", str(tmp / f"s{i}.db"), "--shard.index", str(i), "--shard.count", "3",
                        "--shard.peers", f"http://127.0.0.1{{index}}:{port}",
                        "--shard.secret-file", str(tmp / "secret")], tmp / f"s{i}.log") for i in range(3)]
        procs.append(start(["--config.file", str(config), "--web.listen-address", f"127.0.0.13:{port}",
                            "--storage.path", str(tmp / "single.db")], tmp / "single.log"))
        try:
            for i in range(4):
                wait_ready(f"127.0.0.1{i}", port)
            time.sleep(3)  # past the first round's burst
            manual = [g.id for g in whole.gates if g.kind == "manual"]
            mine = [g for g in manual if owner_of(whole, g, 3) == 0]
            body = json.dumps({"value": True, "by": "bench"}).encode()
            direct, forwarded = [], []
            for n in range(opts.rounds):
                gate = mine[n % len(mine)]
                for host, out in (("127.0.0.10", direct), ("127.0.0.11", forwarded)):
                    status, answer, elapsed = request(host, port, "POST", f"/api/gates/{gate}/attestations", body)
                    if status != 201:
                        raise SystemExit(f"attestation via {host}: {status} {answer[:200]!r}")
                    out.append(elapsed)
            reads: dict[tuple[str, str], list[float]] = {}
            sizes: dict[str, int] = {}
            for _ in range(opts.rounds):
                time.sleep(2.1)  # the gathering cache (2 s) has expired: the first read asks every peer
                for path in ("/api/progress/status", "/"):
                    for label, host in (("cold", "127.0.0.10"), ("warm", "127.0.0.10"), ("single", "127.0.0.13")):
                        status, data, elapsed = request(host, port, "GET", path)
                        if status != 200:
                            raise SystemExit(f"GET {path} from {host}: {status}")
                        if path.startswith("/api") and label != "single":
                            doc = json.loads(data)
                            if doc.get("unknown_gates"):
                                raise SystemExit(f"{doc['unknown_gates']} gates unknown: a shard did not answer")
                            if len(doc["gates"]) != len(whole.gates):
                                raise SystemExit("the gathered document does not hold every gate")
                        reads.setdefault((path, label), []).append(elapsed)
                        sizes[path] = len(data)
            gates = len(whole.gates)
            print(f"3 shards, {gates:,} gates ({opts.gates_per_shard:,} a shard), medians of {opts.rounds} rounds")
            print(f"attestation to the owning shard        {ms(direct)}")
            added = ms([f - d for f, d in zip(forwarded, direct, strict=True)]).strip()
            print(f"attestation via another shard          {ms(forwarded)}   (+{added}, median of pairs)")
            for path in ("/api/progress/status", "/"):
                single, cold, warm = (reads[(path, k)] for k in ("single", "cold", "warm"))
                print(f"{path:<22} single exporter  {ms(single)}   shard, gathered cold {ms(cold)}   "
                      f"warm (cached) {ms(warm)}   ({sizes[path] / 1e6:.1f} MB)")
            rss = []
            for p in procs[:3]:
                with open(f"/proc/{p.pid}/status") as fh:
                    rss.append(int(re.search(r"VmRSS:\s+(\d+)", fh.read()).group(1)) // 1024)  # type: ignore[union-attr]
            print(f"shards' RSS: {', '.join(f'{r} MB' for r in rss)}")
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()


if __name__ == "__main__":
    main()
