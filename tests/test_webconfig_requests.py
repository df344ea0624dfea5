"""What a request can and cannot do: body limits, the lifecycle rule, and no path from request data to an effect.

Every route is attacked with traversal paths and a unique marker in the path, query, headers and
body. The exporter's outward effects (command argv/env/cwd, PromQL queries, HTTP probe requests,
files) are recorded, and the marker must never reach them.
"""

from __future__ import annotations

import http.server
import json
import os
import secrets
import socket
import sys
import textwrap
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from conftest import ROOT, parse_metrics, sample, wait_for

MARKER = "qgtaint" + secrets.token_hex(6)
RECORDER = """
import json, os, sys
with open(sys.argv[1], "a") as fh:
    fh.write(json.dumps({"argv": sys.argv, "env": dict(os.environ), "cwd": os.getcwd()}) + "\\n")
"""


class Recorder:
    """A loopback HTTP server that records every request and answers like Prometheus's query API."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
                recorder.seen.append(urllib.parse.unquote(f"{self.command} {self.path} {dict(self.headers)} {body}"))
                out = json.dumps({"status": "success", "data": {"resultType": "vector",
                                  "result": [{"metric": {}, "value": [0, "1"]}]}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = _answer  # noqa: N815 - http.server's naming

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    r = Recorder()
    yield r
    r.close()


def tracker_yaml(tmp_path: Path, port: int) -> Path:
    script = tmp_path / "record.py"
    script.write_text(RECORDER)
    path = tmp_path / "tracker.yml"
    path.write_text(textwrap.dedent(f"""
        tracker: hard
        prometheus: {{ url: "http://127.0.0.1:{port}" }}
        defaults: {{ interval: 1s, timeout: 1s }}
        phases:
          - id: p
            steps:
              - id: s
                gates:
                  - id: cmd
                    command: {{ argv: ["{sys.executable}", "{script}", "{tmp_path / 'commands.jsonl'}"] }}
                  - id: web
                    http: {{ url: "http://127.0.0.1:{port}/health" }}
                  - id: prom
                    promql: {{ query: 'up{{job="x"}}' }}
                    expect: "== 1"
                  - id: file
                    file: {{ path: "{tmp_path / 'sentinel.txt'}" }}
                  - id: signoff
                    manual: {{ max_age: 1d }}
        """).lstrip())
    return path


def evaluations(s, gate: str) -> float:
    m = parse_metrics(s.get("/metrics")[1])
    return sum(sample(m, "gate_evaluations_total", gate=gate, result=r) or 0 for r in ("pass", "fail", "error"))


def raw_request(port: int, request_line: str, timeout: float = 10.0) -> bytes:
    """Send a request line exactly as written (no client-side normalisation of `..`); return the reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"{request_line}\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode("latin-1"))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


TRAVERSALS = [
    "/api/gates/..%2F..%2Fetc%2Fpasswd", "/api/gates/../../etc/passwd", "/api/gates/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/gates/..%2F..%2Fetc%2Fpasswd", "/assets/../../../etc/passwd", "/assets/..%2f..%2f..%2fetc%2fpasswd",
    "/assets/%2e%2e/%2e%2e/exporter/config.py", "//etc/passwd", "/metrics/../../etc/passwd",
    "/api/gates/cmd/..%2F..%2F..%2Fsentinel.txt", "/api/gates/%00", "/api/gates/cmd%00.txt",
    "/api/progress/status?tracker=../../etc/passwd", "/?tracker=..%2F..%2Fetc%2Fpasswd",
    "/api/gates/cmd/attestations/../../../../etc/passwd",
]


