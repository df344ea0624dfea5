"""Misbehaving targets against a real exporter: each evaluation ends, /metrics keeps answering, nothing leaks.

One exporter runs every fault gate at a 1 s interval for 30+ evaluations each. Its file
descriptors, child processes and memory are read from /proc on a quiet baseline config before
the faults and again after reloading back to it.
"""

from __future__ import annotations

import secrets
import shutil
import textwrap
import time
from pathlib import Path

import pytest
import requests

from conftest import parse_metrics, sample, wait_for
from faults_support import FaultServer, children_of, proc_stats, processes_with_arg

REPEATS = 30
# Unique per run, so that a leftover process is ours and not a concurrent run's.
TOKEN = f"{secrets.randbelow(10**6):06d}"
SLEEP_BG, SLEEP_FG, FLOOD = f"600.{TOKEN}1", f"600.{TOKEN}2", f"qgflood{TOKEN}"
# The quiet config the exporter is reloaded to between fault runs: one gate, evaluated hourly.
BASELINE = """\
tracker: faults
defaults: { interval: 1s, timeout: 500ms }
phases:
  - id: p
    steps:
      - id: s
        gates:
          - id: idle
            interval: 1h
            timeout: 10s
            command: { argv: ["true"] }
"""


def faults_config(hung: int, reset: int) -> str:
    """BASELINE plus the fault gates, which run every second under the defaults."""
    faults = textwrap.dedent(f"""\
        - id: hung-http
          http: {{ url: "http://127.0.0.1:{hung}/" }}
        - id: reset-http
          http: {{ url: "http://127.0.0.1:{reset}/" }}
        - id: hung-tls
          tcp: {{ address: "127.0.0.1:{hung}", tls: true }}
        - id: reset-tls
          tcp: {{ address: "127.0.0.1:{reset}", tls: true }}
        - id: child-keeps-stdout
          command: {{ shell: "sleep {SLEEP_BG} & echo started" }}
        - id: hangs
          command: {{ argv: ["sleep", "{SLEEP_FG}"] }}
        - id: flood
          command: {{ argv: ["yes", "{FLOOD}"] }}
        - id: one-gib
          interval: 20s
          timeout: 20s
          command:
            shell: "head -c 1073741824 /dev/zero; echo 'coverage: 87%'"
            value_regex: 'coverage: (\\d+)%'
          expect: ">= 85%"
        """)
    return BASELINE + textwrap.indent(faults, " " * 10)


FAULT_GATES = ("hung-http", "reset-http", "hung-tls", "reset-tls", "child-keeps-stdout", "hangs", "flood")
MARKERS = (SLEEP_BG, SLEEP_FG, FLOOD)


def counts(url: str) -> dict[str, float]:
    """Evaluations per gate so far; every call must be answered (the exporter keeps serving)."""
    r = requests.get(f"{url}/metrics", timeout=10)
    assert r.status_code == 200
    m = parse_metrics(r.text)
    out = {}
    for gate in (*FAULT_GATES, "one-gib", "idle"):
        out[gate] = sum(sample(m, "gate_evaluations_total", gate=gate, result=x) or 0
                        for x in ("pass", "fail", "error"))
    return out


@pytest.fixture
def fault_servers():
    hung, reset = FaultServer("hang"), FaultServer("reset")
    yield hung, reset
    hung.close()
    reset.close()


def run_faults(url: str, config: Path, faults: str, repeats: int, gib_runs: int) -> None:
    """Reload to the fault config and wait for `repeats` more evaluations of every fault gate."""
    config.write_text(faults)
    assert requests.post(f"{url}/-/reload", timeout=30).status_code == 200
    start = counts(url)
    deadline = time.monotonic() + 240
    while True:
        c = counts(url)  # asserts /metrics answers on every round
        done = {g: c[g] - start[g] for g in c}
        if all(done[g] >= repeats for g in FAULT_GATES) and done["one-gib"] >= gib_runs:
            return
        assert time.monotonic() < deadline, f"evaluations did not reach {repeats}: {done}"
        time.sleep(0.5)


