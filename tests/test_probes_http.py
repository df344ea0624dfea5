"""`http` probe against real aiohttp servers on 127.0.0.1: statuses, bodies, redirects, TLS, auth."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import math
import random
import ssl
import types
import zlib
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from conftest import free_port
from exporter.engine.evaluate import evaluate
from exporter.probes import ProbeError, regex
from exporter.probes import http as http_probe
from exporter.probes.http import MAX_BODY, BasicAuthSpec, HTTPSpec, TLSSpec, new_session
from probe_support import config_errors, make_ctx, parse_gate, run_probe

SECRET = "s3cr3t-password"
TOKEN = "tok-123456"


def make_app(seen: list[tuple[str, int]]) -> web.Application:
    """The target: one route per behaviour a gate may meet."""

    async def ok(request: web.Request) -> web.Response:
        seen.append((request.path, request.transport.get_extra_info("peername")[1]))
        return web.Response(text="ok")

    async def error(request: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    async def unavailable(request: web.Request) -> web.Response:
        return web.json_response({"ratio": 1}, status=503)

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(text="late")

    async def data(request: web.Request) -> web.Response:
        return web.json_response({"checks": [{"ratio": 0.93, "healthy": True, "name": "db", "none": None}],
                                  "count": "17"})

    async def text(request: web.Request) -> web.Response:
        return web.Response(text="build 42 passed\n")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def basic(request: web.Request) -> web.Response:
        want = "Basic " + base64.b64encode(f"alice:{SECRET}".encode()).decode()
        return web.Response(text="hi") if request.headers.get("Authorization") == want else web.Response(status=401)

    async def bearer(request: web.Request) -> web.Response:
        ok_ = request.headers.get("Authorization") == f"Bearer {TOKEN}"
        return web.Response(text="hi") if ok_ else web.Response(status=401)

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"method": request.method, "x_test": request.headers.get("X-Test"),
                                  "body": await request.text(), "ua": request.headers.get("User-Agent")})

    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_type = "application/json"
        await resp.prepare(request)
        chunk = b" " * (1024 * 1024)
        for _ in range(MAX_BODY // len(chunk) + 2):
            await resp.write(chunk)
        await resp.write(b"{}")
        return resp

    async def bomb(request: web.Request) -> web.Response:
        return web.Response(body=gzip_bomb(), headers={"Content-Encoding": "gzip"})

    async def gz(request: web.Request) -> web.Response:
        encoding = request.query["as"]
        return web.Response(body=compress(b'{"ratio": 0.75}', encoding), headers={"Content-Encoding": encoding},
                            content_type="application/json")

    async def huge_text(request: web.Request) -> web.Response:
        return web.Response(body=big_ab_text())

    async def not_finite(request: web.Request) -> web.Response:
        return web.Response(text='{"nan": NaN, "inf": Infinity, "text": "-inf"}', content_type="application/json")

    app = web.Application()
    app.router.add_get("/not-finite", not_finite)
    app.router.add_get("/bomb", bomb)
    app.router.add_get("/gz", gz)
    app.router.add_get("/huge-text", huge_text)
    app.router.add_get("/ok", ok)
    app.router.add_get("/error", error)
    app.router.add_get("/unavailable", unavailable)
    app.router.add_get("/slow", slow)
    app.router.add_get("/data", data)
    app.router.add_get("/text", text)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/loop", loop)
    app.router.add_get("/basic", basic)
    app.router.add_get("/bearer", bearer)
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/big", big)
    return app


BOMB_SIZE = 200 * 1024 * 1024


@functools.cache
def gzip_bomb() -> bytes:
    """200 MiB of zeros, gzip-compressed a MiB at a time (about 200 KB: never 200 MiB in memory)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    return b"".join(packer.compress(zeros) for _ in range(BOMB_SIZE // len(zeros))) + packer.flush()


def compress(data: bytes, encoding: str) -> bytes:
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS, "raw-deflate": -zlib.MAX_WBITS}[encoding]
    packer = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return packer.compress(data) + packer.flush()


@functools.cache
def big_ab_text() -> bytes:
    """4 MiB of random a's and b's: the input on which (a|b)*a(a|b){20}c costs RE2 seconds (DFA too big)."""
    rng = random.Random(7)
    return bytes(rng.choice(b"ab") for _ in range(MAX_BODY - 100)) + b" value 77"


@pytest.fixture
async def target(aiohttp_server):
    seen: list[tuple[str, int]] = []
    server = await aiohttp_server(make_app(seen))
    server.seen = seen
    return server


def url(server, path: str) -> str:
    return str(server.make_url(path))


async def test_200_passes_with_status_and_response_time(target):
    m = await run_probe("http", HTTPSpec(url=url(target, "/ok")))
    assert m.ok and m.message == ""
    assert m.values["status"] == 200
    assert 0 < m.values["response_time"] < 10
    assert m.value == m.values["response_time"]


async def test_500_fails_with_short_message(target):
    m = await run_probe("http", HTTPSpec(url=url(target, "/error")))
    assert not m.ok
    assert m.message == "status 500, expected 2xx"
    assert m.values["status"] == 500


async def test_valid_status_codes_list_of_codes_and_classes(target):
    m = await run_probe("http", HTTPSpec(url=url(target, "/error"), valid_status_codes=("200", "5xx")))
    assert m.ok and m.values["status"] == 500
    m = await run_probe("http", HTTPSpec(url=url(target, "/ok"), valid_status_codes=("204", "3xx")))
    assert not m.ok and m.message == "status 200, expected 204 or 3xx"


async def test_connection_refused_fails():
    m = await run_probe("http", HTTPSpec(url=f"http://127.0.0.1:{free_port()}/"))
    assert not m.ok
    assert m.message == "connection refused"
    assert m.values == {}


async def test_hanging_target_fails_at_the_timeout(target):
    m = await run_probe("http", HTTPSpec(url=url(target, "/slow")), make_ctx(timeout=0.5))
    assert not m.ok
    assert m.message == "timed out after 500ms"


async def test_hanging_target_cancelled_by_the_scheduler_leaves_nothing_behind(target):
    """The scheduler's wait_for may fire first: cancellation must end the probe cleanly."""
    task = asyncio.ensure_future(run_probe("http", HTTPSpec(url=url(target, "/slow")), make_ctx(timeout=30)))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_json_path_number_bool_and_numeric_string(target):
    for path, want in [("$.checks[0].ratio", 0.93), ("checks[0].healthy", 1.0), ("$.count", 17.0),
                       ("$.checks[-1]['ratio']", 0.93)]:
        m = await run_probe("http", HTTPSpec(url=url(target, "/data"), json_path=path))
        assert m.ok and m.value == want, path
        assert m.values["status"] == 200


@pytest.mark.parametrize(("path", "shown"), [("$.nan", "NaN"), ("$.inf", "+Inf"), ("$.text", "-Inf")])
async def test_json_path_nan_or_infinity_is_an_error_outcome(target, tmp_path: Path, path: str, shown: str):
    m = await run_probe("http", HTTPSpec(url=url(target, "/not-finite"), json_path=path))
    assert not math.isfinite(m.value)  # the real float reaches the engine, which refuses it
    gate = parse_gate(tmp_path, f"""
        - id: api
          http: {{url: "{url(target, '/not-finite')}", json_path: "{path}"}}
          expect: "!= 0"
    """)
    result = await evaluate(gate, make_ctx())
    assert result.outcome == "error" and result.message == f"measured {shown}: no measurement"


async def test_json_path_missing_or_not_a_number_is_an_error(target):
    with pytest.raises(ProbeError, match=r"^json_path \$\.checks\[0\]\.nope: \$\.checks\[0\]\.nope not found in body$"):
        await run_probe("http", HTTPSpec(url=url(target, "/data"), json_path="$.checks[0].nope"))
    with pytest.raises(ProbeError, match=r"^json_path \$\.checks\[0\]\.name is 'db', not a number$"):
        await run_probe("http", HTTPSpec(url=url(target, "/data"), json_path="$.checks[0].name"))
    with pytest.raises(ProbeError, match="is null, not a number"):
        await run_probe("http", HTTPSpec(url=url(target, "/data"), json_path="$.checks[0].none"))
    with pytest.raises(ProbeError, match=r"^body is not valid JSON$"):
        await run_probe("http", HTTPSpec(url=url(target, "/text"), json_path="$.x"))


async def test_invalid_status_is_checked_before_the_body(target):
    m = await run_probe("http", HTTPSpec(url=url(target, "/unavailable"), json_path="$.missing"))
    assert not m.ok and m.message == "status 503, expected 2xx"


async def test_oversized_body_with_json_path_is_an_error(target):
    with pytest.raises(ProbeError, match="body larger than 4 MiB"):
        await run_probe("http", HTTPSpec(url=url(target, "/big"), json_path="$.x"))


async def test_body_regex_capture_is_the_value_and_a_mismatch_fails(target):
    m = await run_probe("http", HTTPSpec(url=url(target, "/text"), body_regex=r"build (\d+) passed"))
    assert m.ok and m.value == 42
    m = await run_probe("http", HTTPSpec(url=url(target, "/text"), body_regex=r"passed"))
    assert m.ok and m.value == m.values["response_time"]
    m = await run_probe("http", HTTPSpec(url=url(target, "/text"), body_regex=r"failed"))
    assert not m.ok and m.message == "body does not match body_regex"
    with pytest.raises(ProbeError, match="captured 'build', not a number"):
        await run_probe("http", HTTPSpec(url=url(target, "/text"), body_regex=r"(build) \d+"))


class _CountingInflater:
    """zlib.decompressobj, counting the bytes it inflates."""

    total = 0

    def __init__(self, wbits: int):
        self._inner = zlib.decompressobj(wbits)

    def decompress(self, data: bytes, max_length: int = 0) -> bytes:
        out = self._inner.decompress(data, max_length)
        _CountingInflater.total += len(out)
        return out

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


async def test_a_gzip_bomb_is_never_inflated_past_the_body_limit(target, monkeypatch):
    assert len(gzip_bomb()) < BOMB_SIZE // 500
    fake_zlib = types.SimpleNamespace(decompressobj=_CountingInflater, MAX_WBITS=zlib.MAX_WBITS, error=zlib.error)
    monkeypatch.setattr(http_probe, "zlib", fake_zlib)
    m = await run_probe("http", HTTPSpec(url=url(target, "/bomb")))
    assert m.ok and m.values["status"] == 200
    m = await run_probe("http", HTTPSpec(url=url(target, "/bomb"), body_regex="never there"))
    assert not m.ok and m.message == "body does not match body_regex"
    with pytest.raises(ProbeError, match="body larger than 4 MiB"):
        await run_probe("http", HTTPSpec(url=url(target, "/bomb"), json_path="$.x"))
    # Three probes of a 200 MiB bomb: each inflated at most the 4 MiB it keeps and one byte more.
    assert _CountingInflater.total <= 3 * (MAX_BODY + 1)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
async def test_compressed_bodies_are_read(target, encoding: str):
    m = await run_probe("http", HTTPSpec(url=url(target, f"/gz?as={encoding}"), json_path="$.ratio"))
    if encoding == "raw-deflate":  # not a content coding: its bytes cannot be read as anything
        assert not m.ok and m.message == "unsupported Content-Encoding 'raw-deflate'"
    else:
        assert m.ok and m.value == 0.75


async def test_body_regex_is_re2_and_a_costly_match_leaves_the_loop_free(target):
    # A pattern that makes RE2 fall back to its NFA costs seconds on a 4 MiB body: it runs in a
    # thread, so a healthy probe completes meanwhile (the loop runs this test's code throughout).
    costly = asyncio.ensure_future(run_probe("http", HTTPSpec(url=url(target, "/huge-text"),
                                                              body_regex=r"(a|b)*a(a|b){20}c"), make_ctx(timeout=60)))
    while regex.running() == 0:
        assert not costly.done(), costly.result()
        await asyncio.sleep(0.01)
    healthy = await run_probe("http", HTTPSpec(url=url(target, "/text"), body_regex=r"build (\d+) passed"))
    assert healthy.ok and healthy.value == 42
    assert regex.running() == 1  # still matching: the healthy probe did not wait for it
    m = await costly
    assert not m.ok and m.message == "body does not match body_regex"
    m = await run_probe("http", HTTPSpec(url=url(target, "/huge-text"), body_regex=r"value (\d+)$"))
    assert m.ok and m.value == 77


async def test_redirects_followed_by_default_or_reported(target):
    m = await run_probe("http", HTTPSpec(url=url(target, "/redirect")))
    assert m.ok and m.values["status"] == 200
    m = await run_probe("http", HTTPSpec(url=url(target, "/redirect"), follow_redirects=False))
    assert not m.ok and m.message == "status 302, expected 2xx"
    m = await run_probe("http", HTTPSpec(url=url(target, "/redirect"), follow_redirects=False,
                                         valid_status_codes=("302",)))
    assert m.ok
    m = await run_probe("http", HTTPSpec(url=url(target, "/loop")))
    assert not m.ok and m.message == "too many redirects"


async def test_method_headers_body_and_user_agent(target):
    spec = HTTPSpec(url=url(target, "/echo"), method="POST", headers={"X-Test": "yes"}, body="payload",
                    body_regex=r'"method": "POST", "x_test": "yes", "body": "payload", "ua": "qualitygate-exporter/')
    m = await run_probe("http", spec)
    assert m.ok, m.message


async def test_basic_auth_password_file_is_read_at_every_probe(target, tmp_path: Path):
    pw = tmp_path / "password"
    pw.write_text(SECRET + "\n")
    spec = HTTPSpec(url=url(target, "/basic"), basic_auth=BasicAuthSpec("alice", str(pw)))
    assert (await run_probe("http", spec)).ok
    pw.write_text("rotated-away\n")
    m = await run_probe("http", spec)
    assert not m.ok and m.message == "status 401, expected 2xx"
    pw.unlink()
    with pytest.raises(ProbeError) as info:
        await run_probe("http", spec)
    assert str(info.value) == f"{pw}: no such file"


async def test_bearer_token_file_and_secret_never_in_messages(target, tmp_path: Path):
    tok = tmp_path / "token"
    tok.write_text(TOKEN + "\r\n")
    assert (await run_probe("http", HTTPSpec(url=url(target, "/bearer"), bearer_token_file=str(tok)))).ok
    m = await run_probe("http", HTTPSpec(url=f"http://127.0.0.1:{free_port()}/", bearer_token_file=str(tok)))
    assert not m.ok and TOKEN not in m.message
    m = await run_probe("http", HTTPSpec(url=url(target, "/basic"), bearer_token_file=str(tok)))
    assert not m.ok and TOKEN not in m.message


async def test_every_probe_opens_a_fresh_connection(target):
    """Even through a shared session, a server that stops accepting connections is noticed."""
    session = new_session()
    try:
        ctx = make_ctx(session=lambda insecure: session)
        for _ in range(3):
            assert (await run_probe("http", HTTPSpec(url=url(target, "/ok")), ctx)).ok
    finally:
        await session.close()
    ports = [port for path, port in target.seen if path == "/ok"]
    assert len(ports) == 3 and len(set(ports)) == 3


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_target(aiohttp_server, ca: trustme.CA, tmp_path: Path):
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    server = await aiohttp_server(make_app([]), ssl=server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server.ca_file = str(ca_file)
    return server


async def test_tls_with_ca_file_passes(tls_target):
    m = await run_probe("http", HTTPSpec(url=url(tls_target, "/ok"), tls=TLSSpec(ca_file=tls_target.ca_file)))
    assert url(tls_target, "/ok").startswith("https://")
    assert m.ok and m.values["status"] == 200


async def test_tls_unknown_ca_fails_and_insecure_skip_verify_passes(tls_target):
    m = await run_probe("http", HTTPSpec(url=url(tls_target, "/ok")))
    assert not m.ok
    assert m.message.startswith("TLS: certificate verify failed")
    m = await run_probe("http", HTTPSpec(url=url(tls_target, "/ok"), tls=TLSSpec(insecure_skip_verify=True)))
    assert m.ok


async def test_tls_missing_ca_file_is_an_error(tls_target, tmp_path: Path):
    with pytest.raises(ProbeError, match=r"no-ca\.pem: no such file"):
        await run_probe("http", HTTPSpec(url=url(tls_target, "/ok"), tls=TLSSpec(ca_file=str(tmp_path / "no-ca.pem"))))


async def test_config_declares_every_option(target, tmp_path: Path):
    (tmp_path / "pw").write_text(SECRET)
    gate = parse_gate(tmp_path, f"""
        - id: api
          http:
            url: "{url(target, '/basic')}"
            method: GET
            headers: {{X-Test: "1"}}
            valid_status_codes: [200, 2xx]
            follow_redirects: false
            tls: {{insecure_skip_verify: false}}
            basic_auth: {{username: alice, password_file: pw}}
          expect: ["status == 200", "response_time < 5s"]
    """)
    spec = gate.spec
    assert spec.basic_auth.password_file == str(tmp_path / "pw")
    assert spec.valid_status_codes == ("200", "2xx")
    m = await run_probe("http", spec)
    assert m.ok and m.values["status"] == 200


def test_config_errors_name_the_key(tmp_path: Path):
    errors = config_errors(tmp_path, """
        - id: api
          http: {url: "ftp://x", body_regex: "(", json_path: "$.a[*]", valid_status_codes: [600], method: "get"}
    """)
    key = "phases[0].steps[0].gates[0].http"
    assert errors == [
        f"{key}.body_regex: invalid regular expression '(': missing ), unterminated subpattern at position 0",
        f"{key}.json_path: invalid json_path '$.a[*]': wildcards and '..' are not supported "
        "(a json_path must select exactly one value)",
        f"{key}.method: invalid HTTP method 'get' (want e.g. GET, HEAD, POST)",
        f"{key}.url: invalid URL 'ftp://x' (want http:// or https:// with a host)",
        f"{key}.valid_status_codes: invalid status code '600' (want e.g. 200 or 2xx)",
    ]
    errors = config_errors(tmp_path, """
        - id: api
          http: {url: "http://127.0.0.1:1/", bearer_token_file: t, basic_auth: {username: u, password_file: p}}
    """)
    assert errors == [f"{key}.bearer_token_file: use either basic_auth or bearer_token_file, not both"]
    assert json.dumps(errors)  # plain strings, printable as the CLI does
