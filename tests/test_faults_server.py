"""The exporter process under stress: slow-loris clients, invalid reloads (HTTP and SIGHUP), SIGTERM."""

from __future__ import annotations

import contextlib
import secrets
import signal
import socket
import textwrap
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import parse_metrics, sample, wait_for
from faults_support import FaultServer, children_of, proc_stats, processes_with_arg

# Unique per run, so that a leftover process is ours and not a concurrent run's.
TOKEN = f"{secrets.randbelow(10**6):06d}"
SLEEPS = tuple(f"600.{TOKEN}{i}" for i in range(4))

GOOD = """
tracker: stress
phases:
  - id: p
    steps:
      - id: s
        gates:
          - id: alpha
            interval: 1s
            timeout: 1s
            command: { argv: ["true"] }
          - id: signoff
            manual: { max_age: 1d }
"""


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def metrics(url: str) -> dict:
    r = requests.get(f"{url}/metrics", timeout=10)
    assert r.status_code == 200
    return parse_metrics(r.text)


def evaluations(url: str, gate: str) -> float:
    m = metrics(url)
    return sum(sample(m, "gate_evaluations_total", gate=gate, result=x) or 0 for x in ("pass", "fail", "error"))


# --- slow-loris -------------------------------------------------------------------------------


def test_slow_loris_clients_do_not_stop_metrics(tmp_path: Path, serve):
    s = serve(write(tmp_path / "gates.yml", GOOD))
    base = proc_stats(s.proc.pid)
    conns: list[socket.socket] = []
    stop = threading.Event()
    for i in range(200):
        c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        if i % 2:
            c.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # headers that never end
        else:  # a body that never arrives
            c.sendall(b"POST /api/gates/signoff/attestations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n{\"value\": ")
        conns.append(c)

    def dribble() -> None:
        deadline = time.monotonic() + 20
        n = 0
        while not stop.is_set() and time.monotonic() < deadline:
            for i, c in enumerate(conns):
                with contextlib.suppress(OSError):
                    c.sendall(f"X-Slow-{n}: a\r\n".encode() if i % 2 else b"1")
            n += 1
            stop.wait(0.5)

    t = threading.Thread(target=dribble, daemon=True)
    t.start()
    try:
        # the slow connections really are open on the server
        wait_for(lambda: proc_stats(s.proc.pid).fds >= base.fds + 190, timeout=30, what="200 accepted connections")
        for _ in range(10):
            r = requests.get(f"{s.url}/metrics", timeout=10)
            assert r.status_code == 200 and "gate_passed" in r.text
            assert requests.get(f"{s.url}/-/healthy", timeout=10).status_code == 200
            time.sleep(0.2)
    finally:
        stop.set()
        t.join(5)
        for c in conns:
            c.close()
    # once the clients go away, so do their connections
    wait_for(lambda: proc_stats(s.proc.pid).fds <= base.fds + 2, timeout=30, what="slow connections to be closed")
    assert s.proc.poll() is None


# --- invalid reloads --------------------------------------------------------------------------

def with_gate(gate_id: str) -> str:
    """GOOD plus one more command gate."""
    extra = f"""
          - id: {gate_id}
            interval: 1s
            timeout: 1s
            command: {{ argv: ["true"] }}
"""
    return textwrap.dedent(GOOD).lstrip() + textwrap.indent(textwrap.dedent(extra).lstrip(), " " * 10)


BROKEN = """
tracker: stress
defaults: { interval: soon }
phases:
  - id: p
    steps:
      - id: s
        gates:
          - id: alpha
            command: { argv: ["true"] }
            colour: blue
"""


