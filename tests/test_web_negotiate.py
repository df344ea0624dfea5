"""Accept-Encoding with q-values: `gzip;q=0` means no gzip, on /metrics and on the status page alike."""

from __future__ import annotations

import gzip
import http.client
from pathlib import Path

import pytest

from exporter.web.negotiate import accepts_gzip, wants_openmetrics
from tests.test_manual_gates import manual_tracker


@pytest.mark.parametrize("header, gzipped", [
    ("gzip", True), ("GZIP", True), ("gzip, deflate, br", True), ("gzip;q=0.5", True), ("gzip ; q=1.0", True),
    ("x-gzip", True), ("*", True), ("deflate, *;q=0.1", True), ("br;q=1, gzip;q=0.001", True),
    ("gzip;q=0", False), ("gzip; q=0.0", False), ("GZIP;Q=0", False), ("deflate, gzip;q=0", False),
    ("*;q=0", False), ("gzip;q=0, *", False), ("identity", False), ("", False), ("deflate", False),
    ("gzip;q=abc", False), ("gzip;q=2", False), ("gzipped", False), ("nogzip", False),
])
def test_accepts_gzip(header: str, gzipped: bool) -> None:
    assert accepts_gzip(header) is gzipped


@pytest.mark.parametrize("header, om", [
    ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1", True),
    ("application/openmetrics-text; version=0.0.1", True),
    ("application/openmetrics-text;q=0, text/plain", False), ("text/plain", False), ("", False),
])
def test_wants_openmetrics(header: str, om: bool) -> None:
    assert wants_openmetrics(header) is om


def fetch(port: int, path: str, accept_encoding: str) -> tuple[int, str | None, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Accept-Encoding": accept_encoding})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Encoding"), resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize("path", ["/metrics", "/", "/gates/signoff"])
def test_q_zero_is_honoured_by_a_real_exporter(tmp_path: Path, write_config, serve, path: str) -> None:
    s = serve(write_config(manual_tracker("m")))
    status, coding, body = fetch(s.port, path, "gzip;q=0")
    assert status == 200 and coding is None
    assert body.startswith((b"# HELP", b"<!DOCTYPE", b"<!doctype"))
    for header in ("gzip;q=0, identity", "*;q=0", "deflate, gzip;q=0"):
        assert fetch(s.port, path, header)[1] is None, header
    status, coding, body = fetch(s.port, path, "deflate, gzip;q=0.5")
    assert status == 200 and coding == "gzip"
    assert gzip.decompress(body)
