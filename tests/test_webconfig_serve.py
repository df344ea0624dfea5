"""TLS, client certificates and basic auth against a real `qualitygate serve`, with certificates made here."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import ssl
import textwrap
import time
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests
import trustme

from conftest import Served, start_serve, wait_for
from faults_support import until_closed

TRACKER = """
tracker: sec
phases:
  - id: p
    steps:
      - id: s
        gates:
          - id: ok
            interval: 1s
            timeout: 1s
            command: { argv: ["true"] }
          - id: signoff
            manual: { max_age: 1d }
"""
PASSWORD = "correct horse battery staple"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
ENDPOINTS = [("GET", "/metrics"), ("GET", "/-/healthy"), ("GET", "/-/ready"), ("GET", "/api/progress/status"),
             ("GET", "/api/gates"), ("GET", "/api/gates/ok"), ("GET", "/"), ("GET", "/gates/ok"),
             ("GET", "/no/such/route"), ("POST", "/-/reload"), ("PUT", "/-/reload"),
             ("POST", "/api/gates/signoff/attestations")]


class PKI:
    """A CA with server and client certificates, and a stranger CA with its own client certificate."""

    def __init__(self, d: Path):
        self.dir = d
        self.ca, self.stranger = trustme.CA(), trustme.CA()
        self.write_server(self.ca, "server")
        self.ca.cert_pem.write_to_path(str(d / "ca.pem"))
        self.ca.issue_cert("client@example.com").private_key_and_cert_chain_pem.write_to_path(str(d / "client.pem"))
        self.stranger.issue_cert("client@example.com").private_key_and_cert_chain_pem.write_to_path(
            str(d / "stranger.pem"))

    def write_server(self, ca: trustme.CA, stem: str) -> None:
        cert = ca.issue_cert("127.0.0.1", "localhost")
        path = self.dir / f"{stem}.pem"
        for i, blob in enumerate(cert.cert_chain_pems):
            blob.write_to_path(str(path), append=i > 0)
        cert.private_key_pem.write_to_path(str(self.dir / f"{stem}-key.pem"))

    def path(self, name: str) -> str:
        return str(self.dir / name)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


def start_secure(tmp_path: Path, web_yaml: str, *extra: str, probe: Any) -> Served:
    """Start `serve` with a web config; wait until `probe()` (a request that should succeed) answers 200."""
    config = tmp_path / "tracker.yml"
    config.write_text(textwrap.dedent(TRACKER).lstrip())
    web = tmp_path / "web.yml"
    web.write_text(textwrap.dedent(web_yaml).lstrip())
    return start_serve(config, tmp_path, "--web.config.file", str(web), *extra,
                       probe=lambda s: probe(s).status_code == 200)


@pytest.fixture
def stopper():
    started: list[Served] = []
    yield started.append
    for s in started:
        s.stop()


def https(s: Served, path: str = "/-/healthy") -> str:
    return f"https://127.0.0.1:{s.port}{path}"


# --- basic auth over TLS ----------------------------------------------------------------------


def test_tls_with_basic_auth_covers_every_endpoint(pki: PKI, tmp_path: Path, stopper):
    web = f"""
        tls_server_config:
          cert_file: {pki.path("server.pem")}
          key_file: {pki.path("server-key.pem")}
        http_server_config:
          headers:
            X-Content-Type-Options: nosniff
        basic_auth_users:
          alice: {HASH}
        """
    ca = pki.path("ca.pem")
    s = start_secure(tmp_path, web,
                     probe=lambda s: requests.get(https(s), verify=ca, auth=("alice", PASSWORD), timeout=5))
    stopper(s)

    def call(method: str, path: str, **kw: Any) -> requests.Response:
        return requests.request(method, https(s, path), verify=ca, timeout=10, **kw)

    for method, path in ENDPOINTS:
        anonymous = call(method, path)
        unknown = call(method, path, auth=("mallory", PASSWORD))
        wrong = call(method, path, auth=("alice", PASSWORD + "!"))
        for r in (anonymous, unknown, wrong):
            assert r.status_code == 401, (method, path, r.status_code)
            assert r.headers["WWW-Authenticate"] == 'Basic realm="qualitygate"'
            assert r.headers["X-Content-Type-Options"] == "nosniff"
        # a wrong password and an unknown user cannot be told apart
        assert (unknown.text, sorted(k for k in unknown.headers if k not in ("Date",))) == \
               (wrong.text, sorted(k for k in wrong.headers if k not in ("Date",)))

    ok = call("GET", "/metrics", auth=("alice", PASSWORD))
    assert ok.status_code == 200 and "qualitygate_build_info" in ok.text
    assert ok.headers["X-Content-Type-Options"] == "nosniff"
    assert call("GET", "/api/gates", auth=("alice", PASSWORD)).json()["tracker"] == "sec"
    assert call("GET", "/no/such/route", auth=("alice", PASSWORD)).status_code == 404
    # authenticated but the lifecycle API is off: still 403
    assert call("POST", "/-/reload", auth=("alice", PASSWORD)).status_code == 403

    # the attestation records the authenticated user, not the `by` the client claims
    r = call("POST", "/api/gates/signoff/attestations", auth=("alice", PASSWORD),
             json={"value": 1, "note": "release review done", "by": "someone-else"})
    assert r.status_code in (200, 201), r.text
    detail = call("GET", "/api/gates/signoff", auth=("alice", PASSWORD)).json()
    assert [a["by"] for a in detail["attestations"]] == ["alice"]

    # plain HTTP on the TLS port gets no answer
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{s.port}/-/healthy", timeout=5, auth=("alice", PASSWORD))
    # a client that does not trust the CA refuses the server
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(https(s), timeout=5)
    assert PASSWORD not in s.log() and HASH not in s.log()


def test_basic_auth_without_tls_and_lifecycle_behind_auth(tmp_path: Path, stopper):
    s = start_secure(tmp_path, f"basic_auth_users:\n  prometheus: {HASH}\n", "--web.enable-lifecycle",
                     probe=lambda s: requests.get(f"{s.url}/-/healthy", auth=("prometheus", PASSWORD), timeout=5))
    stopper(s)
    assert requests.post(f"{s.url}/-/reload", timeout=10).status_code == 401
    assert requests.post(f"{s.url}/-/reload", timeout=10, auth=("prometheus", "nope")).status_code == 401
    assert requests.post(f"{s.url}/-/reload", timeout=10, auth=("prometheus", PASSWORD)).status_code == 200
    r = requests.get(f"{s.url}/metrics", timeout=10, auth=("prometheus", PASSWORD))
    assert r.status_code == 200 and "qualitygate_config_last_reload_successful 1.0" in r.text


# --- client certificates ----------------------------------------------------------------------


def client_cert_web(pki: PKI, auth_type: str) -> str:
    return f"""
        tls_server_config:
          cert_file: {pki.path("server.pem")}
          key_file: {pki.path("server-key.pem")}
          client_auth_type: {auth_type}
          client_ca_file: {pki.path("ca.pem")}
        """


def test_require_and_verify_client_cert(pki: PKI, tmp_path: Path, stopper):
    ca, good = pki.path("ca.pem"), pki.path("client.pem")
    s = start_secure(tmp_path, client_cert_web(pki, "RequireAndVerifyClientCert"),
                     probe=lambda s: requests.get(https(s), verify=ca, cert=good, timeout=5))
    stopper(s)
    with pytest.raises(requests.exceptions.ConnectionError):  # no certificate
        requests.get(https(s, "/metrics"), verify=ca, timeout=5)
    with pytest.raises(requests.exceptions.ConnectionError):  # signed by another CA
        requests.get(https(s, "/metrics"), verify=ca, cert=pki.path("stranger.pem"), timeout=5)
    r = requests.get(https(s, "/metrics"), verify=ca, cert=good, timeout=5)
    assert r.status_code == 200 and "qualitygate_build_info" in r.text
    assert s.proc.poll() is None  # refused handshakes do not hurt the server


def test_verify_client_cert_if_given(pki: PKI, tmp_path: Path, stopper):
    ca = pki.path("ca.pem")
    s = start_secure(tmp_path, client_cert_web(pki, "VerifyClientCertIfGiven"),
                     probe=lambda s: requests.get(https(s), verify=ca, timeout=5))
    stopper(s)
    assert requests.get(https(s), verify=ca, timeout=5).status_code == 200
    assert requests.get(https(s), verify=ca, cert=pki.path("client.pem"), timeout=5).status_code == 200
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(https(s), verify=ca, cert=pki.path("stranger.pem"), timeout=5)


def test_require_any_client_cert_is_verified_against_the_ca(pki: PKI, tmp_path: Path, stopper):
    """Python's ssl cannot require without verifying: RequireAnyClientCert is enforced as the strict mode."""
    ca, good = pki.path("ca.pem"), pki.path("client.pem")
    s = start_secure(tmp_path, client_cert_web(pki, "RequireAnyClientCert"),
                     probe=lambda s: requests.get(https(s), verify=ca, cert=good, timeout=5))
    stopper(s)
    for cert in (None, pki.path("stranger.pem")):
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(https(s), verify=ca, cert=cert, timeout=5)


