"""--web.config.file: parsing, exact error messages, TLS context settings, and the basic-auth checker."""

from __future__ import annotations

import asyncio
import base64
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path

import bcrypt
import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from exporter.config.fields import ConfigError
from exporter.web import auth as web_auth
from exporter.web.auth import BasicAuth, parse_basic
from exporter.web.webconfig import bcrypt_problem, load_web_config

HASH_PW = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
NOT_BCRYPT = "not a bcrypt hash (want $2a$, $2b$ or $2y$ as made by `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a CA, a server certificate and key, a stranger's key and an encrypted key."""
    d = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    for i, blob in enumerate(server.cert_chain_pems):
        blob.write_to_path(str(d / "cert.pem"), append=i > 0)
    server.private_key_pem.write_to_path(str(d / "key.pem"))
    other.issue_cert("localhost").private_key_pem.write_to_path(str(d / "other-key.pem"))
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    key = serialization.load_pem_private_key(server.private_key_pem.bytes(), None)
    (d / "encrypted-key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase")))
    (d / "junk.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    (d / "empty.pem").write_text("")
    return d


def write(d: Path, text: str, name: str = "web.yml") -> Path:
    path = d / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def issues(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_web_config(str(path))
    return [str(i) for i in info.value.issues]


# --- valid files ------------------------------------------------------------------------------


def test_full_config_loads_with_paths_relative_to_the_file(pki: Path):
    path = write(pki, f"""
        tls_server_config:
          cert_file: cert.pem
          key_file: key.pem
          client_auth_type: RequireAndVerifyClientCert
          client_ca_file: ca.pem
          min_version: TLS13
        http_server_config:
          http2: true
          headers:
            X-Frame-Options: deny
            Strict-Transport-Security: max-age=31536000
        basic_auth_users:
          alice: {HASH_PW}
          bob: ${{QG_TEST_BOB_HASH}}
        """)
    import os
    os.environ["QG_TEST_BOB_HASH"] = HASH_PW
    try:
        wc = load_web_config(str(path))
    finally:
        del os.environ["QG_TEST_BOB_HASH"]
    assert wc.tls is not None
    assert wc.tls.cert_file == str(pki / "cert.pem") and wc.tls.client_ca_file == str(pki / "ca.pem")
    assert dict(wc.users) == {"alice": HASH_PW, "bob": HASH_PW}
    ctx = wc.ssl_context()
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3 and ctx.maximum_version == ssl.TLSVersion.TLSv1_3
    assert len(wc.middlewares()) == 2  # headers, then auth


def test_empty_file_and_plain_sections_mean_plain_http_without_auth(pki: Path):
    for text in ("", "tls_server_config:\nbasic_auth_users:\n", "basic_auth_users: {}\n"):
        wc = load_web_config(str(write(pki, text, "plain.yml")))
        assert wc.ssl_context() is None and wc.middlewares() == []


@pytest.mark.parametrize("auth_type, with_ca, mode", [
    ("NoClientCert", False, ssl.CERT_NONE),
    ("RequestClientCert", False, ssl.CERT_NONE),  # nothing reads an unverified certificate: asking changes nothing
    ("RequestClientCert", True, ssl.CERT_OPTIONAL),
    ("VerifyClientCertIfGiven", True, ssl.CERT_OPTIONAL),
    ("RequireAnyClientCert", True, ssl.CERT_REQUIRED),  # stricter than Go: verified against client_ca_file
    ("RequireAndVerifyClientCert", True, ssl.CERT_REQUIRED),
])
def test_client_auth_types_map_to_ssl_verify_modes(pki: Path, auth_type: str, with_ca: bool, mode: ssl.VerifyMode):
    ca = "\n  client_ca_file: ca.pem" if with_ca else ""
    path = write(pki, f"tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n"
                      f"  client_auth_type: {auth_type}{ca}\n", f"{auth_type}-{with_ca}.yml")
    ctx = load_web_config(str(path)).ssl_context()
    assert ctx is not None and ctx.verify_mode == mode


def test_default_tls_versions_are_tls12_to_tls13(pki: Path):
    path = write(pki, "tls_server_config: {cert_file: cert.pem, key_file: key.pem}\n", "v.yml")
    ctx = load_web_config(str(path)).ssl_context()
    assert ctx is not None
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2 and ctx.maximum_version == ssl.TLSVersion.TLSv1_3
    assert ctx.options & ssl.OP_NO_COMPRESSION and ctx.options & ssl.OP_NO_RENEGOTIATION


# --- invalid files: every issue at once, FILE:LINE: key: message --------------------------------

INVALID = {
    "shape-and-keys": ("""
        tls_server_config:
          cert_file: cert.pem
          key_file: key.pem
          cipher_suites: [TLS_AES_128_GCM_SHA256]
          bogus: 1
        http_server_config:
          headers:
            X-Frame-Options: allow
            Server: nginx
        basic_auth_users:
          bob: notahash
          "a:b": {hash}
          carol: $2x$04$aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
          dave: $2b$03$aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
          erin: ${{QG_TEST_UNSET_HASH}}
        rate_limit: {{interval: 1s}}
        """, [
        "4: tls_server_config.cipher_suites: not supported here (Go cipher names); "
        "OpenSSL's default TLS 1.2 suites are used",
        "5: tls_server_config.bogus: unknown key (known keys: cert_file, client_auth_type, client_ca_file, key_file, "
        "max_version, min_version, prefer_server_cipher_suites)",
        "8: http_server_config.headers.X-Frame-Options: invalid value 'allow' (want one of: deny, sameorigin)",
        "9: http_server_config.headers.Server: this header cannot be configured (allowed: Strict-Transport-Security, "
        "X-Content-Type-Options, X-Frame-Options, X-XSS-Protection, Content-Security-Policy)",
        "11: basic_auth_users.bob: " + NOT_BCRYPT,
        "12: basic_auth_users.a:b: a user name must be non-empty, without ':' or control characters",
        "13: basic_auth_users.carol: $2x$ bcrypt hashes (a buggy legacy variant) are not supported; "
        "rehash with $2b$ or $2y$",
        "14: basic_auth_users.dave: bcrypt cost 3 is out of range (4..16); 10 to 12 is usual",
        "15: basic_auth_users.erin: environment variable QG_TEST_UNSET_HASH is not set",
        "16: rate_limit: not supported here; put a reverse proxy in front to rate-limit",
    ]),
    "client-auth-rules": ("""
        tls_server_config:
          cert_file: cert.pem
          key_file: key.pem
          client_auth_type: RequireAnyClientCert
          min_version: TLS13
          max_version: TLS12
        """, [
        "4: tls_server_config.client_auth_type: RequireAnyClientCert needs client_ca_file "
        "(Python's ssl cannot require a certificate without verifying it)",
        "5: tls_server_config.min_version: TLS13 is above max_version TLS12",
    ]),
    "ca-without-policy": ("""
        tls_server_config:
          cert_file: cert.pem
          key_file: key.pem
          client_ca_file: ca.pem
        """, [
        "4: tls_server_config.client_ca_file: is set but client_auth_type is NoClientCert "
        "(use RequireAndVerifyClientCert to authenticate clients)",
    ]),
    "verify-needs-ca": ("""
        tls_server_config:
          cert_file: cert.pem
          key_file: key.pem
          client_auth_type: VerifyClientCertIfGiven
        """, ["4: tls_server_config.client_auth_type: VerifyClientCertIfGiven needs client_ca_file"]),
    "enums-and-types": ("""
        tls_server_config:
          cert_file: cert.pem
          client_auth_type: RequireClientCertPlease
          min_version: TLS14
        http_server_config:
          http2: maybe
        basic_auth_users: [alice]
        """, [
        "2: tls_server_config.key_file: missing required key",
        "3: tls_server_config.client_auth_type: must be one of NoClientCert, RequestClientCert, RequireAnyClientCert, "
        "VerifyClientCertIfGiven, RequireAndVerifyClientCert, got 'RequireClientCertPlease'",
        "4: tls_server_config.min_version: must be one of TLS10, TLS11, TLS12, TLS13, got 'TLS14'",
        "6: http_server_config.http2: must be true or false, got 'maybe'",
        "7: basic_auth_users: must be a mapping of user: bcrypt hash",
    ]),
    "missing-files": ("""
        tls_server_config:
          cert_file: nope.pem
          key_file: /dev/null
          client_auth_type: RequireAndVerifyClientCert
          client_ca_file: missing-ca.pem
        """, [
        "2: tls_server_config.cert_file: cannot read {d}/nope.pem: no such file or directory",
        "3: tls_server_config.key_file: cannot read /dev/null: not a regular file",
        "5: tls_server_config.client_ca_file: cannot read {d}/missing-ca.pem: no such file or directory",
    ]),
    "key-mismatch": ("tls_server_config: {{cert_file: cert.pem,\n  key_file: other-key.pem}}\n",
                     ["2: tls_server_config.key_file: {d}/other-key.pem is not the key of {d}/cert.pem"]),
    "junk-cert": ("tls_server_config:\n  cert_file: junk.pem\n  key_file: key.pem\n",
                  ["2: tls_server_config.cert_file: cannot load certificate and key: not valid PEM data "
                   "(want PEM files: a certificate chain and its unencrypted key)"]),
    "encrypted-key": ("tls_server_config:\n  cert_file: cert.pem\n  key_file: encrypted-key.pem\n",
                      ["3: tls_server_config.key_file: the key is encrypted; give an unencrypted key "
                       "and protect it by file permissions"]),
    "empty-ca": ("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n"
                 "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: empty.pem\n",
                 ["5: tls_server_config.client_ca_file: cannot load CA certificates from {d}/empty.pem: "
                  "no certificate or crl found"]),
    "yaml": ("tls_server_config:\n  cert_file: [\n",
             ["3: invalid YAML: expected the node content, but found '<stream end>'"]),
    "not-a-mapping": ("- a\n", ["1: web config must be a mapping"]),
    "top-level-unknown": ("basic_auth_user:\n  alice: x\n", [
        "1: basic_auth_user: unknown key (known keys: basic_auth_users, http_server_config, tls_server_config)"]),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_web_configs_exact_messages(pki: Path, name: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("QG_TEST_UNSET_HASH", raising=False)
    text, expected = INVALID[name]
    path = write(pki, text.format(hash=HASH_PW), f"invalid-{name}.yml")
    assert issues(path) == [f"{path}:{line.format(d=pki)}" for line in expected]


def test_unreadable_file_is_a_config_error(tmp_path: Path):
    expected = f"{tmp_path}/missing.yml:1: cannot read web config: No such file or directory"
    assert issues(tmp_path / "missing.yml") == [expected]


def test_bad_hash_is_never_echoed(pki: Path):
    secret_ish = "$2b$10$" + "x" * 20  # a truncated hash: still a secret, never printed
    text = "\n".join(issues(write(pki, f"basic_auth_users:\n  alice: '{secret_ish}'\n", "echo.yml")))
    assert secret_ish not in text and "alice" in text


@pytest.mark.parametrize("value, ok", [
    (HASH_PW, True), (HASH_PW.replace("$2b$", "$2y$"), True), (HASH_PW.replace("$2b$", "$2a$"), True),
    (HASH_PW[:-1], False), ("$2b$32$" + "a" * 53, False), ("plain", False), ("", False),
])
def test_bcrypt_hash_validation(value: str, ok: bool):
    assert (bcrypt_problem(value) is None) == ok


def test_serve_with_bad_web_config_exits_2_with_every_issue_and_no_traceback(pki: Path, tmp_path: Path):
    tracker = tmp_path / "t.yml"
    tracker.write_text("tracker: t\nphases: []\n")
    # TLS files are loaded only once the rest of the file is valid: the hash is reported first
    web = write(pki, "tls_server_config:\n  cert_file: nope.pem\n  key_file: key.pem\n"
                     "basic_auth_users:\n  a: x\n", "cli.yml")
    proc = subprocess.run([sys.executable, "-m", "exporter", "serve", "--config.file", str(tracker),
                           "--web.listen-address", "127.0.0.1:1", "--web.config.file", str(web)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.splitlines() == [
        f"{web}:5: basic_auth_users.a: {NOT_BCRYPT}",
    ]
    web.write_text("tls_server_config:\n  cert_file: nope.pem\n  key_file: key.pem\n")
    proc = subprocess.run([sys.executable, "-m", "exporter", "serve", "--config.file", str(tracker),
                           "--web.listen-address", "127.0.0.1:1", "--web.config.file", str(web)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        f"{web}:2: tls_server_config.cert_file: cannot read {pki}/nope.pem: no such file or directory"]


# --- the Authorization header and the checker -------------------------------------------------


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("header, expected", [
    (basic("alice", "s3cret"), ("alice", "s3cret")),
    (basic("alice", "pa:ss"), ("alice", "pa:ss")),  # only the first colon separates
    (basic("", ""), ("", "")),
    ("basic " + base64.b64encode(b"a:b").decode(), ("a", "b")),  # the scheme is case-insensitive
    (basic("émile", "ünïcode"), ("émile", "ünïcode")),
    ("Basic " + base64.b64encode(b"\xff\xfe:x").decode(), None),  # not UTF-8
    ("Basic " + base64.b64encode(b"nocolon").decode(), None),
    ("Basic !!!", None), ("Bearer abc", None), ("Basic", None), ("", None), (None, None),
])
def test_parse_basic(header: str | None, expected: tuple[str, str] | None):
    assert parse_basic(header) == expected


class CountingCheckpw:
    """Wraps bcrypt.checkpw, recording which hashes were checked."""

    def __init__(self) -> None:
        self.hashes: list[bytes] = []
        self.real = bcrypt.checkpw

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        self.hashes.append(hashed)
        return self.real(password, hashed)


async def test_unknown_user_and_wrong_password_both_pay_bcrypt_and_both_fail(monkeypatch: pytest.MonkeyPatch):
    counting = CountingCheckpw()
    monkeypatch.setattr(web_auth.bcrypt, "checkpw", counting)
    auth = BasicAuth({"alice": HASH_PW})
    assert await auth.authenticate(basic("alice", "wrong")) is None
    assert await auth.authenticate(basic("mallory", "s3cret")) is None
    assert len(counting.hashes) == 2
    # the unknown user was checked against a dummy hash of the same cost, not skipped
    assert counting.hashes[0] == HASH_PW.encode()
    assert counting.hashes[1] != HASH_PW.encode() and counting.hashes[1][:7] == HASH_PW.encode()[:7]


async def test_successful_checks_are_cached_failures_are_not(monkeypatch: pytest.MonkeyPatch):
    counting = CountingCheckpw()
    monkeypatch.setattr(web_auth.bcrypt, "checkpw", counting)
    auth = BasicAuth({"alice": HASH_PW})
    for _ in range(5):
        assert await auth.authenticate(basic("alice", "s3cret")) == "alice"
    assert len(counting.hashes) == 1
    for _ in range(3):
        assert await auth.authenticate(basic("alice", "s3cretX")) is None
    assert len(counting.hashes) == 4


async def test_cache_is_bounded(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(web_auth, "AUTH_CACHE_SIZE", 3)
    users = {f"u{i}": bcrypt.hashpw(f"p{i}".encode(), bcrypt.gensalt(rounds=4)).decode() for i in range(6)}
    auth = BasicAuth(users)
    for i in range(6):
        assert await auth.authenticate(basic(f"u{i}", f"p{i}")) == f"u{i}"
    assert len(auth._cache) == 3


async def test_long_passwords_use_the_first_72_bytes_like_go_bcrypt():
    long_pw = "x" * 72
    auth = BasicAuth({"alice": bcrypt.hashpw(long_pw.encode(), bcrypt.gensalt(rounds=4)).decode()})
    assert await auth.authenticate(basic("alice", long_pw + "tail")) == "alice"
    assert await auth.authenticate(basic("alice", "y" * 200)) is None


async def test_concurrent_checks_are_serialised_and_all_answered():
    auth = BasicAuth({"alice": HASH_PW})
    headers = [basic("alice", "s3cret" if i % 2 else f"bad{i}") for i in range(10)]
    results = await asyncio.wait_for(asyncio.gather(*(auth.authenticate(h) for h in headers)), 60)
    assert results == [("alice" if i % 2 else None) for i in range(10)]
