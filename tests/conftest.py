"""Shared fixtures: config files, and a real `qualitygate serve` subprocess on a port it chose itself."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTDATA = Path(__file__).resolve().parent / "testdata"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, and possibly taken by someone else a moment later.

    Only for a port nothing should answer on (a refused connection) or for a third-party server
    that cannot bind port 0 and report it; an exporter binds :0 and says its port (`listening_port`)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    """Poll until predicate() is truthy; return its value or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - keep polling until the deadline
            last_exc = exc
        time.sleep(interval)
    detail = f" (last error: {last_exc})" if last_exc else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")


def http_get(url: str, timeout: float = 5.0, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """GET a URL; (status, body) for any status."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a YAML config (dedented) into tmp_path and return its path."""
    def write(text: str, name: str = "gates.yml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path
    return write


def one_step_tracker(gates: str, *, tracker: str = "t", title: str = "T", **top: str) -> str:
    """Tracker YAML with one phase `p` and one step `s` holding `gates` (list items, any common indent).

    `top` adds top-level keys after the title, in order, e.g. uptime_window="7d".
    """
    extra = "".join(f"{key}: {value}\n" for key, value in top.items())
    items = textwrap.indent(textwrap.dedent(gates).lstrip("\n"), " " * 10)
    return (f"tracker: {tracker}\ntitle: {title}\n{extra}phases:\n  - id: p\n    title: P\n    steps:\n"
            f"      - id: s\n        title: S\n        gates:\n{items}")


_LISTENING = re.compile(r'"?msg"?[=:] ?"?listening\b.*?"?address"?[=:] ?"?[^\s"]*:(\d+)')
_SERVES = itertools.count(1)


def listening_port(log_text: str) -> int | None:
    """The port of the exporter's "listening" log line (logfmt or JSON), None until it is logged."""
    match = _LISTENING.search(log_text)
    return int(match.group(1)) if match else None


def wait_listening(proc: subprocess.Popen[str], log_path: Path, timeout: float = 30.0) -> int:
    """Wait for a `qualitygate serve` started with --web.listen-address HOST:0 to log its bound port."""

    def port() -> int | None:
        if proc.poll() is not None:
            raise AssertionError(f"exporter exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
        return listening_port(log_path.read_text(errors="replace"))

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = port()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no 'listening' line within {timeout}s:\n{log_path.read_text(errors='replace')[-4000:]}")


@dataclass
class Served:
    """A running `qualitygate serve` subprocess."""

    proc: subprocess.Popen[str]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, **kw: object) -> tuple[int, str]:
        return http_get(self.url + path, **kw)  # type: ignore[arg-type]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def start_serve(config: Path | list[Path], tmp_path: Path, *extra_args: str, ready: bool = True,
                env: dict[str, str] | None = None, storage: bool = True,
                probe: Callable[[Served], bool] | None = None) -> Served:
    """Start a real exporter on 127.0.0.1:0, read the port it bound from its log, and wait until it is
    healthy (and ready).

    `probe` replaces the plain-HTTP health check, for an exporter behind TLS or auth."""
    n = next(_SERVES)
    configs = config if isinstance(config, list) else [config]
    args = [sys.executable, "-m", "exporter", "serve", "--web.listen-address", "127.0.0.1:0"]
    for c in configs:
        args += ["--config.file", str(c)]
    if storage and not any(a.startswith("--storage.path") for a in extra_args):
        args += ["--storage.path", str(tmp_path / f"state-{n}.db")]
    args += list(extra_args)
    log_path = tmp_path / f"serve-{n}.log"
    with open(log_path, "w") as log_file:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, text=True, cwd=str(ROOT),
                                env={**os.environ, **(env or {})})
    served = Served(proc, 0, log_path)
    try:
        served.port = wait_listening(proc, log_path)
        healthy = probe or (lambda s: s.get("/-/healthy", timeout=1)[0] == 200)
        wait_for(lambda: proc.poll() is not None or healthy(served), timeout=30, what="exporter to start")
        if proc.poll() is not None:
            raise AssertionError(f"exporter exited with {proc.returncode}:\n{served.log()}")
        if ready and probe is None:
            wait_for(lambda: served.get("/-/ready", timeout=1)[0] == 200, timeout=30, what="exporter ready")
    except AssertionError as exc:
        served.stop(signal.SIGKILL)
        raise AssertionError(f"{exc}\n--- exporter log ---\n{served.log()[-4000:]}") from None
    except BaseException:
        served.stop(signal.SIGKILL)
        raise
    return served


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Start exporters with start_serve; all are stopped at teardown."""
    started: list[Served] = []

    def run(config: Path | list[Path], *extra: str, **kw: object) -> Served:
        s = start_serve(config, tmp_path, *extra, **kw)  # type: ignore[arg-type]
        started.append(s)
        return s

    yield run
    for s in started:
        with contextlib.suppress(Exception):
            s.stop()


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Parse Prometheus text exposition into {(name, labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def sample(metrics: dict, name: str, **labels: str) -> float | None:
    """The value of the one sample of `name` whose labels include `labels` (None if absent)."""
    hits = [v for (n, ls), v in metrics.items() if n == name and set(labels.items()) <= ls]
    assert len(hits) <= 1, f"{len(hits)} samples of {name} match {labels}"
    return hits[0] if hits else None
