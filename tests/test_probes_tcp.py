"""`tcp` probe against real sockets on 127.0.0.1: open, refused, TLS verified or not, a hung handshake."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
import trustme

from conftest import free_port
from exporter.engine.evaluate import evaluate
from exporter.probes.tcp import KIND, TCPSpec, split_address
from probe_support import config_errors, make_ctx, parse_gate, run_probe


@pytest.fixture
async def listener():
    """A TCP server that accepts and closes; yields its port."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
async def silent_listener():
    """A TCP server that accepts and never says a word (a TLS handshake against it hangs)."""
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for w in writers:
        w.close()
    server.close()
    await server.wait_closed()


@pytest.fixture
async def tls_listener(tmp_path: Path):
    """A TLS server with a certificate from a fresh CA; yields (port, CA file)."""
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    yield server.sockets[0].getsockname()[1], str(ca_file)
    server.close()
    await server.wait_closed()


async def test_open_port_passes_with_connect_time(listener: int):
    m = await run_probe("tcp", TCPSpec(address=f"127.0.0.1:{listener}"))
    assert m.ok
    assert 0 < m.values["connect_time"] < 10
    assert m.value == m.values["connect_time"]


async def test_refused_port_fails():
    m = await run_probe("tcp", TCPSpec(address=f"127.0.0.1:{free_port()}"))
    assert not m.ok
    assert m.message == "connection refused"


async def test_localhost_name_resolves(listener: int):
    m = await run_probe("tcp", TCPSpec(address=f"localhost:{listener}"))
    assert m.ok, m.message  # every resolved address is tried: ::1 first is fine


async def test_tls_verifies_the_certificate(tls_listener, monkeypatch: pytest.MonkeyPatch):
    port, ca_file = tls_listener
    m = await run_probe("tcp", TCPSpec(address=f"127.0.0.1:{port}", tls=True))
    assert not m.ok
    assert m.message.startswith("TLS: certificate verify failed")
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)  # how a private CA is trusted for tcp gates
    m = await run_probe("tcp", TCPSpec(address=f"127.0.0.1:{port}", tls=True))
    assert m.ok, m.message
    assert m.values["connect_time"] > 0


async def test_hung_tls_handshake_is_a_fail_at_the_timeout(silent_listener: int, tmp_path: Path):
    assert KIND.timeout_outcome == "fail"
    gate = parse_gate(tmp_path, f"""
        - id: tls-port
          timeout: 500ms
          tcp: {{address: "127.0.0.1:{silent_listener}", tls: true}}
    """)
    result = await evaluate(gate, make_ctx(timeout=gate.timeout))
    assert result.outcome == "fail"
    assert result.message == "timed out after 500ms"


def test_split_address():
    assert split_address("db.example:5432") == ("db.example", 5432)
    assert split_address("[::1]:9090") == ("::1", 9090)
    for bad in ("localhost", "::1:80", "host:0", "host:70000", ":80", "host:http"):
        with pytest.raises(ValueError):
            split_address(bad)


async def test_config(listener: int, tmp_path: Path):
    gate = parse_gate(tmp_path, f"""
        - id: port
          tcp: {{address: "127.0.0.1:{listener}"}}
          expect: "connect_time < 5s"
    """)
    assert gate.spec == TCPSpec(address=f"127.0.0.1:{listener}", tls=False)
    assert (await run_probe("tcp", gate.spec)).ok
    assert config_errors(tmp_path, """
        - id: port
          tcp: {address: "localhost", tls: maybe}
    """) == [
        "phases[0].steps[0].gates[0].tcp.address: invalid address 'localhost' (want host:port)",
        "phases[0].steps[0].gates[0].tcp.tls: must be true or false, got 'maybe'",
    ]
    assert config_errors(tmp_path, "- id: port\n  tcp: {}") == [
        "phases[0].steps[0].gates[0].tcp.address: missing required key"]
