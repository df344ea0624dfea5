"""`tls` probe against real TLS servers on 127.0.0.1 with certificates made here (trustme, cryptography)."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from exporter.engine.evaluate import evaluate
from exporter.probes import KINDS, ProbeError
from exporter.probes.tls import TLSProbeSpec
from probe_support import config_errors, make_ctx, parse_gate, run_probe

NOW = datetime.datetime.now(datetime.UTC)
DAY = 86400.0

Serve = Callable[[bytes, bytes], Awaitable[int]]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[Serve]:
    """Start TLS servers presenting a given chain (PEM) and key; each returns the port it bound."""
    servers: list[asyncio.Server] = []

    async def start(chain_pem: bytes, key_pem: bytes) -> int:
        n = len(servers)
        (tmp_path / f"chain{n}.pem").write_bytes(chain_pem)
        (tmp_path / f"key{n}.pem").write_bytes(key_pem)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(tmp_path / f"chain{n}.pem"), str(tmp_path / f"key{n}.pem"))

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def leaf(ca: trustme.CA, *names: str, not_after: datetime.datetime | None = None,
         not_before: datetime.datetime | None = None) -> tuple[bytes, bytes]:
    cert = ca.issue_cert(*(names or ("127.0.0.1", "localhost")), not_before=not_before, not_after=not_after)
    return b"".join(blob.bytes() for blob in cert.cert_chain_pems), cert.private_key_pem.bytes()


def self_signed(name: str = "127.0.0.1") -> tuple[bytes, bytes]:
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(name))]), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


async def test_valid_chain_passes_and_measures_the_earliest_expiry(ca: trustme.CA, ca_file: str, tls_server: Serve):
    port = await tls_server(*leaf(ca, not_after=NOW + datetime.timedelta(days=200)))
    m = await run_probe("tls", TLSProbeSpec(address=f"127.0.0.1:{port}", ca_file=ca_file))
    assert m.ok, m.message
    assert 199 < m.values["days_left"] <= 200
    assert m.value == pytest.approx(m.values["days_left"] * DAY)


def _cert(subject: str, issuer: str, key: ec.EllipticCurvePrivateKey, signer: ec.EllipticCurvePrivateKey,
          days: int, ca: bool) -> x509.Certificate:
    import ipaddress

    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                                      key_encipherment=False, data_encipherment=False,
                                                      key_agreement=False, key_cert_sign=True, crl_sign=True,
                                                      encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(subject))]),
                                        critical=False)
    return builder.sign(signer, hashes.SHA256())


async def test_the_earliest_expiry_of_the_whole_presented_chain_counts(tls_server: Serve, tmp_path: Path):
    # An intermediate that lapses (in 50 days) long before the leaf it signed (400 days): the value is
    # the intermediate's, the certificate that will break the chain first.
    root_key, mid_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _cert("Test Root", "Test Root", root_key, root_key, 3650, ca=True)
    mid = _cert("Test Intermediate", "Test Root", mid_key, root_key, 50, ca=True)
    leaf_cert = _cert("127.0.0.1", "Test Intermediate", leaf_key, mid_key, 400, ca=False)
    pem = serialization.Encoding.PEM
    chain = leaf_cert.public_bytes(pem) + mid.public_bytes(pem)
    key_pem = leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    port = await tls_server(chain, key_pem)
    ca_path = tmp_path / "root.pem"
    ca_path.write_bytes(root.public_bytes(pem))
    m = await run_probe("tls", TLSProbeSpec(address=f"127.0.0.1:{port}", ca_file=str(ca_path)))
    assert m.ok, m.message
    assert 49 < m.values["days_left"] <= 50


async def test_expiring_in_10_days_fails_value_over_30d(ca: trustme.CA, ca_file: str, tls_server: Serve,
                                                        tmp_path: Path):
    port = await tls_server(*leaf(ca, not_after=NOW + datetime.timedelta(days=10)))
    gate = parse_gate(tmp_path, f"""
        - id: cert
          tls: {{address: "127.0.0.1:{port}", ca_file: {ca_file}}}
          expect: "value > 30d"
    """)
    result = await evaluate(gate, make_ctx())
    assert result.outcome == "fail"
    assert 9 < result.value / DAY <= 10


async def test_expired_certificate_fails_and_says_so(ca: trustme.CA, ca_file: str, tls_server: Serve):
    port = await tls_server(*leaf(ca, not_before=NOW - datetime.timedelta(days=30),
                                  not_after=NOW - datetime.timedelta(days=2)))
    m = await run_probe("tls", TLSProbeSpec(address=f"127.0.0.1:{port}", ca_file=ca_file))
    assert not m.ok and m.message == "TLS: certificate verify failed: certificate has expired"
    assert -3 < m.values["days_left"] < -1  # measured without verification: how long ago it lapsed
    # Skipping verification does not make an expired certificate pass.
    m = await run_probe("tls", TLSProbeSpec(address=f"127.0.0.1:{port}", insecure_skip_verify=True))
    assert not m.ok and m.message == "a presented certificate has expired"


async def test_wrong_host_name_fails(ca: trustme.CA, ca_file: str, tls_server: Serve):
    port = await tls_server(*leaf(ca, "localhost"))
    m = await run_probe("tls", TLSProbeSpec(address=f"127.0.0.1:{port}", ca_file=ca_file, server_name="db.example"))
    assert not m.ok
    assert m.message == "TLS: certificate verify failed: Hostname mismatch, certificate is not valid for 'db.example'."
    m = await run_probe("tls", TLSProbeSpec(address=f"127.0.0.1:{port}", ca_file=ca_file, server_name="localhost"))
    assert m.ok, m.message


async def test_self_signed_fails_unless_verification_is_skipped(tls_server: Serve, ca_file: str):
    port = await tls_server(*self_signed())
    for spec in (TLSProbeSpec(address=f"127.0.0.1:{port}"), TLSProbeSpec(address=f"127.0.0.1:{port}", ca_file=ca_file)):
        m = await run_probe("tls", spec)
        assert not m.ok and m.message == "TLS: certificate verify failed: self-signed certificate"
        assert 89 < m.values["days_left"] <= 90
    m = await run_probe("tls", TLSProbeSpec(address=f"127.0.0.1:{port}", insecure_skip_verify=True))
    assert m.ok and 89 < m.values["days_left"] <= 90


async def test_no_server_or_not_tls_fails():
    async def plain_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(10)
        writer.write(b"HTTP/1.0 400 Bad Request\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(plain_http, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        m = await run_probe("tls", TLSProbeSpec(address=f"127.0.0.1:{port}"))
        assert not m.ok and m.message == "TLS: wrong version number" and m.values == {}
    finally:
        server.close()
        await server.wait_closed()
    m = await run_probe("tls", TLSProbeSpec(address=f"127.0.0.1:{port}"))
    assert not m.ok and m.message == "connection refused"


async def test_missing_ca_file_is_an_error(tmp_path: Path):
    with pytest.raises(ProbeError, match=r"no-ca\.pem: no such file"):
        await run_probe("tls", TLSProbeSpec(address="127.0.0.1:1", ca_file=str(tmp_path / "no-ca.pem")))


def test_kind_and_config(tmp_path: Path):
    kind = KINDS["tls"]
    assert kind.measurements == ("value", "days_left") and kind.timeout_outcome == "fail"
    gate = parse_gate(tmp_path, """
        - id: cert
          tls: {address: "example.org:443", server_name: www.example.org, ca_file: ca.pem}
          expect: "days_left > 14"
    """)
    assert gate.spec == TLSProbeSpec(address="example.org:443", server_name="www.example.org",
                                     ca_file=str(tmp_path / "ca.pem"))
    key = "phases[0].steps[0].gates[0].tls"
    assert config_errors(tmp_path, """
        - id: cert
          tls: {address: "example.org", verify: true}
    """) == [f"{key}.address: invalid address 'example.org' (want host:port)",
             f"{key}.verify: unknown key (known keys: address, ca_file, insecure_skip_verify, server_name)"]
