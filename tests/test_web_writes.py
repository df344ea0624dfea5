"""Write endpoints: loopback only without basic auth, and a bad attestation never costs a good one."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import bcrypt
import pytest

from exporter.web.auth import is_loopback
from tests.conftest import ROOT, Served, wait_for
from tests.test_manual_gates import manual_tracker, post

_PORT = re.compile(r"msg=listening address=\S*:(\d+)")


def local_address() -> str | None:
    """A non-loopback IPv4 address of this machine, or None."""
    if shutil.which("ip") is None:
        return None
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True,
                         check=False, timeout=10).stdout
    found = re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", out)
    return found[0] if found else None


def serve_everywhere(tmp_path: Path, config: Path, *extra: str) -> Served:
    """`serve` on 0.0.0.0:0 (every interface, as by default), its port read from the "listening" line."""
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "exporter", "serve", "--config.file", str(config),
                                 "--storage.path", str(tmp_path / "state.db"), "--web.listen-address", "0.0.0.0:0",
                                 *extra], stdout=log_file, stderr=subprocess.STDOUT, text=True, cwd=str(ROOT))

    def port() -> int | None:
        assert proc.poll() is None, log_path.read_text()
        m = _PORT.search(log_path.read_text())
        return int(m.group(1)) if m else None

    try:
        return Served(proc, wait_for(port, timeout=30, what="the listening line"), log_path)
    except BaseException:
        proc.kill()
        proc.wait(10)
        raise


@pytest.mark.parametrize("peer, loopback", [
    (("127.0.0.1", 5000), True), (("127.8.9.10", 1), True), (("::1", 1, 0, 0), True),
    (("::ffff:127.0.0.1", 1, 0, 0), True),
    (("192.0.2.2", 5000), False), (("10.0.0.1", 1), False), (("::ffff:10.0.0.1", 1, 0, 0), False),
    (("fe80::1%eth0", 1, 0, 2), False), (("0.0.0.0", 1), False), (None, False), ("", False), (("not-an-ip", 1), False),
])
def test_is_loopback(peer: object, loopback: bool) -> None:
    assert is_loopback(peer) is loopback


def test_without_basic_auth_only_loopback_clients_may_attest(tmp_path: Path, write_config) -> None:
    other = local_address()
    if other is None:
        pytest.skip("this machine has no non-loopback IPv4 address to send from")
    s = serve_everywhere(tmp_path, write_config(manual_tracker("m")))
    try:
        wait_for(lambda: s.get("/-/ready", timeout=2)[0] == 200, timeout=30, what="ready")
        assert s.log().count("attestations accepted from loopback clients only") == 1
        path = "/api/gates/signoff/attestations"
        status, doc = post(f"http://{other}:{s.port}{path}", '{"value": 1, "by": "stranger"}')
        assert status == 403 and "basic_auth_users" in doc["error"], doc
        # reads stay open to every interface; only the write is refused
        with urllib.request.urlopen(f"http://{other}:{s.port}/api/gates/signoff", timeout=10) as resp:
            assert resp.status == 200
        status, doc = post(f"http://127.0.0.1:{s.port}{path}", '{"value": 1, "by": "local"}')
        assert status == 201, doc
        detail = json.loads(s.get("/api/gates/signoff")[1])
        assert [a["by"] for a in detail["attestations"]] == ["local"]
    finally:
        assert s.stop() == 0, s.log()


def test_with_basic_auth_other_hosts_may_attest(tmp_path: Path, write_config) -> None:
    other = local_address()
    if other is None:
        pytest.skip("this machine has no non-loopback IPv4 address to send from")
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  dana: {bcrypt.hashpw(b'pw', bcrypt.gensalt(rounds=4)).decode()}\n")
    s = serve_everywhere(tmp_path, write_config(manual_tracker("m")), "--web.config.file", str(web))
    try:
        token = base64.b64encode(b"dana:pw").decode()
        wait_for(lambda: s.get("/-/healthy", timeout=2)[0] == 401, timeout=30, what="healthy behind auth")
        assert "attestations accepted from loopback clients only" not in s.log()
        assert "basic auth users may write" in s.log()
        status, doc = post(f"http://{other}:{s.port}/api/gates/signoff/attestations", '{"value": 1}',
                           headers={"Authorization": f"Basic {token}"})
        assert status == 201 and doc["attestation"]["by"] == "dana", doc
    finally:
        assert s.stop() == 0, s.log()


def test_a_bad_attestation_at_the_same_moment_costs_no_good_one(tmp_path: Path, write_config, serve) -> None:
    db = tmp_path / "state.db"
    config = write_config(manual_tracker("m"))
    s = serve(config, "--storage.path", str(db))
    url = s.url + "/api/gates/signoff/attestations"
    bodies = ['{"value": 1, "note": "\\ud800 lone surrogate"}', '{"value": 1, "note": "ok \\ud83d\\ude00"}'] * 4
    bodies += ['{"value": 1, "by": "\\udc00"}', '{"value": 1, "by": "good-last", "note": "\u05d0 \u202e rtl"}']
    start = threading.Barrier(len(bodies))
    answers: list[tuple[int, dict]] = [(0, {})] * len(bodies)

    def send(i: int) -> None:
        start.wait(10)
        answers[i] = post(url, bodies[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    good = [i for i, b in enumerate(bodies) if "\\ud800" not in b and "\\udc00" not in b]
    assert [answers[i][0] for i in good] == [201] * len(good), answers
    assert all(answers[i][0] == 400 and "not valid Unicode" in answers[i][1]["error"]
               for i in range(len(bodies)) if i not in good), answers
    assert all(answers[i][1]["persisted"] for i in good), "201 means stored"
    s.stop()

    s2 = serve(config, "--storage.path", str(db))
    stored = json.loads(s2.get("/api/gates/signoff")[1])["attestations"]
    assert len(stored) == len(good)
    assert {a["note"] for a in stored} == {"ok \U0001f600", "\u05d0 \u202e rtl"}
    status, page = s2.get("/gates/signoff")
    assert status == 200 and "good-last" in page
