"""`qualitygate serve` binds port 0 when asked, says the port it got, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, http_get, listening_port, wait_listening
from exporter.cli.common import UsageError
from exporter.cli.serve import parse_listen

CONFIG = ROOT / "examples" / "probes" / "file.yml"


@pytest.mark.parametrize("log_format", ["logfmt", "json"])
def test_port_0_is_bound_and_the_real_address_is_logged(tmp_path: Path, log_format: str) -> None:
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "exporter", "serve", "--config.file", str(CONFIG),
                                 "--web.listen-address", "127.0.0.1:0", "--storage.path", "",
                                 "--log.format", log_format], cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT,
                                text=True)
    try:
        port = wait_listening(proc, log_path)
        assert port > 0
        assert http_get(f"http://127.0.0.1:{port}/-/healthy")[0] == 200
        lines = [line for line in log_path.read_text().splitlines() if "listening" in line]
        if log_format == "json":
            event = json.loads(lines[0])
            assert event["msg"] == "listening" and event["address"] == f"127.0.0.1:{port}"
        else:
            assert f"address=127.0.0.1:{port} " in lines[0]
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0
    assert "shutting down" in log_path.read_text()


def test_two_exporters_on_port_0_get_two_ports(tmp_path: Path, serve) -> None:
    a, b = serve(CONFIG, ready=False), serve(CONFIG, ready=False)
    assert a.port != b.port
    assert a.get("/-/healthy")[0] == b.get("/-/healthy")[0] == 200


def test_listening_port_reads_both_log_formats() -> None:
    assert listening_port("ts=x level=info logger=qualitygate msg=listening address=127.0.0.1:4242 gates=1") == 4242
    assert listening_port('ts=x msg=listening address="[::1]:4243" gates=1') == 4243
    assert listening_port('{"ts": "x", "msg": "listening", "address": ":9916", "gates": 2}') == 9916
    assert listening_port("ts=x msg=\"state kept in memory only\"") is None


@pytest.mark.parametrize(("text", "want"), [(":9916", (None, 9916)), ("127.0.0.1:0", ("127.0.0.1", 0)),
                                            ("[::1]:9916", ("::1", 9916))])
def test_listen_addresses(text: str, want: tuple[str | None, int]) -> None:
    assert parse_listen(text) == want


@pytest.mark.parametrize("text", ["9916", "host:", "host:65536", "host:-1", "host:http"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(UsageError, match=r"--web\.listen-address"):
        parse_listen(text)
