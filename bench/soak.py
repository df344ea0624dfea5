"""The long rows, behind `python -m bench --long` (or `--only PLATEAU` / `--only SOAK`).

PLATEAU: P3's setup (10,000 gates at 15 s, half http against local nginx, half file) run until every
gate's 50-entry history is full (12.5 min) and past it: RSS once full, the growth over the last
quarter (bench/memory_plateau.py prints the same minute by minute).

SOAK: the same 10,000 gates for --soak-minutes (30 by default), with the file gates flipping
between pass and fail (their file removed and put back every 30 s), a reload that changes every
gate every 5 minutes (the timeout alternates, SIGHUP), and a Prometheus-like scrape every 15 s.
Reports RSS at start (after the first round) and at the middle and end, the worst per-minute p99
schedule lag, evaluations skipped from start to end, and the slowest scrape.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from pathlib import Path

from bench import gen
from bench.memory_plateau import sample
from bench.report import Row
from bench.support import PROMETHEUS_ACCEPT, exporter, memory, nginx

RELOAD_EVERY = 300.0
FLIP_EVERY = 30.0
GROWTH_MB = 5.0


def plateau(workdir: Path, smoke: bool, soak_minutes: float) -> list[Row]:
    """The memory plateau row."""
    args = argparse.Namespace(gates=200 if smoke else 10_000, interval=2.0 if smoke else 15.0,
                              minutes=2.0 if smoke else 16.0, every=10.0 if smoke else 60.0)
    rows = sample(workdir, args)
    full_at = 50 * args.interval / 60
    tail = [r for r in rows if r[0] >= rows[-1][0] * 0.75]
    top = max(r[1] for r in rows if r[0] >= full_at) if any(r[0] >= full_at for r in rows) else float("nan")
    growth = tail[-1][1] - tail[0][1] if len(tail) >= 2 else float("nan")
    return [Row("PLATEAU", f"RSS of {args.gates:,} gates at {args.interval:g} s once every history is full "
                           f"(after {full_at:.1f} min; {args.minutes:g} min run, max after full; "
                           f"{growth:+.1f} MB over the last quarter)", top, "MB", target="< 130 MB", ok=top < 130,
                details={"rss_by_minute": rows, "growth_last_quarter_mb": growth})]


def soak(workdir: Path, smoke: bool, soak_minutes: float) -> list[Row]:
    """The soak rows."""
    gates = 200 if smoke else 10_000
    interval = 2.0 if smoke else 15.0
    minutes = 1.0 if smoke else soak_minutes
    # A shortened soak still reloads a few times: every 5 min, or three times in all when shorter than 15 min.
    reload_every = 20.0 if smoke else min(RELOAD_EVERY, minutes * 60 / 3)
    flip_every = 5.0 if smoke else FLIP_EVERY
    every = 10.0 if smoke else 60.0  # seconds between readings of the lag gauge (p99 over the last minute) and RSS
    flip = workdir / "flip.txt"
    flip.write_text("x\n")
    samples: list[tuple[float, float]] = []
    lags: list[float] = []
    scrapes: list[float] = []
    when: list[tuple[float, float, float]] = []  # (latency, minutes since start, seconds since the last SIGHUP)
    with nginx(workdir) as target:
        def config(timeout: str) -> str:
            return gen.mixed_config(gates, target, str(flip), http_share=0.5, interval=f"{interval:g}s",
                                    timeout=timeout)

        path = gen.write(workdir / "soak.yml", config("1s"))
        with exporter(path, workdir) as exp:
            exp.wait_evaluated(300)
            t0 = time.monotonic()
            end = t0 + minutes * 60
            start_rss = memory(exp.proc.pid)["VmRSS"] / 2**20
            samples.append((0.0, start_rss))
            next_scrape, next_minute = t0, t0 + every
            next_reload, next_flip, reloads, version = t0 + reload_every, t0 + flip_every, 0, 0
            last_signal = float("-inf")
            first = exp.samples("qualitygate_evaluations_skipped_total")["qualitygate_evaluations_skipped_total"]
            while time.monotonic() < end:
                now = time.monotonic()
                if now >= next_flip:
                    if flip.exists():
                        flip.unlink()
                    else:
                        flip.write_text("x\n")
                    next_flip += flip_every
                if now >= next_reload:
                    version += 1
                    path.write_text(config("2s" if version % 2 else "1s"))
                    os.kill(exp.proc.pid, signal.SIGHUP)
                    last_signal = time.monotonic()
                    reloads += 1
                    next_reload += reload_every
                if now >= next_scrape:
                    scrapes.append(exp.scrape({"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"})[0])
                    when.append((scrapes[-1], (now - t0) / 60, now - last_signal))
                    next_scrape += interval
                if now >= next_minute:
                    lag = exp.samples("qualitygate_scheduler_lag_seconds")["qualitygate_scheduler_lag_seconds"]
                    lags.append(lag)
                    samples.append(((now - t0) / 60, memory(exp.proc.pid)["VmRSS"] / 2**20))
                    print(f"   soak {samples[-1][0]:5.1f} min: RSS {samples[-1][1]:.1f} MB, lag p99 {lag * 1e3:.0f} ms",
                          flush=True)
                    next_minute += every
                time.sleep(max(0.0, min(next_flip, next_reload, next_scrape, next_minute, end) - time.monotonic()))
            got = exp.samples("qualitygate_evaluations_skipped_total", "qualitygate_config_last_reload_successful")
            samples.append(((time.monotonic() - t0) / 60, memory(exp.proc.pid)["VmRSS"] / 2**20))
    skipped = got["qualitygate_evaluations_skipped_total"] - first
    mid = min(samples, key=lambda s: abs(s[0] - minutes / 2))
    lag = max(lags) if lags else float("nan")
    what = f"{gates:,} gates, {minutes:g} min, gates flipping, {reloads} reloads changing every gate"
    details = {"rss_by_minute": samples, "lag_p99_per_minute_s": lags, "scrape_max_ms": max(scrapes) * 1e3,
               "slowest_scrapes_ms_min_since_reload_s": [(round(ms * 1e3, 1), round(m, 2), round(r, 1))
                                                         for ms, m, r in sorted(when)[-5:]],
               "reloads": reloads, "last_reload_ok": got["qualitygate_config_last_reload_successful"]}
    # "No growth after the plateau": histories are full after 50 intervals (12.5 min at 15 s), so from the
    # middle of a 30-minute soak on RSS may move with each reload but must not climb: the end within
    # GROWTH_MB of the middle. A soak shorter than twice the fill time cannot show a plateau: no verdict.
    growth = samples[-1][1] - mid[1]
    plateau_seen = mid[0] * 60 >= 50 * interval
    return [
        Row("SOAK", f"soak RSS at the end; {start_rss:.0f} MB at start, {mid[1]:.0f} MB at {mid[0]:.0f} min, "
                    f"{growth:+.1f} MB since ({what})",
            samples[-1][1], "MB",
            target=f"no growth after the plateau (end within {GROWTH_MB:g} MB of the middle)",
            ok=(growth <= GROWTH_MB) if plateau_seen else None,
            details={**details, "rss_start_mid_end_mb": [start_rss, mid[1], samples[-1][1]],
                     "growth_after_middle_mb": growth}),
        Row("SOAKb", f"soak p99 schedule lag, worst minute ({what})", lag * 1e3, "ms", target="< 1 s", ok=lag < 1.0,
            details={"see": "SOAK"}),
        Row("SOAKc", f"soak evaluations skipped ({what})", skipped, "", target="0", ok=skipped == 0,
            details={"see": "SOAK"}),
        Row("SOAKd", f"soak slowest scrape, every 15 s, reloads included ({what})", max(scrapes) * 1e3, "ms",
            target="< 25 ms", ok=max(scrapes) < 0.025, details={"see": "SOAK"}),
    ]
