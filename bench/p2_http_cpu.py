"""P2: CPU per HTTP gate evaluation, against blackbox_exporter and a bare aiohttp loop.

All three hit the same local nginx at the same rate, each with a fresh connection per request:
- blackbox_exporter (Debian's prometheus-blackbox-exporter) driven the way Prometheus drives it,
  one `GET /probe?module=http_2xx&target=URL` per probe, 16 in flight, over kept-alive
  connections; its CPU (utime + stime of the process, /proc/PID/stat) over the window / probes;
- a bare aiohttp loop (bench/loadgen.py in its own process, force_close, 16 in flight): its
  own CPU over the window / requests, the floor of doing this in Python;
- ours: `qualitygate serve` with N http gates at interval I (N / I = the rate), everything on:
  scheduler, evaluation, state, exposition, storage; its CPU over the window / evaluations.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from bench import gen
from bench.loadgen import paced
from bench.report import Row
from bench.support import (
    PYTHON,
    ROOT,
    BenchError,
    cpu_seconds,
    exporter,
    free_port,
    http_status,
    need,
    nginx,
    process,
    wait_for,
)
from exporter.engine.scheduler import DISPATCH_TICK

BLACKBOX_CONFIG = """\
modules:
  http_2xx:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
"""


def blackbox(workdir: Path, target: str, rate: float, seconds: float) -> dict[str, float]:
    """CPU per probe of blackbox_exporter driven at `rate` probes/s, 16 concurrent."""
    binary = need("prometheus-blackbox-exporter")
    conf = workdir / "blackbox.yml"
    conf.write_text(BLACKBOX_CONFIG)
    port = free_port()
    argv = [binary, f"--config.file={conf}", f"--web.listen-address=127.0.0.1:{port}"]
    with process(argv, workdir, "blackbox") as proc:
        healthy = f"http://127.0.0.1:{port}/-/healthy"
        wait_for(lambda: proc.alive() and http_status(healthy) == 200, 15, "blackbox_exporter")
        cpu: dict[str, float] = {}
        url = f"http://127.0.0.1:{port}/probe?module=http_2xx&target={quote(target, safe='')}"
        result = asyncio.run(paced(url, rate, seconds, 16, fresh=False, expect="probe_success 1", warmup=1.0,
                                   window=lambda edge: cpu.__setitem__(edge, cpu_seconds(proc.pid))))
    result["server_cpu"] = cpu["end"] - cpu["start"]
    return result


def bare(target: str, rate: float, seconds: float, tick: float = 0.0) -> dict[str, float]:
    """CPU per request of a bare aiohttp fresh-connection loop in its own process."""
    out = subprocess.run([PYTHON, "-m", "bench.loadgen", target, "--rate", str(rate), "--seconds", str(seconds),
                          "--concurrency", "16", "--fresh", "--expect", "ok", "--tick", str(tick)], cwd=ROOT,
                         capture_output=True, text=True, timeout=seconds + 60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def ours(workdir: Path, target: str, rate: float, seconds: float, interval: float) -> dict[str, float]:
    """CPU per evaluation of `qualitygate serve` evaluating http gates at `rate` per second."""
    gates = int(rate * interval)
    workdir.mkdir(exist_ok=True)
    fresh = workdir / "fresh.txt"
    fresh.write_text("x\n")
    config = gen.write(workdir / "p2.yml", gen.mixed_config(gates, target, str(fresh), http_share=1.0,
                                                            interval=f"{interval:g}s"))
    with exporter(config, workdir) as exp:
        exp.wait_evaluated(60, interval=0.2)
        # Past the compressed first round, into the steady interval (second runs begin one interval in).
        time.sleep(max(0.0, exp.started + exp.ready_after + interval - time.monotonic()))
        before = exp.samples("gate_evaluations_total")["gate_evaluations_total"]
        cpu0, t0 = cpu_seconds(exp.proc.pid), time.monotonic()
        time.sleep(seconds)
        cpu1, t1 = cpu_seconds(exp.proc.pid), time.monotonic()
        after = exp.samples("gate_evaluations_total", "gate_passed")
        failed = gates - after["gate_passed"]
    evaluations = after["gate_evaluations_total"] - before
    if failed:
        raise BenchError(f"{failed:g} of {gates} http gates did not pass against nginx")
    return {"gates": gates, "evaluations": evaluations, "cpu": cpu1 - cpu0, "rate": evaluations / (t1 - t0)}


def run(workdir: Path, smoke: bool) -> list[Row]:
    """Measure and return the P2 rows."""
    rate = 40.0 if smoke else 250.0
    seconds = 2.0 if smoke else 20.0
    interval = 5.0
    with nginx(workdir) as target:
        bb = blackbox(workdir, target, rate, seconds)
        floor = bare(target, rate, seconds)
        batched = bare(target, rate, seconds, tick=DISPATCH_TICK)
        me = ours(workdir, target, rate, seconds, interval)
        # Go's CPU per probe falls as its rate rises: compare at equal rates, and at a higher one too.
        high = rate * 4
        bb_high = blackbox(workdir, target, high, seconds)
        me_high = ours(workdir / "high", target, high, seconds, interval)
    if bb["failures"] or floor["failures"] or batched["failures"] or bb_high["failures"]:
        raise BenchError(f"failed requests: blackbox {bb['failures']}, bare aiohttp {floor['failures']}")
    bb_ms = bb["server_cpu"] / bb["requests"] * 1e3
    floor_ms = floor["cpu"] / floor["requests"] * 1e3
    me_ms = me["cpu"] / me["evaluations"] * 1e3
    batched_ms = batched["cpu"] / batched["requests"] * 1e3
    bb_high_ms = bb_high["server_cpu"] / bb_high["requests"] * 1e3
    me_high_ms = me_high["cpu"] / me_high["evaluations"] * 1e3
    details = {"rate_per_s": rate, "seconds": seconds, "blackbox": bb, "bare_aiohttp": floor, "ours": me,
               "blackbox_ms_per_probe": bb_ms, "bare_ms_per_request": floor_ms, "ours_ms_per_evaluation": me_ms}
    return [
        Row("P2", f"CPU per HTTP gate evaluation vs blackbox_exporter ({rate:g}/s, fresh connections, local nginx)",
            me_ms, "ms", peer=bb_ms, peer_what="blackbox_exporter per /probe", ratio=me_ms / bb_ms,
            ratio_what="of peer",
            target="<= 0.30x (was <= 0.5x)", ok=me_ms / bb_ms <= 0.30, details=details),
        Row("P2b", "CPU per HTTP gate evaluation vs a bare aiohttp request loop", me_ms, "ms", peer=floor_ms,
            peer_what="bare aiohttp, fresh connection", ratio=me_ms / floor_ms, ratio_what="of baseline",
            target="<= 1.5x", ok=me_ms / floor_ms <= 1.5, details={"see": "P2"}),
        Row("P2c", f"same, against a bare aiohttp loop that also starts requests in {DISPATCH_TICK * 1e3:g} ms ticks",
            me_ms, "ms", peer=batched_ms, peer_what="bare aiohttp, fresh connection, batched", ratio=me_ms / batched_ms,
            ratio_what="of baseline", target="within 1.3x", ok=me_ms / batched_ms <= 1.3,
            details={"bare_aiohttp_batched": batched}),
        Row("P2d", f"CPU per HTTP gate evaluation vs blackbox_exporter at {high:g}/s (same setup as P2)", me_high_ms,
            "ms", peer=bb_high_ms, peer_what="blackbox_exporter per /probe", ratio=me_high_ms / bb_high_ms,
            ratio_what="of peer", target="<= 0.35x", ok=me_high_ms / bb_high_ms <= 0.35,
            details={"blackbox": bb_high, "ours": me_high, "rate_per_s": high}),
    ]