def test_min_version_refuses_older_clients(pki: PKI, tmp_path: Path, stopper):
    ca = pki.path("ca.pem")
    web = f"""
        tls_server_config:
          cert_file: {pki.path("server.pem")}
          key_file: {pki.path("server-key.pem")}
          min_version: TLS13
        """
    s = start_secure(tmp_path, web, probe=lambda s: requests.get(https(s), verify=ca, timeout=5))
    stopper(s)
    import socket

    old = ssl.create_default_context(cafile=ca)
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as raw, pytest.raises(ssl.SSLError):
        old.wrap_socket(raw, server_hostname="127.0.0.1")
    new = ssl.create_default_context(cafile=ca)
    with (socket.create_connection(("127.0.0.1", s.port), timeout=5) as raw,
          new.wrap_socket(raw, server_hostname="127.0.0.1") as tls):
        assert tls.version() == "TLSv1.3"


def test_certificate_files_are_reloaded_when_they_change(pki: PKI, tmp_path: Path, stopper):
    """A renewed certificate (here: from a new CA) is served to new connections without a restart."""
    d = tmp_path / "certs"
    d.mkdir()
    shutil.copy(pki.path("server.pem"), d / "server.pem")
    shutil.copy(pki.path("server-key.pem"), d / "server-key.pem")
    web = f"tls_server_config:\n  cert_file: {d / 'server.pem'}\n  key_file: {d / 'server-key.pem'}\n"
    old_ca = pki.path("ca.pem")
    s = start_secure(tmp_path, web, probe=lambda s: requests.get(https(s), verify=old_ca, timeout=5))
    stopper(s)

    new_ca = trustme.CA()
    new_ca.cert_pem.write_to_path(str(tmp_path / "new-ca.pem"))
    renewed = PKI.__new__(PKI)
    renewed.dir = tmp_path / "renewed"
    renewed.dir.mkdir()
    renewed.write_server(new_ca, "server")
    # write the key first, then the cert, as a renewal tool would (each file replaced atomically)
    os.replace(renewed.dir / "server-key.pem", d / "server-key.pem")
    os.replace(renewed.dir / "server.pem", d / "server.pem")
    wait_for(lambda: requests.get(https(s), verify=str(tmp_path / "new-ca.pem"), timeout=5).status_code == 200,
             timeout=30, what="the renewed certificate to be served")
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(https(s), verify=old_ca, timeout=5)

    # a broken renewal keeps the last good certificate in service, and the log says why
    (d / "server.pem").write_text("garbage\n")
    new_ca_file = str(tmp_path / "new-ca.pem")

    def still_served_and_logged() -> bool:
        # the files are looked at on new connections only
        assert requests.get(https(s), verify=new_ca_file, timeout=5).status_code == 200
        return "cannot be loaded" in s.log()

    wait_for(still_served_and_logged, timeout=30, what="the failed reload to be logged")
    deadline = time.monotonic() + 2.5  # new connections over more than two looks at the files
    while time.monotonic() < deadline:
        assert requests.get(https(s), verify=new_ca_file, timeout=5).status_code == 200
        time.sleep(0.2)
    assert s.log().count("cannot be loaded") == 1  # once per state of the files, not once a second


