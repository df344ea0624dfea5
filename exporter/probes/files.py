"""What the report probes share: names for messages, bounded reads, and a streaming, safe XML scan."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import Any, BinaryIO
from xml.parsers import expat

from exporter.probes.base import ProbeError
from exporter.probes.reading import open_regular, read_limited

MAX_REPORT = 256 * 1024 * 1024  # a report bigger than this is not a report
CHUNK = 64 * 1024
DOCTYPE_REFUSED = "XML with a DOCTYPE internal subset (entity declarations) is not accepted"

# start(tag, attributes, depth) with depth 1 for the root; end(tag, depth) likewise.
StartFn = Callable[[str, dict[str, str], int], None]
EndFn = Callable[[str, int], None]


def display_path(path: str, base_dir: str | None) -> str:
    """A path for messages: relative to the config's folder when it lies inside it."""
    if base_dir:
        rel = os.path.relpath(path, base_dir)
        if not rel.startswith(".." + os.sep) and rel != "..":
            return rel
    return path


def read_bytes(path: str, shown: str | None = None, limit: int = MAX_REPORT) -> bytes:
    """A report file's bytes; ProbeError ("coverage.xml: no such file") if it cannot be read."""
    name = shown or path
    with open_regular(path, name) as fh:
        return read_limited(fh, limit, name)


def as_stream(data: bytes | BinaryIO) -> BinaryIO:
    """A binary stream over bytes (a pushed or fetched report), or the stream itself."""
    return io.BytesIO(data) if isinstance(data, bytes | bytearray) else data


class Rejoined(io.RawIOBase):
    """A stream whose first bytes were read already (to tell formats apart), put back in front."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        super().__init__()
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(view))
        view[:len(data)] = data
        return len(data)


def peek(stream: BinaryIO, size: int = 4096) -> tuple[bytes, BinaryIO]:
    """The first `size` bytes of a stream, and a stream that still starts with them."""
    head = stream.read(size)
    return head, io.BufferedReader(Rejoined(head, stream), CHUNK)


class _Refused(Exception):
    """Raised inside an expat handler to stop the parse with our own message."""


def scan_xml(source: bytes | BinaryIO, name: str, start: StartFn, end: EndFn | None = None,
             limit: int = MAX_REPORT) -> None:
    """Parse XML incrementally, calling `start`/`end` per element; nothing of the tree is kept.

    Memory stays bounded by the chunk size and the longest single tag, whatever the file's size.
    ElementTree/expat never fetch external entities or DTDs, and a plain DOCTYPE (JaCoCo writes
    one) is harmless; entities can only be declared in a DOCTYPE's internal subset, which no
    report format uses, so that is what is refused (no entity expansion bombs).
    Handlers raise ProbeError to reject a document early (a wrong root element).
    """
    parser = expat.ParserCreate()
    depth = 0

    def on_doctype(_name: str, _sysid: str | None, _pubid: str | None, has_internal_subset: int) -> None:
        if has_internal_subset:
            raise _Refused(DOCTYPE_REFUSED)

    def on_entity(*_args: object) -> None:
        raise _Refused(DOCTYPE_REFUSED)

    def on_start(tag: str, attrs: dict[str, str]) -> None:
        nonlocal depth
        depth += 1
        start(tag, attrs, depth)

    def on_end(tag: str) -> None:
        nonlocal depth
        if end is not None:
            end(tag, depth)
        depth -= 1

    parser.StartDoctypeDeclHandler = on_doctype
    parser.EntityDeclHandler = on_entity
    parser.StartElementHandler = on_start
    parser.EndElementHandler = on_end
    stream = as_stream(source)
    total = 0
    try:
        while chunk := stream.read(CHUNK):
            total += len(chunk)
            if total > limit:
                raise ProbeError(f"{name}: larger than {limit // (1024 * 1024)} MiB")
            parser.Parse(chunk, False)
        parser.Parse(b"", True)
    except _Refused as exc:
        raise ProbeError(f"{name}: {exc}") from None
    except expat.ExpatError as exc:
        raise ProbeError(f"{name}: not valid XML ({exc})") from None
    except OSError as exc:
        raise ProbeError(f"{name}: {exc.strerror or exc}") from None


def root_of(name: str, start: StartFn, roots: tuple[str, ...], what: str) -> StartFn:
    """Wrap `start` so that a root element other than `roots` stops the scan ("not a WHAT report")."""

    def check(tag: str, attrs: dict[str, str], depth: int) -> None:
        if depth == 1 and tag not in roots:
            raise ProbeError(f"{name}: not a {what} report (root is <{tag}>)")
        start(tag, attrs, depth)

    return check
