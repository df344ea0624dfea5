"""Memory over time: P3's setup (10,000 gates at 15 s, half http against local nginx, half file),
run until every gate's evaluation history is full (50 evaluations: 12.5 minutes) and past it.

P3 measures two minutes; this says where RSS levels off. It prints RSS (and VmHWM) every
`--every` seconds, and the growth over the last quarter of the run, which is near zero once the
plateau is reached.

    .venv/bin/python bench/memory_plateau.py [--gates 10000] [--interval 15] [--minutes 15] [--every 60]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import gen
from bench.support import PROMETHEUS_ACCEPT, exporter, memory, nginx


def sample(workdir: Path, args: argparse.Namespace) -> list[tuple[float, float]]:
    """Run the exporter for --minutes, printing a row every --every seconds; (minute, RSS MB) rows."""
    fresh = workdir / "fresh.txt"
    fresh.write_text("x\n")
    rows: list[tuple[float, float]] = []
    with nginx(workdir) as target:
        config = gen.write(workdir / "plateau.yml", gen.mixed_config(args.gates, target, str(fresh), http_share=0.5,
                                                                     interval=f"{args.interval:g}s"))
        with exporter(config, workdir) as exp:
            exp.wait_evaluated(300)
            t0 = exp.started
            end = t0 + args.minutes * 60
            next_sample = next_scrape = time.monotonic()
            while time.monotonic() < end:
                now = time.monotonic()
                if now >= next_scrape:  # scraped like Prometheus would, so the render caches are exercised
                    exp.scrape({"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"})
                    next_scrape += args.interval
                if now >= next_sample:
                    mem = memory(exp.proc.pid)
                    s = exp.samples("gate_evaluations_total", "qualitygate_evaluations_skipped_total")
                    minute, rss = (now - t0) / 60, mem["VmRSS"] / 2**20
                    rows.append((minute, rss))
                    print(f"{minute:7.1f} {rss:8.1f} {mem['VmHWM'] / 2**20:8.1f} "
                          f"{s['gate_evaluations_total']:12,.0f} {s['qualitygate_evaluations_skipped_total']:8.0f}",
                          flush=True)
                    next_sample += args.every
                time.sleep(max(0.0, min(next_sample, next_scrape, end) - time.monotonic()))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gates", type=int, default=10_000)
    ap.add_argument("--interval", type=float, default=15.0, help="seconds between evaluations of a gate")
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--every", type=float, default=60.0, help="seconds between printed samples")
    args = ap.parse_args()

    full_after = 50 * args.interval / 60
    print(f"{args.gates:,} gates at {args.interval:g} s; histories are full after {full_after:g} min", flush=True)
    print(f"{'minute':>7} {'RSS MB':>8} {'peak MB':>8} {'evaluations':>12} {'skipped':>8}", flush=True)
    with tempfile.TemporaryDirectory(prefix="qg-plateau-") as tmp:
        rows = sample(Path(tmp), args)
    tail = [r for r in rows if r[0] >= rows[-1][0] * 0.75] if rows else []
    if len(tail) >= 2:
        print(f"growth over the last quarter ({tail[0][0]:.1f} to {tail[-1][0]:.1f} min): "
              f"{tail[-1][1] - tail[0][1]:+.1f} MB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
