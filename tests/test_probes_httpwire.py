"""probes/httpwire.py's bounded parser, fed bytes directly (the socket side is in test_probes_http.py)."""

import pytest

from exporter.probes.httpwire import MAX_HEAD, Response, WireError


class _Keep:
    def __init__(self) -> None:
        self.data = b""

    def feed(self, data: bytes) -> None:
        self.data += data


def _response() -> tuple[Response, _Keep]:
    keep = _Keep()
    return Response(lambda status, headers: keep), keep


def test_chunked_body_split_anywhere_is_reassembled() -> None:
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n"
    for cut in range(1, len(raw)):
        resp, keep = _response()
        resp.feed(raw[:cut])
        resp.feed(raw[cut:])
        assert resp.done and resp.status == 200 and keep.data == b"hello world"


def test_malformed_status_line() -> None:
    resp, _ = _response()
    with pytest.raises(WireError, match="invalid response: bad status line"):
        resp.feed(b"HTTP/1.1 2x0 OK\r\n\r\n")


def test_oversized_header_block() -> None:
    resp, _ = _response()
    with pytest.raises(WireError, match="header block larger than"):
        resp.feed(b"HTTP/1.1 200 OK\r\nX: " + b"a" * (MAX_HEAD + 10))


def test_endless_chunk_size_line() -> None:
    resp, _ = _response()
    resp.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    with pytest.raises(WireError, match="chunk"):
        resp.feed(b"f" * 10000)


def test_truncated_and_close_delimited_bodies() -> None:
    resp, _ = _response()
    resp.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    with pytest.raises(WireError, match="response body incomplete"):
        resp.eof()
    resp, keep = _response()
    resp.feed(b"HTTP/1.1 200 OK\r\n\r\nuntil close")
    resp.eof()
    assert resp.done and keep.data == b"until close"
    resp, _ = _response()
    with pytest.raises(WireError, match="server disconnected without a response"):
        resp.eof()