def settle(url: str, config: Path, pid: int, fds_at_most: int | None = None):
    """Reload to the quiet baseline and return /proc stats once nothing is in flight."""
    config.write_text(BASELINE)
    assert requests.post(f"{url}/-/reload", timeout=30).status_code == 200

    def settled():
        in_flight = sample(parse_metrics(requests.get(f"{url}/metrics", timeout=10).text),
                           "qualitygate_evaluations_in_flight")
        st = proc_stats(pid)
        quiet = in_flight == 0 and not children_of(pid) and (fds_at_most is None or st.fds <= fds_at_most)
        return st if quiet else None

    try:
        return wait_for(settled, timeout=30, what="the exporter to settle")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: fds at most {fds_at_most} expected, now {proc_stats(pid)}") from None


@pytest.mark.skipif(not shutil.which("head") or not shutil.which("yes"), reason="coreutils needed")
def test_faulty_targets_end_at_their_timeout_without_leaks(tmp_path: Path, serve, fault_servers):
    hung, reset = fault_servers
    faults = faults_config(hung.port, reset.port)
    config = tmp_path / "faults.yml"
    config.write_text(BASELINE)
    s = serve(config, "--web.enable-lifecycle")
    pid = s.proc.pid
    # the baseline gate runs once an hour: after its first evaluation the exporter is quiet
    wait_for(lambda: counts(s.url)["idle"] >= 1, timeout=30, what="the baseline evaluation")
    # a short warm-up first, so that one-time allocations (client sessions, worker threads, the
    # state database's WAL files) are in the baseline and only growth with repetition counts
    run_faults(s.url, config, faults, 3, 1)
    base = settle(s.url, config, pid)

    run_faults(s.url, config, faults, REPEATS, 2)
    during = proc_stats(pid)
    gates = {g["id"]: g for g in requests.get(f"{s.url}/api/gates", timeout=10).json()["gates"]}
    for gate_id in ("hung-http", "hung-tls", "hangs", "flood"):
        detail = requests.get(f"{s.url}/api/gates/{gate_id}", timeout=10).json()
        assert {h["outcome"] for h in detail["history"]} == {"fail"}, (gate_id, detail["history"][:3])
        assert all("timed out" in h["message"] or "timeout" in h["message"] for h in detail["history"]), gate_id
    for gate_id in ("reset-http", "reset-tls"):
        detail = requests.get(f"{s.url}/api/gates/{gate_id}", timeout=10).json()
        assert {h["outcome"] for h in detail["history"]} == {"fail"}, (gate_id, detail["history"][:3])
    assert gates["reset-http"]["message"] and "timed out" not in gates["reset-http"]["message"]
    # the shell exits at once; its background child holding stdout does not hold the evaluation
    # until the 500 ms timeout (that would be a fail)
    detail = requests.get(f"{s.url}/api/gates/child-keeps-stdout", timeout=10).json()
    assert {h["outcome"] for h in detail["history"]} == {"pass"}
    # the whole GiB is read (its last line is found) while memory stays bounded
    assert gates["one-gib"]["status"] == "pass" and gates["one-gib"]["value"] == pytest.approx(0.87)
    assert hung.accepted >= REPEATS * 2 and reset.accepted >= REPEATS * 2

    after = settle(s.url, config, pid, fds_at_most=base.fds)
    print(f"fds {base.fds} -> {during.fds} -> {after.fds}; rss KiB {base.rss_kib} -> {during.rss_kib} -> "
          f"{after.rss_kib}; peak {after.peak_rss_kib}; threads {base.threads} -> {after.threads}")
    assert after.fds <= base.fds
    assert after.children == ()
    for marker in MARKERS:
        assert processes_with_arg(marker) == [], f"a child with {marker} survived"
    assert after.peak_rss_kib < 256 * 1024, "the exporter held the output in memory"
    assert after.rss_kib - base.rss_kib < 32 * 1024, "memory grew by more than 32 MiB over the fault runs"
    assert s.proc.poll() is None


