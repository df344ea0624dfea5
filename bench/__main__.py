"""Run the benchmark suite: `python -m bench [--smoke] [--only P1,P3] [--out DIR]` (bench/run.sh installs first).

Prints a markdown table (ours, peer or baseline, ratio, target, machine) and writes the same as
JSON into bench/results/. Every process it starts listens on 127.0.0.1 and is stopped at the end.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench.report import Row, table, write_json
from bench.support import ROOT, machine

LIMIT = 300  # seconds one benchmark may take (the longest, P3, needs about 150): the suite stays bounded

BENCHMARKS = {
    "P1": ("bench.p1_scrape", "/metrics at 10,000 gates"),
    "P2": ("bench.p2_http_cpu", "CPU per HTTP gate evaluation"),
    "P3": ("bench.p3_schedule", "10,000 gates at 15 s"),
    "P4": ("bench.p4_startup", "validate and start-up of 10,000 gates"),
    "P5": ("bench.p5_command", "command gates"),
    "P6": ("bench.status_page", "the status page at 10,000 gates"),
    "P7": ("bench.p7_restart", "restart with a month of state"),
}
# Long ones, only with --long (or named in --only): each has its own time limit.
LONG = {
    "PLATEAU": ("bench.soak", "memory plateau: 10,000 gates at 15 s until every history is full"),
    "SOAK": ("bench.soak", "soak: flipping gates, reloads, scrapes"),
}


def _overtime(signum: int, frame: object) -> None:
    raise TimeoutError("benchmark took longer than its time limit")


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks; exit 0 when every one ran (missed targets are reported, not fatal)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and durations: proves the suite runs (CI)")
    parser.add_argument("--only", default="", metavar="P1,P2", help="run only these benchmarks")
    parser.add_argument("--long", action="store_true", help="also the memory plateau and the soak (35 min or more)")
    parser.add_argument("--soak-minutes", type=float, default=30.0, metavar="MIN", help="length of the soak")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), metavar="DIR", help="where the JSON goes")
    args = parser.parse_args(argv)
    known = {**BENCHMARKS, **LONG}
    chosen = [b.strip().upper() for b in args.only.split(",") if b.strip()] or \
        list(BENCHMARKS) + (list(LONG) if args.long else [])
    unknown = [b for b in chosen if b not in known]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]} (one of {', '.join(known)})")

    info = machine()
    rows: list[Row] = []
    t_start = time.monotonic()
    for name in chosen:
        module_name, what = known[name]
        limit = LIMIT if name in BENCHMARKS else int(args.soak_minutes * 60 + 1200)
        print(f"== {name}: {what}{' (smoke)' if args.smoke else ''}", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"qg-bench-{name.lower()}-") as tmp:
            signal.signal(signal.SIGALRM, _overtime)
            signal.alarm(limit)
            try:
                module = importlib.import_module(module_name)
                if name in LONG:
                    got = getattr(module, name.lower())(Path(tmp), args.smoke, args.soak_minutes)
                else:
                    got = module.run(Path(tmp), args.smoke)
            except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others' rows
                traceback.print_exc()
                got = [Row(name, what, None, "", error=f"{type(exc).__name__}: {exc}")]
            finally:
                signal.alarm(0)
        for r in got:
            r.details.setdefault("seconds", round(time.monotonic() - t0, 1))
            print(f"   {r.id}: {r.ours} {r.unit} (peer {r.peer}) ok={r.ok}", file=sys.stderr, flush=True)
        rows += got
    info["loadavg_at_end"] = os.getloadavg()[0]
    info["suite_seconds"] = round(time.monotonic() - t_start, 1)
    path = write_json(rows, info, {"smoke": args.smoke, "only": chosen}, Path(args.out))
    print(table(rows, info))
    print(f"\n{info['suite_seconds']} s in all; JSON: {path}", file=sys.stderr)
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
