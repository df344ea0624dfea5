"""P6: the status page of 10,000 gates, beside /api/progress/status in the same run, and P3's lag under 10 tabs.

A real `serve` of 10,000 file gates at 15 s (every 10th step's file is missing, so 1,000 gates fail:
blockers, failing steps and folded passing ones, as a real tracker has them). Measured:
- the overview's time to the last byte, median of alternating requests, against the JSON API's;
- the overview's HTML size, uncompressed;
- 10 clients, each loading the page once and then refreshing as the page's script does (every
  10 s: the fragment with If-None-Match, and one opened step's fragment), for a minute; then
  qualitygate_scheduler_lag_seconds (p99 of the last minute) and the share of refreshes answered 304.
"""

from __future__ import annotations

import http.client
import statistics
import threading
import time
from pathlib import Path

from bench import gen
from bench.report import Row
from bench.support import BenchError, Exporter, exporter

CLIENTS = 10
REFRESH = 10.0


def _get(conn: http.client.HTTPConnection, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes,
                                                                                                       float, str]:
    t0 = time.perf_counter()
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    return resp.status, body, time.perf_counter() - t0, resp.getheader("ETag") or ""


def _side_by_side(exp: Exporter, rounds: int) -> tuple[float, float, int, int]:
    """Median seconds of the page and of the API (alternating), and their sizes in bytes."""
    conn = http.client.HTTPConnection("127.0.0.1", exp.port, timeout=60)
    page, api = [], []
    page_size = api_size = 0
    try:
        for _ in range(rounds):
            status, body, took, _ = _get(conn, "/")
            if status != 200:
                raise BenchError(f"/ answered {status}")
            page.append(took)
            page_size = len(body)
            status, body, took, _ = _get(conn, "/api/progress/status")
            if status != 200:
                raise BenchError(f"/api/progress/status answered {status}")
            api.append(took)
            api_size = len(body)
    finally:
        conn.close()
    return statistics.median(page), statistics.median(api), page_size, api_size


def _tab(port: int, offset: float, until: float, step: str, out: dict[str, int], lock: threading.Lock) -> None:
    """One open tab: the page once, then the page script's refreshes until `until`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    got = {"full": 0, "304": 0, "200": 0, "bytes": 0}
    try:
        time.sleep(offset)
        _, body, _, _ = _get(conn, "/")
        got["full"] += 1
        got["bytes"] += len(body)
        tags = {"/?partial=1": "", step: ""}
        _, _, _, tags["/?partial=1"] = _get(conn, "/?partial=1")
        while time.monotonic() + REFRESH < until:
            time.sleep(REFRESH)
            for path in tags:
                status, body, _, tag = _get(conn, path, {"If-None-Match": tags[path]} if tags[path] else {})
                got["304" if status == 304 else "200"] += 1
                got["bytes"] += len(body)
                tags[path] = tag or tags[path]
    finally:
        conn.close()
        with lock:
            for k, v in got.items():
                out[k] = out.get(k, 0) + v


def run(workdir: Path, smoke: bool) -> list[Row]:
    """Measure and return the P6 rows."""
    gates = 400 if smoke else 10_000
    interval = 2.0 if smoke else 15.0
    window = 12.0 if smoke else 70.0
    present = workdir / "present.txt"
    present.write_text("x\n")
    missing = workdir / "missing.txt"

    def gate(i: int) -> list[str]:
        bad = (i // gen.GATES_PER_STEP) % 10 == 9
        return [f"file: {{path: {missing if bad else present}}}"]

    config = gen.write(workdir / "p6.yml", gen.tracker_yaml(gates, gate, interval=f"{interval:g}s", timeout="1s"))
    with exporter(config, workdir) as exp:
        exp.wait_evaluated(120)
        page_s, api_s, page_bytes, api_bytes = _side_by_side(exp, 5 if smoke else 15)
        out: dict[str, int] = {}
        lock = threading.Lock()
        until = time.monotonic() + window
        step = "/phases/phase-000/steps/step-0003?partial=1"
        tabs = [threading.Thread(target=_tab, args=(exp.port, i * REFRESH / CLIENTS, until, step, out, lock))
                for i in range(CLIENTS)]
        for t in tabs:
            t.start()
        for t in tabs:
            t.join(window + 60)
        lag = exp.samples("qualitygate_scheduler_lag_seconds")["qualitygate_scheduler_lag_seconds"]
    ratio = page_s / api_s if api_s else float("nan")
    refreshes = out.get("304", 0) + out.get("200", 0)
    details = {"gates": gates, "interval_s": interval, "page_s": page_s, "api_s": api_s, "page_bytes": page_bytes,
               "api_bytes": api_bytes, "clients": CLIENTS, "refresh_s": REFRESH, "window_s": window,
               "refreshes": refreshes, "answered_304": out.get("304", 0), "bytes_to_clients": out.get("bytes", 0)}
    what = f"{gates:,} file gates at {interval:g} s (1 in 10 failing)"
    return [
        Row("P6", f"status page / vs /api/progress/status, time to last byte (median), {what}", page_s * 1e3, "ms",
            peer=api_s * 1e3, peer_what="/api/progress/status", ratio=ratio,
            target="<= 3x the API", ok=ratio <= 3, details=details),
        Row("P6b", f"status page HTML, uncompressed, {what} (API: {api_bytes / 2**20:.1f} MB)", page_bytes / 2**20,
            "MB", target="< 2 MB", ok=page_bytes < 2 * 2**20, details={"see": "P6"}),
        Row("P6c", f"p99 schedule lag with {CLIENTS} tabs refreshing every {REFRESH:g} s "
                   f"({out.get('304', 0)} of {refreshes} refreshes answered 304), {what}", lag * 1e3, "ms",
            target="< 1 s", ok=lag < 1.0, details={"see": "P6"}),
    ]
