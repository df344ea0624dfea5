"""Issue 2's figure: evaluations per second, CPU and RSS of `serve` with 1,000 http gates.

    .venv/bin/python bench/core_http_1000.py [--gates 1000] [--interval 1s] [--seconds 20]

Starts nginx (Debian's nginx-light) on a loopback port as the target, a real `qualitygate serve`
with N http gates against it, waits out the first-run spread, then counts evaluations from
/metrics over the measuring window and reads the exporter's CPU time and RSS from /proc.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_port(serve: subprocess.Popen[str]) -> int:
    """The port of the exporter's "listening" line; later warnings and errors are passed on to stderr."""
    assert serve.stderr is not None
    stream = serve.stderr

    def drain() -> None:  # the pipe must be read to the end, or a full pipe would stall the exporter
        for line in stream:
            if "level=warn" in line or "level=error" in line:
                sys.stderr.write(line)

    for line in stream:
        found = re.search(r"msg=listening .*address=\S*:(\d+)", line)
        if found:
            threading.Thread(target=drain, daemon=True).start()
            return int(found.group(1))
    raise SystemExit(f"the exporter exited with {serve.wait()} before listening")


def start_nginx(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    tmp.chmod(0o755)  # nginx's workers run as an unprivileged user
    (tmp / "www").mkdir()
    (tmp / "www" / "health").write_text("ok\n")
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
daemon off;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fcgi;
  uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  server {{ listen 127.0.0.1:{port}; root {tmp}/www; }}
}}
""")
    proc = subprocess.Popen(["nginx", "-e", str(tmp / "error.log"), "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("nginx did not start")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m[1]) / 1024 if m else float("nan")


def evaluations(url: str) -> float:
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    lines = (line for line in text.splitlines() if line.startswith("gate_evaluations_total{"))
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gates", type=int, default=1000)
    ap.add_argument("--interval", default="1s")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=6.0, help="seconds after ready before measuring")
    args = ap.parse_args()
    if not shutil.which("nginx"):
        raise SystemExit("nginx is missing: bash scripts/system-deps.sh")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        nginx, target = start_nginx(tmp)
        gates = "".join(f'          - {{id: g{i}, http: {{url: "http://127.0.0.1:{target}/health"}}}}\n'
                        for i in range(args.gates))
        config = tmp / "gates.yml"
        config.write_text(f"tracker: bench\ndefaults: {{interval: {args.interval}, timeout: 1s}}\nphases:\n"
                          f"  - id: p\n    steps:\n      - id: s\n        gates:\n{gates}")
        # Port 0 and the port read from the "listening" line (info level): no race for a free port.
        serve = subprocess.Popen([sys.executable, "-m", "exporter", "serve", "--config.file", str(config),
                                  "--web.listen-address", "127.0.0.1:0", "--storage.path", str(tmp / "s.db")],
                                 cwd=str(ROOT), stderr=subprocess.PIPE, text=True)
        url = f"http://127.0.0.1:{listening_port(serve)}"
        try:
            for _ in range(200):
                try:
                    if urllib.request.urlopen(url + "/-/ready", timeout=1).status == 200:
                        break
                except OSError:
                    time.sleep(0.1)
            time.sleep(args.warmup)  # past the first round
            e0, c0, t0 = evaluations(url), cpu_seconds(serve.pid), time.monotonic()
            time.sleep(args.seconds)
            e1, c1, t1 = evaluations(url), cpu_seconds(serve.pid), time.monotonic()
            rate = (e1 - e0) / (t1 - t0)
            text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
            lag = re.search(r"^qualitygate_scheduler_lag_seconds ([0-9.e+-]+)$", text, re.M)
            skipped = re.search(r"^qualitygate_evaluations_skipped_total ([0-9.e+-]+)$", text, re.M)
            print(f"gates={args.gates} interval={args.interval} window={t1 - t0:.1f}s cores={os.cpu_count()}")
            print(f"evaluations/s={rate:.0f} (expected {args.gates}/interval)")
            print(f"exporter CPU={100 * (c1 - c0) / (t1 - t0):.0f}% of one core, "
                  f"{1000 * (c1 - c0) / max(1, e1 - e0):.2f} ms CPU per evaluation")
            print(f"RSS={rss_mb(serve.pid):.0f} MB  p99 schedule lag={float(lag[1]) if lag else float('nan'):.3f}s  "
                  f"skipped={float(skipped[1]) if skipped else float('nan'):.0f}")
        finally:
            serve.send_signal(signal.SIGTERM)
            serve.wait(20)
            nginx.send_signal(signal.SIGQUIT)
            nginx.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