def test_http2_is_accepted_and_ignored_with_a_log_line(tmp_path: Path, stopper):
    s = start_secure(tmp_path, "http_server_config:\n  http2: true\n",
                     probe=lambda s: requests.get(f"{s.url}/-/healthy", timeout=5))
    stopper(s)
    assert "http2 is accepted for compatibility and ignored" in s.log()
    assert json.loads(requests.get(f"{s.url}/api/gates", timeout=5).text)["tracker"] == "sec"


# --- slow clients over TLS ---------------------------------------------------------------------


def test_read_timeout_bounds_tls_handshake_and_head_and_auth_comes_before_the_body(pki: PKI, tmp_path: Path,
                                                                                   stopper):
    web = f"""
        tls_server_config:
          cert_file: {pki.path("server.pem")}
          key_file: {pki.path("server-key.pem")}
        basic_auth_users:
          alice: {HASH}
        """
    ca = pki.path("ca.pem")
    s = start_secure(tmp_path, web, "--web.read-timeout", "2s",
                     probe=lambda s: requests.get(https(s), verify=ca, auth=("alice", PASSWORD), timeout=5))
    stopper(s)
    context = ssl.create_default_context(cafile=ca)

    # a TCP client that never starts the TLS handshake
    bare = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    took, _ = until_closed(bare, 10)
    assert took is not None and 1.5 < took < 6, took
    bare.close()

    # a TLS client that never finishes its request head
    tls = context.wrap_socket(socket.create_connection(("127.0.0.1", s.port), timeout=5), server_hostname="127.0.0.1")
    tls.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    took, got = until_closed(tls, 10)
    assert took is not None and 1.5 < took < 6 and got == b"", (took, got)
    tls.close()

    # an anonymous POST whose body never comes gets its 401 at once: strangers' bodies are not waited for
    tls = context.wrap_socket(socket.create_connection(("127.0.0.1", s.port), timeout=5), server_hostname="127.0.0.1")
    tls.sendall(b"POST /api/gates/signoff/attestations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
    start = time.monotonic()
    tls.settimeout(5)
    first = tls.recv(65536)
    assert first.startswith(b"HTTP/1.1 401 ") and time.monotonic() - start < 1.9, first[:100]  # before the 2 s deadline
    tls.close()

    # ... while alice's body that never comes gets a 408
    tls = context.wrap_socket(socket.create_connection(("127.0.0.1", s.port), timeout=5), server_hostname="127.0.0.1")
    token = base64.b64encode(f"alice:{PASSWORD}".encode())
    tls.sendall(b"POST /api/gates/signoff/attestations HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic " + token +
                b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
    took, got = until_closed(tls, 10)
    assert took is not None and got.startswith(b"HTTP/1.1 408 ") and 1.5 < took < 6, (took, got[:100])
    tls.close()
    m = requests.get(https(s, "/metrics"), verify=ca, auth=("alice", PASSWORD), timeout=5).text
    assert 'qualitygate_http_read_timeouts_total{stage="body"} 1.0' in m
    assert 'qualitygate_http_read_timeouts_total{stage="head"} 1.0' in m  # the bare one is the handshake's
