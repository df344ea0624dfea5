"""Report sources: path (never blocking: FIFOs, the report pool), url (real local HTTP/TLS servers), push."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from conftest import ROOT, one_step_tracker, parse_metrics, sample, wait_for
from exporter.engine.evaluate import evaluate
from exporter.probes import KINDS, REPORT_KINDS, ProbeError, PushRecord, offload, reading
from exporter.probes.coverage import CoverageSpec
from exporter.probes.http import BasicAuthSpec, TLSSpec
from exporter.probes.json_file import JSONFileSpec
from exporter.probes.junit import JUnitSpec
from exporter.probes.sources import MAX_URL_BODY, PushSource, shown_url
from faults_support import write_huge_junit
from probe_support import config_errors, make_ctx, parse_gate, run_probe

REPORTS = Path(__file__).parent / "testdata" / "reports"
JUNIT_OK = (b'<testsuite tests="2"><testcase name="a"/><testcase name="b"/></testsuite>')
JUNIT_FAILING = b'<testsuite><testcase name="a"><failure/></testcase><testcase name="b"/></testsuite>'
TOKEN = "s3cr3t-token"


# --- path: never block -----------------------------------------------------------------------


def test_open_regular_refuses_what_is_not_a_regular_file(tmp_path: Path):
    fifo = tmp_path / "junit.xml"
    os.mkfifo(fifo)
    # No writer ever opens this FIFO: a plain open() would block forever.
    with pytest.raises(ProbeError, match=r"^junit\.xml: is a FIFO, not a regular file$"):
        reading.open_regular(str(fifo), "junit.xml")
    with pytest.raises(ProbeError, match=r"^d: is a directory$"):
        reading.open_regular(str(tmp_path), "d")
    with pytest.raises(ProbeError, match=r"^null: is a device, not a regular file$"):
        reading.open_regular("/dev/null", "null")
    sock_path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        with pytest.raises(ProbeError, match=r"^s: is a socket, not a regular file$"):
            reading.open_regular(str(sock_path), "s")


@pytest.mark.parametrize("kind, spec", [
    ("junit", lambda p: JUnitSpec(path=p)),
    ("coverage", lambda p: CoverageSpec(path=p)),
    ("json_file", lambda p: JSONFileSpec(path=p, json_path="$.x")),
])
async def test_a_fifo_report_is_an_error_at_once(tmp_path: Path, kind: str, spec):
    fifo = tmp_path / "report"
    os.mkfifo(fifo)
    with pytest.raises(ProbeError, match=r"^report: is a FIFO, not a regular file$"):
        await run_probe(kind, spec(str(fifo)), make_ctx(base_dir=str(tmp_path)))


async def test_junit_glob_matching_a_fifo_is_an_error(tmp_path: Path):
    (tmp_path / "a.xml").write_bytes(JUNIT_OK)
    os.mkfifo(tmp_path / "b.xml")
    # A glob only sums regular files: the FIFO is not even opened.
    m = await run_probe("junit", JUnitSpec(path=str(tmp_path / "*.xml")), make_ctx(base_dir=str(tmp_path)))
    assert m.values["tests"] == 2


async def test_a_read_still_running_is_skipped_and_counted_never_stacked():
    started, release = threading.Event(), threading.Event()

    def stuck() -> str:
        started.set()
        release.wait()
        return "done"

    key = ("g", "/mnt/hung/junit.xml")
    first = asyncio.ensure_future(reading.run_read(key, stuck))
    await asyncio.get_running_loop().run_in_executor(None, started.wait)
    before = reading.skipped_reads()
    with pytest.raises(ProbeError, match=r"^previous read still running$"):
        await reading.run_read(key, stuck)
    assert reading.skipped_reads() == before + 1
    # The waiting coroutine giving up (the gate's timeout) does not free the key: the worker is still stuck.
    first.cancel()
    with pytest.raises(ProbeError, match="still running"):
        await reading.run_read(key, stuck)
    # Another gate is not held up by it.
    assert await reading.run_read(("other", "x"), lambda: 42) == 42
    release.set()
    await asyncio.get_running_loop().run_in_executor(None, wait_for, lambda: key not in reading._running)
    assert await reading.run_read(key, lambda: "again") == "again"


def test_report_pool_workers_are_daemon_threads():
    # A worker stuck in the kernel (a hung mount) must not keep the process alive at exit.
    done = reading.pool().submit(threading.current_thread)
    worker = done.result(timeout=10)
    assert worker.daemon and worker.name.startswith("report-read")


def _fifo_config(tmp_path: Path) -> Path:
    os.mkfifo(tmp_path / "hung.xml")
    (tmp_path / "ok.xml").write_bytes(JUNIT_OK)
    (tmp_path / "cov.json").write_text('{"totals": {"covered_lines": 9, "num_statements": 10}}')
    healthy = "".join(
        f"- id: healthy-{i}\n  interval: 1s\n  timeout: 500ms\n  junit: {{path: ok.xml}}\n"
        f"- id: cov-{i}\n  interval: 1s\n  timeout: 500ms\n  coverage: {{path: cov.json}}\n  expect: '>= 80%'\n"
        for i in range(4))
    gates = healthy + "- id: fifo\n  interval: 1s\n  timeout: 500ms\n  junit: {path: hung.xml}\n"
    path = tmp_path / "gates.yml"
    path.write_text(one_step_tracker(gates))
    return path


def test_fifo_report_next_to_healthy_gates_in_a_real_serve(tmp_path: Path, serve):
    served = serve(_fifo_config(tmp_path))

    def evaluations() -> dict[str, float]:
        metrics = parse_metrics(served.get("/metrics")[1])
        return {g: sample(metrics, "gate_evaluations_total", gate=g, result="pass") or 0.0
                for g in ("healthy-0", "healthy-3", "cov-2")}

    wait_for(lambda: min(evaluations().values()) >= 1, timeout=30, what="first evaluations")
    first = evaluations()
    # Well past the point where the loop's default pool (6 threads here) would be used up by stuck reads.
    wait_for(lambda: all(v >= first[g] + 8 for g, v in evaluations().items()), timeout=60,
             what="healthy gates to keep evaluating")
    metrics = parse_metrics(served.get("/metrics")[1])
    assert sample(metrics, "gate_probe_error", gate="fifo") == 1
    assert sample(metrics, "gate_passed", gate="healthy-1") == 1
    assert "hung.xml: is a FIFO, not a regular file" in served.get("/api/progress/status")[1]
    t0 = time.monotonic()
    assert served.stop(timeout=20) == 0
    assert time.monotonic() - t0 < 20  # it exited by itself on SIGTERM


def test_fifo_report_check_returns(tmp_path: Path):
    config = _fifo_config(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "exporter", "check", "--config.file", str(config)],
                          capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    fifo_line = next(line for line in proc.stdout.splitlines() if " fifo " in f" {line} ")
    assert "error" in fifo_line.lower() and "FIFO" in fifo_line
    assert sum("healthy-" in line and "pass" in line.lower() for line in proc.stdout.splitlines()) == 4


# --- url -------------------------------------------------------------------------------------


def make_app(seen: list[dict[str, str]]) -> web.Application:
    async def report(request: web.Request) -> web.StreamResponse:
        seen.append(dict(request.headers))
        name = request.match_info["name"]
        if name == "huge":
            resp = web.StreamResponse()
            await resp.prepare(request)
            chunk = b"<!-- padding -->" * 4096
            for _ in range(MAX_URL_BODY // len(chunk) + 2):
                await resp.write(chunk)
            return resp
        if name == "auth":
            want = "Basic " + base64.b64encode(f"ci:{TOKEN}".encode()).decode()
            if request.headers.get("Authorization") not in (want, f"Bearer {TOKEN}"):
                return web.Response(status=401)
        if name == "cov.json":
            return web.Response(body=(REPORTS / "coverage.json").read_bytes())
        if name in ("junit.xml", "auth"):
            return web.Response(body=JUNIT_FAILING, content_type="application/xml")
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/r/{name}", report)
    return app


@pytest.fixture
async def target(aiohttp_server):
    seen: list[dict[str, str]] = []
    server = await aiohttp_server(make_app(seen))
    server.seen = seen
    return server


def url(server, name: str) -> str:
    return str(server.make_url(f"/r/{name}"))


async def test_url_report_is_fetched_and_parsed(target):
    m = await run_probe("junit", JUnitSpec(url=url(target, "junit.xml"), headers={"X-CI": "1"}))
    assert not m.ok and m.values["tests"] == 2 and m.values["failures"] == 1
    assert target.seen[-1]["X-CI"] == "1" and target.seen[-1]["User-Agent"].startswith("qualitygate-exporter/")
    m = await run_probe("coverage", CoverageSpec(url=url(target, "cov.json")))
    assert m.value == pytest.approx(0.9)


async def test_url_auth_from_files(target, tmp_path: Path):
    (tmp_path / "token").write_text(TOKEN + "\n")
    with pytest.raises(ProbeError, match=r"/r/auth: status 401, expected 2xx$"):
        await run_probe("junit", JUnitSpec(url=url(target, "auth")))
    m = await run_probe("junit", JUnitSpec(url=url(target, "auth"), bearer_token_file=str(tmp_path / "token")))
    assert m.values["tests"] == 2
    spec = JUnitSpec(url=url(target, "auth"), basic_auth=BasicAuthSpec("ci", str(tmp_path / "token")))
    assert (await run_probe("junit", spec)).values["tests"] == 2
    with pytest.raises(ProbeError, match=r"^nope: no such file$"):
        await run_probe("junit", JUnitSpec(url=url(target, "auth"), bearer_token_file=str(tmp_path / "nope")),
                        make_ctx(base_dir=str(tmp_path)))


async def test_url_errors_are_errors_and_never_show_the_query(target):
    with pytest.raises(ProbeError) as info:
        await run_probe("junit", JUnitSpec(url=url(target, "missing.xml") + "?X-Amz-Signature=SECRET"))
    assert str(info.value) == f"{url(target, 'missing.xml')}: status 404, expected 2xx"
    with pytest.raises(ProbeError, match=r"/r/huge: larger than 32 MiB$"):
        await run_probe("junit", JUnitSpec(url=url(target, "huge")), make_ctx(timeout=60))
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    with pytest.raises(ProbeError, match=r": connection refused$"):
        await run_probe("junit", JUnitSpec(url=f"http://127.0.0.1:{port}/r/x"))
    assert shown_url("https://user:pw@example.com:8443/a/b?token=x#f") == "https://example.com:8443/a/b"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def test_url_over_tls_with_ca_file(aiohttp_server, ca: trustme.CA, tmp_path: Path):
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    server = await aiohttp_server(make_app([]), ssl=server_ctx)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    target_url = url(server, "junit.xml")
    assert target_url.startswith("https://")
    with pytest.raises(ProbeError, match="TLS: certificate verify failed"):
        await run_probe("junit", JUnitSpec(url=target_url))
    m = await run_probe("junit", JUnitSpec(url=target_url, tls=TLSSpec(ca_file=str(tmp_path / "ca.pem"))))
    assert m.values["failures"] == 1
    m = await run_probe("junit", JUnitSpec(url=target_url, tls=TLSSpec(insecure_skip_verify=True)))
    assert m.values["tests"] == 2


# --- push ------------------------------------------------------------------------------------


async def test_push_judges_the_latest_counting_record():
    now = 1_700_000_000.0
    record = PushRecord(at=now - 3600, values={"value": 0.9}, branch="main", digest="ab")
    spec = CoverageSpec(push=PushSource(max_age=86400, branch="main"))
    m = await run_probe("coverage", spec, make_ctx(evidence=lambda gid: record, now=lambda: now))
    assert m.ok and m.value == 0.9
    m = await run_probe("coverage", spec, make_ctx(evidence=lambda gid: record, now=lambda: now + 86400))
    assert not m.ok and m.message == "no evidence since 2023-11-14T21:13:20Z (max_age 1d)"
    m = await run_probe("coverage", spec, make_ctx(evidence=lambda gid: None))
    assert not m.ok and m.message == "no evidence pushed from branch main yet (qualitygate push)"
    other = PushRecord(at=now, values={"value": 0.1}, branch="feature")
    m = await run_probe("coverage", spec, make_ctx(evidence=lambda gid: other, now=lambda: now))
    assert not m.ok and m.message.startswith("no evidence pushed from branch main")
    m = await run_probe("coverage", spec)
    assert not m.ok and "no pushed evidence here" in m.message
    failing = PushRecord(at=now, values={"value": 0.5, "tests": 2.0}, ok=False, message="1 failure")
    m = await run_probe("junit", JUnitSpec(push=PushSource(max_age=60)),
                        make_ctx(evidence=lambda gid: failing, now=lambda: now))
    assert not m.ok and m.message == "1 failure"


async def test_push_gate_from_config_fails_closed_with_expect(tmp_path: Path):
    gate = parse_gate(tmp_path, """
        - id: unit-coverage
          coverage: {push: {max_age: 1d, branch: main}}
          expect: ">= 85%"
    """)
    assert gate.spec.push == PushSource(max_age=86400.0, branch="main")
    result = await evaluate(gate, make_ctx(evidence=lambda gid: None))
    assert result.outcome == "fail"


def test_parse_report_takes_bytes_for_every_report_kind():
    assert set(REPORT_KINDS) == {"coverage", "junit", "json_file", "sarif"}
    junit = KINDS["junit"]
    parts = [junit.parse_report(JUnitSpec(push=PushSource(60)), data, "r") for data in (JUNIT_OK, JUNIT_FAILING)]
    total = junit.combine(parts)
    assert total.values["tests"] == 4 and total.values["failures"] == 1 and not total.ok
    cov = KINDS["coverage"].parse_report(CoverageSpec(push=PushSource(60)), (REPORTS / "lcov.info").read_bytes(), "r")
    assert cov.value == pytest.approx(23 / 30)
    with pytest.raises(ProbeError, match=r"^report: not valid XML"):
        junit.parse_report(JUnitSpec(push=PushSource(60)), b"<testsuite>", "report")


# --- config ----------------------------------------------------------------------------------


@pytest.mark.parametrize("body, errors", [
    ("junit: {}", ["junit: needs exactly one source: path, url or push"]),
    ("junit: {path: a.xml, url: 'http://x/r.xml'}", ["junit.url: needs exactly one source: path, url or push, "
                                                     "found path and url"]),
    ("junit: {path: a.xml, push: {max_age: 1d}}", ["junit.push: needs exactly one source: path, url or push, "
                                                   "found path and push"]),
    ("junit: {push: {branch: main}}", ["junit.push.max_age: missing required key"]),
    ("junit: {path: a.xml, bearer_token_file: t}", ["junit.bearer_token_file: applies only with url"]),
    ("junit: {url: 'ftp://x/r.xml'}", None),
    ("sarif: {url: 'http://x/r', basic_auth: {username: u, password_file: p}, bearer_token_file: t}",
     ["sarif.bearer_token_file: use either basic_auth or bearer_token_file, not both"]),
])
def test_source_config_errors(tmp_path: Path, body: str, errors: list[str] | None):
    found = config_errors(tmp_path, f"- id: g\n  {body}")
    key = "phases[0].steps[0].gates[0]."
    if errors is None:
        assert found and found[0].startswith(f"{key}junit.url: ")
    else:
        assert found == [key + e for e in errors]


def test_source_config_error_points_at_the_line(tmp_path: Path):
    from exporter.config.fields import ConfigError
    from exporter.config.model import parse_config

    text = one_step_tracker("- id: g\n  junit:\n    path: a.xml\n    url: http://x/r.xml\n")
    with pytest.raises(ConfigError) as info:
        parse_config(text, str(tmp_path / "gates.yml"))
    (issue,) = info.value.issues
    assert text.splitlines()[issue.line - 1].strip() == "url: http://x/r.xml"
    assert str(issue).startswith(f"{tmp_path / 'gates.yml'}:{issue.line}: phases[0].steps[0].gates[0].junit.url: ")


# --- large reports: parsed in a worker process ---------------------------------------------------


def _pids_alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.add(pid)
        except FileNotFoundError:
            continue
    return alive


async def test_a_large_report_is_parsed_in_a_worker_process_as_a_thread_would(tmp_path: Path, monkeypatch):
    report = tmp_path / "junit.xml"
    write_huge_junit(report, 1)
    in_thread = await run_probe("junit", JUnitSpec(path=str(report)))
    monkeypatch.setattr(offload, "LARGE", 64 * 1024)
    in_worker = await run_probe("junit", JUnitSpec(path=str(report)))
    assert in_worker == in_thread and in_worker.message.startswith("1 failure, 0 errors in ")
    workers = offload.workers()
    assert workers and all(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1] == str(os.getpid())
                           for p in workers)
    # pushed or fetched bodies (bytes) go the same way, every kind; errors come back as ProbeErrors
    padding = b" " * (128 * 1024)
    assert KINDS["json_file"].parse_report(JSONFileSpec(json_path="$.a"), b'{"a": 0.5}' + padding, "r").value == 0.5
    cobertura = b'<coverage line-rate="0.75" branch-rate="0.5">' + padding + b"</coverage>"
    assert KINDS["coverage"].parse_report(CoverageSpec(format="cobertura"), cobertura, "r").value == 0.75
    with pytest.raises(ProbeError, match=r"^r: not valid XML"):
        KINDS["junit"].parse_report(JUnitSpec(), b"<testsuite>" + padding + b"<oops", "r")
    assert len(offload.workers()) <= offload.WORKERS  # reused, never more


async def test_a_timed_out_parse_kills_its_worker_and_the_next_gets_a_fresh_one(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(offload, "LARGE", 64 * 1024)
    small, huge = tmp_path / "small.xml", tmp_path / "huge.xml"
    write_huge_junit(small, 1)
    write_huge_junit(huge, 40)  # about a second of parsing
    await run_probe("junit", JUnitSpec(path=str(small)))
    before = set(offload.workers())
    with pytest.raises(TimeoutError):
        await run_probe("junit", JUnitSpec(path=str(huge)), make_ctx(timeout=0.2))
    deadline = time.monotonic() + 10
    while len(_pids_alive(before)) == len(before) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    killed = before - _pids_alive(before)
    assert len(killed) == 1, "the worker of the abandoned parse was not killed (and reaped)"
    m = await run_probe("junit", JUnitSpec(path=str(small)))
    assert m.message.startswith("1 failure") and not killed & set(offload.workers())