def test_prometheus_down_is_an_error_not_a_fail(tmp_path: Path, serve, fault_servers):
    """Refused, hung and killed Prometheus: promql gates report `error` (no measurement), never `fail`."""
    hung, _ = fault_servers
    prom = None
    have_prometheus = shutil.which("prometheus") is not None
    if have_prometheus:
        from stack_support import start_prometheus

        workdir = tmp_path / "prom"
        workdir.mkdir()
        prom = start_prometheus({"global": {"scrape_interval": "15s"}, "scrape_configs": []}, workdir)
    from conftest import free_port

    refused = free_port()
    gates = [("refused", f"http://127.0.0.1:{refused}"), ("hung", f"http://127.0.0.1:{hung.port}")]
    if prom is not None:
        gates.append(("killed", prom.url))
    entries = "".join(f"""
                  - id: {name}
                    promql: {{ query: "vector(1)", url: "{url}" }}
                    expect: "== 1"
    """ for name, url in gates)
    config = tmp_path / "promql.yml"
    config.write_text(textwrap.dedent(f"""
        tracker: promdown
        defaults: {{ interval: 1s, timeout: 500ms }}
        phases:
          - id: p
            steps:
              - id: s
                gates:{entries}
        """).lstrip())
    s = serve(config)
    try:
        if prom is not None:
            wait_for(lambda: _status(s.url, "killed") == "pass", timeout=30, what="the promql gate to pass")
            prom.proc.kill()
            prom.proc.wait(10)
        for name, _ in gates:
            wait_for(lambda n=name: _status(s.url, n) == "error", timeout=30, what=f"{name} to be an error")
        m = parse_metrics(requests.get(f"{s.url}/metrics", timeout=10).text)
        for name, _ in gates:
            assert sample(m, "gate_probe_error", gate=name) == 1
            assert sample(m, "gate_passed", gate=name) == 0
            assert (sample(m, "gate_evaluations_total", gate=name, result="fail") or 0) == 0
        messages = {g["id"]: g["message"] for g in requests.get(f"{s.url}/api/gates", timeout=10).json()["gates"]}
        assert "Prometheus unreachable" in messages["refused"]
    finally:
        if prom is not None:
            prom.stop()


def _status(url: str, gate: str) -> str:
    return requests.get(f"{url}/api/gates/{gate}", timeout=10).json()["status"]


async def test_cancelling_a_command_at_any_point_leaks_nothing(caplog: pytest.LogCaptureFixture):
    """A reload, a timeout or shutdown can cancel a command probe at any await: no fd, process or error left."""
    import asyncio
    import gc
    import logging
    import os

    from exporter.probes.base import ProbeContext
    from exporter.probes.command import CommandSpec, probe

    marker = f"600.{TOKEN}9"
    spec = CommandSpec(argv=["sleep", marker])
    caplog.set_level(logging.ERROR, logger="asyncio")
    gc.collect()  # earlier tests' garbage must not close its descriptors during this one
    before = len(os.listdir("/proc/self/fd"))
    for steps in range(40):  # cancel after 0, 1, 2, ... turns of the event loop
        task = asyncio.create_task(probe(spec, ProbeContext("g", 30)))
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await asyncio.sleep(0.2)  # let transports finish closing
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    gc.collect()
    assert len(os.listdir("/proc/self/fd")) <= before
    assert processes_with_arg(marker) == []


async def test_cancelling_network_probes_at_any_point_leaks_nothing(caplog: pytest.LogCaptureFixture):
    """The same sweep for http, tcp+tls and promql against hung and resetting targets."""
    import asyncio
    import gc
    import logging
    import os

    from exporter.probes import http, promql, tcp
    from exporter.probes.base import ProbeContext

    caplog.set_level(logging.ERROR, logger="asyncio")
    gc.collect()
    before = len(os.listdir("/proc/self/fd"))
    hung, reset = FaultServer("hang"), FaultServer("reset")
    try:
        probes = [(http.probe, http.HTTPSpec(url=f"http://127.0.0.1:{hung.port}/")),
                  (http.probe, http.HTTPSpec(url=f"http://127.0.0.1:{reset.port}/")),
                  (tcp.probe, tcp.TCPSpec(address=f"127.0.0.1:{hung.port}", tls=True)),
                  (tcp.probe, tcp.TCPSpec(address=f"127.0.0.1:{reset.port}", tls=True)),
                  (promql.probe, promql.PromQLSpec(query="up", url=f"http://127.0.0.1:{hung.port}"))]
        for fn, spec in probes:
            for steps in range(25):
                task = asyncio.create_task(fn(spec, ProbeContext("g", 5)))
                for _ in range(steps):
                    await asyncio.sleep(0)
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                except Exception:  # noqa: BLE001 - a reset may end the probe before the cancel lands
                    pass
        await asyncio.sleep(0.5)  # let transports finish closing
    finally:
        hung.close()  # the targets' own sockets live in this process too
        reset.close()
    gc.collect()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert len(os.listdir("/proc/self/fd")) <= before
