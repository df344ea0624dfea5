"""What every benchmark shares: processes on loopback, their CPU and memory, the exporter, nginx."""

from __future__ import annotations

import contextlib
import gzip
import http.client
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
# What Prometheus 2.42 sends when it scrapes.
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


class BenchError(Exception):
    """A benchmark could not run (a tool missing, a process that did not start)."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for nginx and blackbox_exporter, which cannot report a port
    they chose; the exporter binds :0 and logs its port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of proc(5)


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0]) * 1024
    return out


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by the nearest-rank method."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.02) -> object:
    """Poll until predicate() is truthy; raise BenchError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - keep polling until the deadline
            last = exc
        time.sleep(interval)
    raise BenchError(f"timed out after {timeout:g}s waiting for {what}" + (f" ({last})" if last else ""))


def http_status(url: str, timeout: float = 2.0) -> int:
    """The status of GET url (0 when nothing answers)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def machine() -> dict[str, object]:
    """What the numbers were measured on."""
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")
    return {"cpu": model, "cores": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
            "loadavg_at_start": os.getloadavg()[0]}


@dataclass
class Proc:
    """A process started by a benchmark; stopped (TERM, then KILL) when the benchmark ends."""

    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)

    def tail(self, n: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        return ""


@contextlib.contextmanager
def process(argv: list[str], workdir: Path, name: str, env: dict[str, str] | None = None) -> Iterator[Proc]:
    """Run argv with its output in workdir/NAME.log until the block ends."""
    log = workdir / f"{name}.log"
    with open(log, "wb") as fh:
        popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, cwd=workdir,
                                 env=env, start_new_session=True)
    proc = Proc(popen, log)
    try:
        yield proc
    finally:
        proc.stop()


def need(tool: str) -> str:
    """The path of a tool from Debian's packages (bench/run.sh installs them)."""
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if os.path.exists(f"/usr/sbin/{tool}") else None)
    if not path:
        raise BenchError(f"{tool} is not installed (run bash scripts/system-deps.sh)")
    return path


# --- the exporter -----------------------------------------------------------------------------------------

@dataclass
class Exporter:
    """A running `qualitygate serve`."""

    proc: Proc
    port: int
    started: float  # time.monotonic() when it was launched
    ready_after: float = 0.0
    conn: http.client.HTTPConnection | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def scrape(self, headers: dict[str, str] | None = None) -> tuple[float, bytes, dict[str, str]]:
        """One GET /metrics on a kept-alive connection: (seconds to the last byte, raw body, headers)."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        t0 = time.perf_counter()
        self.conn.request("GET", "/metrics", headers=headers or {})
        resp = self.conn.getresponse()
        body = resp.read()
        elapsed = time.perf_counter() - t0
        if resp.status != 200:
            raise BenchError(f"/metrics answered {resp.status}")
        return elapsed, body, {k.lower(): v for k, v in resp.getheaders()}

    def metrics_text(self) -> str:
        """The text format, decoded."""
        _, body, headers = self.scrape({"Accept-Encoding": "gzip"})
        return (gzip.decompress(body) if headers.get("content-encoding") == "gzip" else body).decode()

    def samples(self, *names: str) -> dict[str, float]:
        """Sums of the samples of these metric names (all label sets)."""
        sums = dict.fromkeys(names, 0.0)
        for line in self.metrics_text().splitlines():
            if line.startswith("#"):
                continue
            name = re.split(r"[{ ]", line, maxsplit=1)[0]
            if name in sums:
                sums[name] += float(line.rsplit(" ", 1)[1])
        return sums

    def pending(self) -> float:
        """Gates not evaluated yet."""
        total = 0.0
        for line in self.metrics_text().splitlines():
            if line.startswith("tracker_gates{") and 'status="pending"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def wait_evaluated(self, timeout: float, interval: float = 0.5) -> None:
        """Until every gate has had its first evaluation."""
        wait_for(lambda: self.pending() == 0, timeout, "every gate's first evaluation", interval=interval)


# The exporter's start line, logfmt or JSON: msg=listening ... address=HOST:PORT
LISTENING = re.compile(r'"?msg"?[=:] ?"?listening\b.*?"?address"?[=:] ?"?[^\s"]*:(\d+)')


@contextlib.contextmanager
def exporter(config: Path, workdir: Path, *extra: str, ready_timeout: float = 60.0) -> Iterator[Exporter]:
    """Start `qualitygate serve` on 127.0.0.1:0 (own state file), read its port from the "listening" log line
    (so the log level must stay at info or below), and wait until /-/ready."""
    argv = [PYTHON, "-m", "exporter", "serve", "--config.file", str(config), "--web.listen-address",
            "127.0.0.1:0", "--storage.path", str(workdir / "state.db"), *extra]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    started = time.monotonic()
    with process(argv, workdir, "exporter", env) as proc:

        def port() -> int | None:
            if not proc.alive():
                raise BenchError(f"the exporter exited:\n{proc.tail()}")
            found = LISTENING.search(proc.log.read_text(errors="replace"))
            return int(found.group(1)) if found else None

        exp = Exporter(proc, int(wait_for(port, ready_timeout, "the exporter to listen", interval=0.01)), started)

        def ready() -> bool:
            if not proc.alive():
                raise BenchError(f"the exporter exited:\n{proc.tail()}")
            return http_status(f"{exp.url}/-/ready", timeout=1) == 200

        try:
            wait_for(ready, ready_timeout, "the exporter to become ready", interval=0.01)
        except BenchError as exc:
            raise BenchError(f"{exc}\n{proc.tail()}") from None
        exp.ready_after = time.monotonic() - started
        try:
            yield exp
        finally:
            if exp.conn is not None:
                exp.conn.close()


# --- nginx, the local HTTP target -----------------------------------------------------------------------

NGINX_CONF = """\
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
daemon off;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ default_type text/plain; return 200 "ok\\n"; }}
    }}
}}
"""


@contextlib.contextmanager
def nginx(workdir: Path, workers: int = 1) -> Iterator[str]:
    """A local nginx answering 200 "ok" on every path; yields its URL."""
    binary = need("nginx")
    port = free_port()
    ndir = workdir / "nginx"
    ndir.mkdir(exist_ok=True)
    conf = ndir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(workers=workers, dir=ndir, port=port))
    with process([binary, "-c", str(conf), "-p", str(ndir)], workdir, "nginx") as proc:
        url = f"http://127.0.0.1:{port}/health"
        wait_for(lambda: proc.alive() and http_status(url) == 200, 10, "nginx")
        yield url
