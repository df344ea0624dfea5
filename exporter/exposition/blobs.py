"""Cached pieces of /metrics and the gzip stream made from them without recompressing unchanged pieces."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

from exporter.exposition import gilzlib

GZIP_LEVEL = 1  # only dirty pieces are compressed per scrape; level 1 keeps the worst case (everything changed) low


_GZ = gilzlib.load(GZIP_LEVEL)  # deflate, crc32 and crc32_combine without giving the GIL up (gilzlib.py)
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no mtime, unknown OS


def deflate_block(data: bytes) -> bytes:
    """Raw deflate of `data` ending in a sync flush: blocks like this concatenate into one stream."""
    if _GZ is not None:
        return _GZ.deflate_block(data)
    co = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -15)
    return co.compress(data) + co.flush(zlib.Z_SYNC_FLUSH)


def crc32(data: bytes, value: int = 0) -> int:
    """zlib.crc32, keeping the GIL where it can."""
    return _GZ.crc32(data, value) if _GZ is not None else zlib.crc32(data, value)


class Blob:
    """Bytes with their deflate block and CRC-32, each computed on first use.

    Three kinds: a blob of `data` (kept); a blob with a `source` (a piece of a changing family,
    rendered from the gates' values when first asked for: only its small deflate block, CRC and
    size are kept, and its bytes only once an uncompressed scrape wanted them); and a blob of
    `parts` (a group of pieces, a section, a body): its deflate block is the concatenation of the
    parts' blocks, kept as the list of them (zleaves(): joined once, by the scrape), its CRC their
    combination, and its bytes are never joined but for a scrape.
    """

    __slots__ = ("_data", "_source", "parts", "_size", "_z", "_zl", "_crc")

    def __init__(self, data: bytes | None = None, parts: list[Blob] | None = None,
                 source: Callable[[], bytes] | None = None):
        self._data = data
        self._source = source
        self.parts = parts
        self._size = len(data) if data is not None else None
        self._z: bytes | None = None
        self._zl: tuple[bytes, ...] | None = None
        self._crc: int | None = None

    def _render(self) -> bytes:
        assert self._source is not None
        data = self._source()
        self._size, self._crc = len(data), crc32(data)
        return data

    @property
    def size(self) -> int:
        """Length of the bytes."""
        if self._size is None:
            if self.parts is not None:
                self._size = sum(p.size for p in self.parts)
            else:
                self._z = deflate_block(self._render())
        assert self._size is not None
        return self._size

    def leaves(self) -> list[bytes]:
        """The bytes as a list of buffers (joined only by the caller that sends them)."""
        if self.parts is not None:
            return [b for p in self.parts for b in p.leaves()]
        if self._data is None:
            self._data = self._render()
        return [self._data]

    @property
    def z(self) -> bytes:
        """The deflate block."""
        if self.parts is not None:
            return b"".join(self.zleaves())
        if self._z is None:
            self._z = deflate_block(self._data if self._data is not None else self._render())
        return self._z

    def zleaves(self) -> tuple[bytes, ...]:
        """The deflate block as the pieces' blocks, in order (a parts blob keeps the tuple: a section's
        copy of its 157 pieces' blocks, and the body's of every section's, cost a scrape 1-2 ms)."""
        if self.parts is None:
            return (self.z,)
        if self._zl is None:
            self._zl = tuple(b for p in self.parts for b in p.zleaves())
        return self._zl

    @property
    def crc(self) -> int:
        """CRC-32 of the bytes."""
        if self._crc is None:
            if self.parts is not None and _GZ is not None:
                crc = 0
                for p in self.parts:
                    if p.size:
                        crc = _GZ.crc32_combine(crc, p.crc, p.size)
                self._crc = crc
            elif self.parts is None and self._data is None:
                self._z = deflate_block(self._render())
            else:
                crc = 0
                for leaf in self.leaves():
                    crc = crc32(leaf, crc)
                self._crc = crc
        assert self._crc is not None
        return self._crc


def stored_blocks(data: bytes) -> bytes:
    """`data` as raw deflate stored (uncompressed) blocks, the last one final.

    For the few KB of the tail: zlib releases the GIL around every call, and getting it back can
    take a switch interval (5 ms) when another thread is busy; these are written without zlib.
    """
    out: list[bytes] = []
    for start in range(0, max(len(data), 1), 0xFFFF):
        chunk = data[start:start + 0xFFFF]
        final = start + 0xFFFF >= len(data)
        out += (b"\x01" if final else b"\x00", struct.pack("<HH", len(chunk), len(chunk) ^ 0xFFFF), chunk)
    return b"".join(out)


def gzip_member(body: Blob, tail: bytes) -> bytes:
    """A gzip file of body + tail: cached deflate blocks (each ends byte-aligned, in a sync flush),
    then the tail as stored blocks, the last one final."""
    end = stored_blocks(tail)
    size = body.size + len(tail)
    crc = crc32(tail, body.crc)
    return b"".join((_GZIP_HEADER, *body.zleaves(), end, struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF)))