def test_invalid_reload_keeps_the_old_config_over_http_and_sighup(tmp_path: Path, serve):
    config = write(tmp_path / "gates.yml", GOOD)
    s = serve(config, "--web.enable-lifecycle")
    wait_for(lambda: evaluations(s.url, "alpha") >= 1, timeout=30, what="a first evaluation")
    loaded_at = sample(metrics(s.url), "qualitygate_config_last_reload_success_timestamp_seconds")

    for trigger in ("http", "sighup"):
        write(config, BROKEN)
        failures_logged = s.log().count("config reload failed")
        if trigger == "http":
            r = requests.post(f"{s.url}/-/reload", timeout=30)
            assert r.status_code == 500
            assert f"{config}:2: defaults.interval: " in r.text
            assert f"{config}:10: phases[0].steps[0].gates[0].colour: unknown key" in r.text
        else:
            s.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: sample(metrics(s.url), "qualitygate_config_last_reload_successful") == 0, timeout=30,
                 what=f"reload_successful 0 after {trigger}")
        wait_for(lambda logged=failures_logged: s.log().count("config reload failed") > logged, timeout=30,
                 what="the log line")
        line = [ln for ln in s.log().splitlines() if "config reload failed" in ln][-1]
        assert "level=error" in line and f"{config}:2: defaults.interval" in line, line
        # the old config keeps running: its gates are still evaluated and listed
        m = metrics(s.url)
        assert sample(m, "qualitygate_config_last_reload_success_timestamp_seconds") == loaded_at
        before = evaluations(s.url, "alpha")
        wait_for(lambda seen=before: evaluations(s.url, "alpha") > seen, timeout=30,
                 what="the old gates to keep running")
        assert requests.get(f"{s.url}/api/gates/signoff", timeout=10).status_code == 200

        gate_id = f"added-by-{trigger}"
        write(config, with_gate(gate_id))
        if trigger == "http":
            assert requests.post(f"{s.url}/-/reload", timeout=30).status_code == 200
        else:
            s.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: sample(metrics(s.url), "qualitygate_config_last_reload_successful") == 1, timeout=30,
                 what=f"reload_successful 1 after fixing ({trigger})")
        wait_for(lambda new=gate_id: requests.get(f"{s.url}/api/gates/{new}", timeout=10).status_code == 200,
                 timeout=30, what="the new gate to appear")
        new_stamp = sample(metrics(s.url), "qualitygate_config_last_reload_success_timestamp_seconds")
        assert new_stamp > loaded_at
        loaded_at = new_stamp
        write(config, GOOD)
    assert s.proc.poll() is None


# --- graceful shutdown ------------------------------------------------------------------------


def test_sigterm_cancels_probes_kills_children_and_releases_the_port(tmp_path: Path, serve):
    hung = FaultServer("hang")
    try:
        config = write(tmp_path / "gates.yml", f"""
            tracker: shutdown
            defaults: {{ interval: 1h, timeout: 50m }}
            phases:
              - id: p
                steps:
                  - id: s
                    gates:
                      - id: sleeper
                        command: {{ argv: ["sleep", "{SLEEPS[0]}"] }}
                      - id: family
                        command: {{ shell: "sleep {SLEEPS[1]} & sleep {SLEEPS[2]}" }}
                      - id: hung
                        http: {{ url: "http://127.0.0.1:{hung.port}/" }}
            """)
        s = serve(config)
        pid = s.proc.pid
        wait_for(lambda: all(processes_with_arg(a) for a in SLEEPS[:3]) and hung.accepted >= 1,
                 timeout=30, what="the probes to be in flight")
        assert sample(metrics(s.url), "qualitygate_evaluations_in_flight") == 3
        assert len(children_of(pid)) >= 2

        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(20) == 0
        assert "shutting down" in s.log()
        wait_for(lambda: not any(processes_with_arg(a) for a in SLEEPS[:3]), timeout=10,
                 what="every child and grandchild to be gone")
        with socket.socket() as again:  # the port is free for the next exporter
            again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            again.bind(("127.0.0.1", s.port))
            again.listen()
    finally:
        hung.close()


@pytest.mark.parametrize("sig", [signal.SIGINT])
def test_sigint_shuts_down_like_sigterm(tmp_path: Path, serve, sig: int):
    s = serve(write(tmp_path / "gates.yml", GOOD.replace('["true"]', f'["sleep", "{SLEEPS[3]}"]').replace(
        "interval: 1s\n            timeout: 1s", "interval: 1h\n            timeout: 50m")))
    wait_for(lambda: processes_with_arg(SLEEPS[3]), timeout=30, what="the sleeper to start")
    s.proc.send_signal(sig)
    assert s.proc.wait(20) == 0
    wait_for(lambda: not processes_with_arg(SLEEPS[3]), timeout=10, what="the sleeper to be killed")
