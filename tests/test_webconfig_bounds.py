"""Web config bounds: a bcrypt cost that would hang the start is refused; cert files are looked at off the loop."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import trustme

from exporter.config.fields import ConfigError
from exporter.web import tls as web_tls
from exporter.web.webconfig import bcrypt_problem, parse_web_config
from tests.conftest import ROOT

SALT = "a" * 53


@pytest.mark.parametrize("cost, ok", [(4, True), (10, True), (16, True), (17, False), (31, False), (99, False)])
def test_bcrypt_cost_bound(cost: int, ok: bool) -> None:
    problem = bcrypt_problem(f"$2b${cost:02d}${SALT}")
    assert (problem is None) is ok, problem
    if not ok:
        assert f"bcrypt cost {cost} is out of range (4..16)" in (problem or "")


@pytest.mark.parametrize("value", [f"$2b$1\u0661${SALT}", f"$2b$10${SALT}\n", f"$2b$10${SALT[:-1]}"])
def test_bcrypt_hash_is_matched_whole_and_in_ascii(value: str) -> None:
    assert bcrypt_problem(value) is not None


def test_a_cost_of_31_is_refused_at_load_with_file_and_line(tmp_path: Path, write_config) -> None:
    web = tmp_path / "web.yml"
    web.write_text(f"# slow\nbasic_auth_users:\n  ok: $2b$10${SALT}\n  slow: $2b$31${SALT}\n")
    with pytest.raises(ConfigError) as err:
        parse_web_config(web.read_text(), str(web))
    assert [str(i) for i in err.value.issues] == [
        f"{web}:4: basic_auth_users.slow: bcrypt cost 31 is out of range (4..16) "
        "(each login would take minutes or more); 10 to 12 is usual"]
    # and `serve` stops at once with that line, exit 2, instead of hashing for days
    config = write_config("tracker: t\ntitle: T\nphases: []\n")
    run = subprocess.run([sys.executable, "-m", "exporter", "serve", "--config.file", str(config),
                          "--web.config.file", str(web), "--web.listen-address", "127.0.0.1:0",
                          "--storage.path", ""], capture_output=True, text=True, timeout=60, cwd=str(ROOT),
                         check=False)
    assert run.returncode == 2, run.stderr
    assert f"{web}:4: basic_auth_users.slow: bcrypt cost 31" in run.stderr and "Traceback" not in run.stderr


class Tick:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_certificate_files_are_looked_at_in_a_thread_not_on_the_loop(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    ca, renewed_ca = trustme.CA(), trustme.CA()
    for who, where in ((ca, tmp_path / "old"), (renewed_ca, tmp_path / "new")):
        where.mkdir()
        cert = who.issue_cert("127.0.0.1")
        cert.cert_chain_pems[0].write_to_path(str(where / "cert.pem"))
        cert.private_key_pem.write_to_path(str(where / "key.pem"))
    live = tmp_path / "live"
    shutil.copytree(tmp_path / "old", live)
    web = parse_web_config(f"tls_server_config:\n  cert_file: {live / 'cert.pem'}\n  key_file: {live / 'key.pem'}\n",
                           str(tmp_path / "web.yml"))
    reloading = web._ssl
    assert reloading is not None and web.ssl_context() is not None
    clock = Tick()
    reloading._clock, reloading._checked = clock, clock.now
    loop_thread = threading.get_ident()
    stats: list[int] = []
    real_stat = web_tls.os.stat

    def recording_stat(path: str, *a: object, **kw: object) -> object:
        stats.append(threading.get_ident())
        return real_stat(path, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(web_tls.os, "stat", recording_stat)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=web.ssl_context())
    port = server.sockets[0].getsockname()[1]

    async def issuer(trust: trustme.CA) -> bool:
        client = ssl.create_default_context()
        trust.configure_trust(client)
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname="127.0.0.1")
        except ssl.SSLError:
            return False
        writer.close()
        return True

    try:
        assert await issuer(ca)
        for name in ("key.pem", "cert.pem"):
            shutil.copy(tmp_path / "new" / name, live / name)
        stats.clear()  # shutil's own stats ran here, on the test's thread: only the exporter's count
        clock.now += 2  # past the interval: the next hello starts a look at the files
        assert await issuer(ca), "the hello that starts the look is still served the old certificate"
        assert reloading._task is not None
        await reloading._task
        assert await issuer(renewed_ca) and not await issuer(ca)
    finally:
        server.close()
        await server.wait_closed()
    assert stats, "the files were looked at"
    assert loop_thread not in stats, "os.stat ran on the event loop"
