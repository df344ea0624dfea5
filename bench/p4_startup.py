"""P4: `qualitygate validate` and start-up (launch until /-/ready answers 200) of 10,000 gates.

Both are wall-clock times of a fresh process, interpreter start and imports included. The
baseline for validate is the same command with the config loader as it was before this work
(PyYAML's pure-Python SafeLoader, cyclic GC running while the file is read).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from pathlib import Path

from bench import gen
from bench.report import Row
from bench.support import PYTHON, ROOT, BenchError, exporter

STOCK_LOADER = ("import contextlib, sys; import exporter.config.yamlload as c; c._FastLoader = None; "
                "c.gc_paused = contextlib.nullcontext; from exporter.cli import main; sys.exit(main(sys.argv[1:]))")


def timed(argv: list[str]) -> float:
    """Wall seconds of one run of argv, which must succeed."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(argv[:4])} exited {proc.returncode}: {proc.stderr.strip()[:300]}")
    return elapsed


def run(workdir: Path, smoke: bool) -> list[Row]:
    """Measure and return the P4 rows."""
    gates = 300 if smoke else 10_000
    runs = 1 if smoke else 3
    fresh = workdir / "fresh.txt"
    fresh.write_text("x\n")
    config = gen.write(workdir / "p4.yml", gen.all_series_config(gates, str(fresh)))
    validate = [timed([PYTHON, "-m", "exporter", "validate", str(config)]) for _ in range(runs)]
    stock = timed([PYTHON, "-c", STOCK_LOADER, "validate", str(config)])
    starts = []
    for i in range(runs):
        run_dir = workdir / f"start{i}"
        run_dir.mkdir()
        with exporter(config, run_dir) as exp:
            starts.append(exp.ready_after)
    v, s = statistics.median(validate), statistics.median(starts)
    details = {"gates": gates, "config_bytes": config.stat().st_size, "validate_runs_s": validate,
               "validate_stock_loader_s": stock, "startup_runs_s": starts}
    return [
        Row("P4", f"`qualitygate validate` of {gates:,} gates (median of {runs}, process wall time)", v, "s",
            peer=stock, peer_what="same, stock PyYAML loader", ratio=v / stock, ratio_what="of baseline",
            target="< 3 s", ok=v < 3, details=details),
        Row("P4b", f"start-up of {gates:,} gates: launch until /-/ready (median of {runs}; max {max(starts):.2f} s)", s,
            "s", target="< 3 s", ok=s < 3, details={"see": "P4"}),
    ]
