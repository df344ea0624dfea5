"""P3: 10,000 gates at a 15 s interval (half http against local nginx, half file) for 2 minutes.

P3e reads the lag gauge one minute after launch: the first round (spread at most 1,000 gates a
second, exporter/engine/scheduler.py) and the first second runs. Then, in steady state, the
exporter runs for the window while Prometheus-like scrapes (gzip, every 15 s) read:
- qualitygate_scheduler_lag_seconds (p99 of start minus due time over the last minute), read at
  the end of each minute of the window, so the readings cover the whole window; the worst counts;
- qualitygate_evaluations_skipped_total, which must stay 0 from start to end;
- gate_evaluations_total, to check every gate ran as often as its interval says.
Memory is the process's peak RSS (VmHWM, start-up included), sampled from /proc.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench import gen
from bench.report import Row
from bench.support import PROMETHEUS_ACCEPT, exporter, memory, nginx


def full_history_mb(gates: int) -> float:
    """In-process: MB that the state of `gates` gates takes once each holds its full evaluation history."""
    import tracemalloc

    from exporter.model import Result
    from exporter.state.memory import HISTORY, State

    tracemalloc.start()
    state = State()
    now = time.time()
    for k in range(HISTORY):
        for i in range(gates):
            state.record(Result(f"gate-{i:05d}", "pass", now + k, 0.001,
                                {"status": 200.0, "response_time": 0.001, "value": 0.001}))
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return size / 2**20


def run(workdir: Path, smoke: bool) -> list[Row]:
    """Measure and return the P3 rows."""
    gates = 200 if smoke else 10_000
    interval = 2.0 if smoke else 15.0
    window = 6.0 if smoke else 120.0
    minute = 3.0 if smoke else 60.0
    fresh = workdir / "fresh.txt"
    fresh.write_text("x\n")
    with nginx(workdir) as target:
        config = gen.write(workdir / "p3.yml", gen.mixed_config(gates, target, str(fresh), http_share=0.5,
                                                                interval=f"{interval:g}s"))
        with exporter(config, workdir) as exp:
            # The first minute after start, first round included: the gauge read at its end covers it all.
            time.sleep(max(0.0, exp.started + minute - time.monotonic()))
            first_minute = exp.samples("qualitygate_scheduler_lag_seconds")["qualitygate_scheduler_lag_seconds"]
            exp.wait_evaluated(120)
            # Second runs begin one interval after start, in each gate's own slot: from then on it is steady.
            time.sleep(max(0.0, exp.started + exp.ready_after + interval - time.monotonic()))
            warmup = time.monotonic() - exp.started
            first = exp.samples("gate_evaluations_total")["gate_evaluations_total"]
            t0 = time.monotonic()
            lags, rss = [], []
            next_scrape, next_minute = t0 + interval, t0 + minute
            while True:
                now = time.monotonic()
                rss.append(memory(exp.proc.pid)["VmRSS"])
                if now >= next_scrape:
                    exp.scrape({"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"})
                    next_scrape += interval
                if now >= next_minute:
                    lags.append(exp.samples("qualitygate_scheduler_lag_seconds")["qualitygate_scheduler_lag_seconds"])
                    next_minute += minute
                if now >= t0 + window:
                    break
                time.sleep(min(1.0, max(0.0, min(next_scrape, next_minute, t0 + window) - time.monotonic())))
            elapsed = time.monotonic() - t0
            end = exp.samples("gate_evaluations_total", "qualitygate_evaluations_skipped_total", "gate_passed")
            mem = memory(exp.proc.pid)
    evaluations = end["gate_evaluations_total"] - first
    expected = gates * elapsed / interval
    lag = max(lags) if lags else float("nan")
    skipped = end["qualitygate_evaluations_skipped_total"]
    peak_mb = mem["VmHWM"] / 2**20
    details = {"gates": gates, "interval_s": interval, "window_s": round(elapsed, 1), "warmup_s": round(warmup, 1),
               "lag_p99_per_minute_s": lags, "skipped_total": skipped, "evaluations_in_window": evaluations,
               "evaluations_expected": round(expected), "gates_passing": end["gate_passed"],
               "rss_peak_mb": peak_mb, "rss_end_mb": mem["VmRSS"] / 2**20, "rss_max_sampled_mb": max(rss) / 2**20}
    what = f"{gates:,} gates at {interval:g} s, half http / half file, {elapsed:.0f} s"
    return [
        Row("P3", f"p99 schedule lag, {what}", lag * 1e3, "ms", target="< 1 s", ok=lag < 1.0, details=details),
        Row("P3b", f"evaluations skipped, {what} (ran {evaluations:,.0f} of ~{expected:,.0f} due)", skipped, "",
            target="0", ok=skipped == 0, details={"see": "P3"}),
        Row("P3c", f"peak RSS, {what}", peak_mb, "MB", target="< 150 MB", ok=peak_mb < 150, details={"see": "P3"}),
        Row("P3e", f"p99 schedule lag in the first minute after a start of {gates:,} gates (first round included)",
            first_minute * 1e3, "ms", target="< 1 s", ok=first_minute < 1.0, details={"see": "P3"}),
        Row("P3d", f"state of {gates:,} gates once each holds its full history (50 evaluations, reached after "
                   f"{50 * interval / 60:g} min), in-process", full_history_mb(gates), "MB", target="(informational)",
            ok=None),
    ]
