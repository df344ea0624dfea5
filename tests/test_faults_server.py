"""The exporter process under stress: slow-loris clients, invalid reloads (HTTP and SIGHUP), SIGTERM."""

from __future__ import annotations

import contextlib
import secrets
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import ROOT, parse_metrics, sample, wait_for
from faults_support import FaultServer, children_of, proc_stats, processes_with_arg, until_closed

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


HEAD_DRIBBLE = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # headers that never end
BODY_DRIBBLE = (b"POST /api/gates/signoff/attestations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n{\"value\": ")  # never ends


def test_slow_loris_clients_end_at_the_read_timeout(tmp_path: Path, serve):
    """Clients that dribble a request head, dribble a body, or send nothing are cut off at
    --web.read-timeout while they are still sending; /metrics answers throughout; nothing leaks
    over several rounds."""
    s = serve(write(tmp_path / "gates.yml", GOOD), "--web.read-timeout", "2s")
    base = proc_stats(s.proc.pid)
    for round_ in range(3):
        heads, bodies, silent = [], [], []
        started = time.monotonic()  # before the first connection: no deadline can end earlier than 2 s after it
        for _ in range(80):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
            c.sendall(HEAD_DRIBBLE)
            heads.append(c)
            c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
            c.sendall(BODY_DRIBBLE)
            bodies.append(c)
        for _ in range(20):
            silent.append(socket.create_connection(("127.0.0.1", s.port), timeout=5))
        stop = threading.Event()

        def dribble(stop: threading.Event, heads: list[socket.socket], bodies: list[socket.socket]) -> None:
            # well past the timeout: the server, not the client, must end the connections
            n = 0
            while not stop.wait(0.3):
                for c in heads:
                    with contextlib.suppress(OSError):
                        c.sendall(f"X-Slow-{n}: a\r\n".encode())
                for c in bodies:
                    with contextlib.suppress(OSError):
                        c.sendall(b"1")
                n += 1

        t = threading.Thread(target=dribble, args=(stop, heads, bodies), daemon=True)
        t.start()
        try:
            r = requests.get(f"{s.url}/metrics", timeout=10)
            assert r.status_code == 200 and "gate_passed" in r.text
            for c in heads + silent:
                took, got = until_closed(c, 10)
                assert took is not None and got == b"", (round_, got)
            for c in bodies:
                took, got = until_closed(c, 10)
                assert took is not None and got.startswith(b"HTTP/1.1 408 "), (round_, got[:200])
                assert b"request body not received within 2s" in got
            all_closed_after = time.monotonic() - started
            # ended by the 2 s deadline, not by the clients going away
            assert 2 <= all_closed_after < 15, all_closed_after
            assert requests.get(f"{s.url}/-/healthy", timeout=10).status_code == 200
        finally:
            stop.set()
            t.join(5)
            for c in heads + bodies + silent:
                c.close()
        # every connection is gone on the server, while the clients still held theirs open
        wait_for(lambda: proc_stats(s.proc.pid).fds <= base.fds + 2, timeout=10, what="slow connections closed")
    m = metrics(s.url)
    assert sample(m, "qualitygate_http_read_timeouts_total", stage="head") >= 3 * 100
    assert sample(m, "qualitygate_http_read_timeouts_total", stage="body") >= 3 * 80
    # nothing was attested by the cut-off bodies
    assert requests.get(f"{s.url}/api/gates/signoff", timeout=10).json()["status"] != "pass"
    after = proc_stats(s.proc.pid)
    assert after.threads <= base.threads + 2 and after.rss_kib < base.rss_kib + 50_000, (base, after)
    assert s.proc.poll() is None


def test_a_slow_but_timely_client_and_keep_alive_are_served(tmp_path: Path, serve):
    """The head deadline cuts off only what is late: a head sent in pieces within it is answered,
    and a kept-alive connection serves later requests until it idles past --web.idle-timeout.
    Clients that leave mid-body are dropped quietly."""
    s = serve(write(tmp_path / "gates.yml", GOOD), "--web.read-timeout", "2s", "--web.idle-timeout", "6s")
    c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    for piece in (b"GET /-/healthy HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n\r", b"\n"):  # the end split over reads
        c.sendall(piece)
        time.sleep(0.5)
    assert c.recv(65536).startswith(b"HTTP/1.1 200 ")
    time.sleep(2.5)  # past the read timeout: the first head's deadline no longer applies
    c.sendall(b"GET /-/ready HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert c.recv(65536).startswith(b"HTTP/1.1 ")
    # ... but the idle timeout does
    took, got = until_closed(c, 10)
    assert took is not None and got == b"", (took, got)
    c.close()
    # a session that keeps its connection busy is never cut off
    with requests.Session() as session:
        for _ in range(6):
            assert session.get(f"{s.url}/metrics", timeout=10).status_code == 200
            time.sleep(0.8)
    # clients that leave in the middle of a body are dropped without an error log each
    leavers = [socket.create_connection(("127.0.0.1", s.port), timeout=5) for _ in range(20)]
    for c in leavers:
        c.sendall(BODY_DRIBBLE)
    time.sleep(0.5)
    for c in leavers:
        c.close()
    assert requests.get(f"{s.url}/-/healthy", timeout=10).status_code == 200
    time.sleep(0.5)
    assert "level=error" not in s.log() and "Traceback" not in s.log(), s.log()[-3000:]
    m = metrics(s.url)
    assert sample(m, "qualitygate_http_read_timeouts_total", stage="head") == 0
    assert sample(m, "qualitygate_http_read_timeouts_total", stage="body") == 0


@pytest.mark.parametrize("flag,value,message", [
    ("--web.read-timeout", "soon", "--web.read-timeout: "),
    ("--web.idle-timeout", "0s", "--web.idle-timeout must be more than 0s"),
])
def test_bad_timeout_flags_exit_2(tmp_path: Path, flag: str, value: str, message: str):
    proc = subprocess.run([sys.executable, "-m", "exporter", "serve", "--config.file",
                           str(write(tmp_path / "gates.yml", GOOD)), flag, value],
                          capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


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


def test_sigint_shuts_down_like_sigterm(tmp_path: Path, serve):
    s = serve(write(tmp_path / "gates.yml", GOOD.replace('["true"]', f'["sleep", "{SLEEPS[3]}"]').replace(
        "interval: 1s\n            timeout: 1s", "interval: 1h\n            timeout: 50m")))
    wait_for(lambda: processes_with_arg(SLEEPS[3]), timeout=30, what="the sleeper to start")
    s.proc.send_signal(signal.SIGINT)
    assert s.proc.wait(20) == 0
    wait_for(lambda: not processes_with_arg(SLEEPS[3]), timeout=10, what="the sleeper to be killed")
