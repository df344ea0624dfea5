"""State file size, write throughput and restart time for many gates over a long simulated time.

Time is compressed: instead of 30 days of evaluations one by one (10,000 gates at 15 s would be
1.7 billion), each gate gets the uptime buckets that 30 days leave behind after compaction
(daily beyond 2 days, hourly up to 2 days, 5-minute for the last 2 hours), written through the
Store's own queue and writer thread (`merge_buckets`), plus its last 50 evaluations through
`record()`, the path the exporter uses after every evaluation. Then the file is reopened and
restored into memory as `serve` does at start.

    .venv/bin/python bench/storage_size.py [--gates 10000] [--interval 15] [--days 30] [--path FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from exporter.config.model import parse_config
from exporter.model import Result
from exporter.state.memory import HISTORY, State, bucket_start
from exporter.state.store import open_store

TRACKER = "bench"


def config_text(gates: int, days: int) -> str:
    lines = [f"tracker: {TRACKER}", "title: Bench", f"uptime_window: {days}d", "phases:", "  - id: p", "    title: P",
             "    steps:", "      - id: s", "        title: S", "        gates:"]
    lines += [f"          - {{id: gate-{i:05d}, file: {{path: /etc/hostname}}}}" for i in range(gates)]
    return "\n".join(lines) + "\n"


def buckets_after(days: int, interval: float, now: float) -> dict[int, tuple[int, int]]:
    """The uptime buckets `days` of one gate leave after compaction (99% passing), as memory would hold them."""
    out: dict[int, list[int]] = {}
    per_five = int(300 / interval)
    start = int((now - days * 86400) // 300 * 300)
    for t in range(start, int(now), 300):
        b = out.setdefault(bucket_start(t, now), [0, 0])
        b[1] += per_five
        b[0] += per_five - (1 if t % 7 == 0 else 0)
    return {k: (p, t) for k, (p, t) in out.items()}


def write(path: str, gates: int, interval: float, days: int, now: float) -> dict[str, float]:
    """A state file of `gates` gates after `days` at `interval` (buckets compacted, full histories); timings."""
    ids = [f"gate-{i:05d}" for i in range(gates)]
    config = parse_config(config_text(gates, days))
    store = open_store(path)
    store.configured([config])
    shape = buckets_after(days, interval, now - HISTORY * interval)
    t0 = time.perf_counter()
    for n, gid in enumerate(ids, 1):
        store.merge_buckets(TRACKER, gid, shape)
        if n % 500 == 0:
            store.flush(3600)  # stay far below the queue's bound (it drops the oldest beyond 200,000)
    store.flush(3600)
    t_buckets = time.perf_counter() - t0
    results = [Result(gid, "pass" if k % 100 else "fail", now - (HISTORY - k) * interval, 0.012,
                      {"value": 0.012, "status": 200.0, "response_time": 0.012}, "")
               for k in range(HISTORY) for gid in ids]
    t0 = time.perf_counter()
    t_enqueue = 0.0
    for i in range(0, len(results), 50_000):
        t1 = time.perf_counter()
        for r in results[i:i + 50_000]:
            store.record(TRACKER, r)
        t_enqueue += time.perf_counter() - t1
        store.flush(3600)
    t_record = time.perf_counter() - t0
    assert store.dropped == 0 and store.errors == 0, (store.dropped, store.errors)
    t0 = time.perf_counter()
    store.maintain(now)
    store.flush(3600)
    t_maintain = time.perf_counter() - t0
    store.close_sync()
    return {"bucket_rows": len(shape) * gates, "per_gate": len(shape), "t_buckets": t_buckets,
            "results": len(results), "t_enqueue": t_enqueue, "t_record": t_record, "t_maintain": t_maintain}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gates", type=int, default=10_000)
    ap.add_argument("--interval", type=float, default=15.0)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--path", default=None, help="state file to write (default: a temporary one)")
    args = ap.parse_args()
    path = args.path or os.path.join(tempfile.mkdtemp(prefix="qg-bench-"), "state.db")
    now = time.time()
    ids = [f"gate-{i:05d}" for i in range(args.gates)]
    w = write(path, args.gates, args.interval, args.days, now)
    bucket_rows, t_buckets, t_record, t_enqueue, t_maintain = (w["bucket_rows"], w["t_buckets"], w["t_record"],
                                                                w["t_enqueue"], w["t_maintain"])
    size = sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))

    t0 = time.perf_counter()
    store = open_store(path)
    t_open = time.perf_counter() - t0
    state = State()
    t0 = time.perf_counter()
    restored = store.restore(TRACKER, state)
    t_restore = time.perf_counter() - t0
    store.close_sync()
    assert restored == args.gates, restored
    sample = state.gates[ids[0]]
    passed, total = sample.uptime(args.days * 86400, now)

    print(f"gates={args.gates} interval={args.interval:g}s simulated_days={args.days} file={path}")
    print(f"evaluations represented: {total * args.gates:,} ({passed / total:.4f} of them passing)")
    print(f"uptime bucket rows: {bucket_rows:,.0f} per-gate {w['per_gate']:.0f}; merged in {t_buckets:.1f}s "
          f"({bucket_rows / t_buckets:,.0f} rows/s)")
    n = w["results"]
    print(f"record(): {n:,.0f} evaluations, enqueue {t_enqueue / n * 1e6:.2f} us/call on the loop, "
          f"committed in {t_record:.1f}s ({n / t_record:,.0f} evaluations/s); "
          f"needed at this load: {args.gates / args.interval:,.0f}/s")
    print(f"compaction pass (maintain): {t_maintain:.2f}s")
    print(f"state file size: {size / 1e6:.1f} MB ({size / args.gates / 1024:.1f} KiB per gate)")
    print(f"restart: open + integrity check {t_open:.2f}s, restore {restored:,} gates {t_restore:.2f}s, "
          f"total {t_open + t_restore:.2f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