def test_no_request_data_reaches_a_command_query_probe_or_file(tmp_path: Path, recorder: Recorder, serve):
    sentinel = tmp_path / "sentinel.txt"
    sentinel.write_text("untouched\n")
    before = sentinel.stat()
    s = serve(tracker_yaml(tmp_path, recorder.port), "--web.enable-lifecycle")
    wait_for(lambda: all(evaluations(s, g) >= 1 for g in ("cmd", "web", "prom", "file")), timeout=60,
             what="every gate to be evaluated once")

    m = MARKER
    sent = 0
    routes = ["/metrics", "/-/healthy", "/-/ready", "/-/reload", "/api/progress/status", "/api/gates",
              "/api/gates/cmd", f"/api/gates/{m}", "/api/gates/signoff/attestations", f"/api/gates/{m}/attestations",
              "/api/gates/cmd/attestations", "/", "/gates/cmd", f"/gates/{m}", f"/assets/{m}.css", f"/{m}"]
    query = urllib.parse.urlencode({"tracker": m, "query": f'up{{job="{m}"}} or vector(1)', "path": f"../../{m}",
                                    "cmd": f"; touch {tmp_path / m}", "tier": m, "status": m, "gate": m})
    headers = {"X-Qg-Marker": m, "User-Agent": m, "Cookie": f"session={m}", "Referer": f"http://{m}/",
               "X-Forwarded-For": m, "Accept": f"application/openmetrics-text; {m}", "Content-Type": "application/json"}
    body = json.dumps({"value": 1, "note": f"$({m}) `{m}` ../../{m}", "by": m, "path": f"/tmp/{m}"})
    for route in routes:
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"):
            r = requests.request(method, f"{s.url}{route}?{query}", headers=headers, data=body, timeout=10)
            sent += 1
            assert r.status_code < 500, (method, route, r.status_code)
            assert f"<script>{m}" not in r.text
    for path in TRAVERSALS:
        for method in ("GET", "POST"):
            reply = raw_request(s.port, f"{method} {path} HTTP/1.1")
            sent += 1
            status = int(reply.split(b" ", 2)[1])
            assert status == 404 if method == "GET" else status in (404, 405), (method, path, reply[:200])
            assert b"root:x:0:0" not in reply and b"def parse_config" not in reply
    # the XSS probe: a reflected tracker name is escaped, never raw markup
    r = requests.get(f"{s.url}/", params={"tracker": f"<script>{m}</script>"}, timeout=10)
    assert f"<script>{m}" not in r.text
    assert sent == len(routes) * 7 + len(TRAVERSALS) * 2 and s.proc.poll() is None

    # let every gate run at least twice more, so any taint would have had time to flow
    counts = {g: evaluations(s, g) for g in ("cmd", "web", "prom", "file")}
    wait_for(lambda: all(evaluations(s, g) >= counts[g] + 2 for g in counts), timeout=60, what="more evaluations")

    commands = (tmp_path / "commands.jsonl").read_text()
    assert commands.count("\n") >= 3
    assert m not in commands
    assert recorder.seen and all(m not in seen for seen in recorder.seen)
    assert any("/api/v1/query" in seen and 'up{job="x"}' in seen for seen in recorder.seen)
    assert sentinel.read_text() == "untouched\n" and sentinel.stat().st_mtime_ns == before.st_mtime_ns
    for folder in (tmp_path, ROOT, Path("/tmp")):
        assert not any(m in name for name in os.listdir(folder))
    for dirpath, _, filenames in os.walk(tmp_path):
        for name in filenames:
            if name.startswith("serve-"):
                continue  # the exporter's own log
            assert m not in (Path(dirpath) / name).read_bytes().decode("utf-8", "replace"), name
    # nothing was reloaded by all those POST /-/reload: the attack bodies carried no config
    assert sample(parse_metrics(s.get("/metrics")[1]), "qualitygate_config_last_reload_successful") == 1.0


def test_request_bodies_are_limited_to_64_kib(tmp_path: Path, recorder: Recorder, serve):
    s = serve(tracker_yaml(tmp_path, recorder.port))
    url = f"{s.url}/api/gates/signoff/attestations"
    big = json.dumps({"value": 1, "note": "x" * (64 * 1024)})
    r = requests.post(url, data=big, headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 413

    def chunked():  # no Content-Length: the limit holds while reading
        for _ in range(100):
            yield b" " * 1024
        yield b'{"value": 1}'

    r = requests.post(url, data=chunked(), headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 413
    detail = requests.get(f"{s.url}/api/gates/signoff", timeout=10).json()
    assert detail.get("attestations", []) == []  # nothing stored
    small = requests.post(url, json={"value": 1, "note": "ok"}, timeout=10)
    assert small.status_code in (200, 201), small.text


def test_reload_is_refused_without_the_lifecycle_flag(tmp_path: Path, recorder: Recorder, serve):
    config = tracker_yaml(tmp_path, recorder.port)
    s = serve(config)
    stamp = sample(parse_metrics(s.get("/metrics")[1]), "qualitygate_config_last_reload_success_timestamp_seconds")
    config.write_text(config.read_text().replace("id: signoff", "id: renamed"))
    for method in ("POST", "PUT"):
        r = requests.request(method, f"{s.url}/-/reload", timeout=10)
        assert r.status_code == 403 and "--web.enable-lifecycle" in r.text
    assert requests.get(f"{s.url}/-/reload", timeout=10).status_code == 405
    m = parse_metrics(s.get("/metrics")[1])
    assert sample(m, "qualitygate_config_last_reload_success_timestamp_seconds") == stamp
    assert requests.get(f"{s.url}/api/gates/signoff", timeout=10).status_code == 200
    assert requests.get(f"{s.url}/api/gates/renamed", timeout=10).status_code == 404
