"""Raw deflate blocks and CRC-32s of /metrics pieces, computed by the C zlib without giving up the GIL.

Why: Python's zlib releases the GIL around every compress() and flush() call, and around crc32() of
more than 5 KB. Giving it up is cheap; getting it back is not while another thread of the server runs
Python code (the state file's writer, the report readers, a reload's worker): each call then waits up
to the switch interval (1 ms in serve). A scrape that rendered 8 changed pieces spent 0.4 ms in deflate
and 6-9 ms waiting for the GIL around it (measured in a real serve at 10,000 gates, gc and callback
timers in the process). A piece is 5-15 KB and deflates in under 10 us at level 1 (8-9 us for 5.5 KB
here, ctypes included; the zlib module's 6-7 us): holding the GIL that long is the cheaper side. The
same libz Python links is called through ctypes.PyDLL, whose calls keep the GIL; its output is the
zlib module's, byte for byte (tests/test_exposition_pieces.py).

Where libz or its symbols cannot be loaded, the zlib module does the work (None from load()).
"""

from __future__ import annotations

import ctypes
import threading
import zlib
from collections.abc import Callable

Z_SYNC_FLUSH, Z_OK, Z_BUF_ERROR, Z_DEFLATED = 2, 0, -5, 8
MEM_LEVEL = 8  # zlib's default, as zlib.compressobj uses: the same output


class _ZStream(ctypes.Structure):
    _fields_ = [
        ("next_in", ctypes.c_void_p), ("avail_in", ctypes.c_uint), ("total_in", ctypes.c_ulong),
        ("next_out", ctypes.c_void_p), ("avail_out", ctypes.c_uint), ("total_out", ctypes.c_ulong),
        ("msg", ctypes.c_char_p), ("state", ctypes.c_void_p),
        ("zalloc", ctypes.c_void_p), ("zfree", ctypes.c_void_p), ("opaque", ctypes.c_void_p),
        ("data_type", ctypes.c_int), ("adler", ctypes.c_ulong), ("reserved", ctypes.c_ulong),
    ]


class GilZlib:
    """libz's deflate (raw, sync-flushed, one stream per thread, reset for each block), crc32 and crc32_combine."""

    def __init__(self, lib: ctypes.PyDLL, level: int):
        self._lib, self._level = lib, level
        lib.zlibVersion.restype = ctypes.c_char_p
        self.version: bytes = lib.zlibVersion()
        self._local = threading.local()
        lib.deflateInit2_.argtypes = (ctypes.POINTER(_ZStream), ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                      ctypes.c_int, ctypes.c_char_p, ctypes.c_int)
        lib.deflate.argtypes = (ctypes.POINTER(_ZStream), ctypes.c_int)
        lib.deflateReset.argtypes = (ctypes.POINTER(_ZStream),)
        lib.deflateEnd.argtypes = (ctypes.POINTER(_ZStream),)
        lib.crc32.argtypes = (ctypes.c_ulong, ctypes.c_char_p, ctypes.c_uint)
        lib.crc32.restype = ctypes.c_ulong
        lib.crc32_combine.argtypes = (ctypes.c_ulong, ctypes.c_ulong, ctypes.c_long)
        lib.crc32_combine.restype = ctypes.c_ulong
        self._deflate, self._reset, self._crc32 = lib.deflate, lib.deflateReset, lib.crc32
        # Not in Python's zlib module: a scrape combines the cached pieces' CRCs (hundreds of calls; with a
        # CDLL, which gives the GIL up, 200 calls took 149 ms while another thread was busy, 0.3 ms kept).
        self.crc32_combine: Callable[[int, int, int], int] = lib.crc32_combine

    def _stream(self) -> tuple[_ZStream, object]:
        """This thread's stream (made on first use, else reset) and a reference to it for the calls."""
        got: tuple[_ZStream, object] | None = getattr(self._local, "strm", None)
        if got is None:
            strm = _ZStream()
            ref = ctypes.byref(strm)
            rc = self._lib.deflateInit2_(ref, self._level, Z_DEFLATED, -15, MEM_LEVEL, 0,
                                         self.version, ctypes.sizeof(_ZStream))
            if rc != Z_OK:
                raise zlib.error(f"deflateInit2 returned {rc}")
            got = self._local.strm = (strm, ref)
            self._local.end = _Ender(self._lib, strm)  # deflateEnd when the thread's locals go
        else:
            self._reset(got[1])
        return got

    def deflate_block(self, data: bytes) -> bytes:
        """Raw deflate of `data` ending in a sync flush (what zlib.compressobj(level, DEFLATED, -15) gives from
        compress(data) + flush(Z_SYNC_FLUSH))."""
        n = len(data)
        if n >= 1 << 30:
            raise ValueError("a piece of 1 GiB or more")
        strm, ref = self._stream()
        # deflate's worst case is stored blocks, 5 bytes for each 16 KB at most, and the sync flush's empty one
        size = n + (n >> 8) + 128
        out = ctypes.create_string_buffer(size)
        strm.next_in, strm.avail_in = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p), n  # no copy of data
        strm.next_out, strm.avail_out = ctypes.addressof(out), size
        rc = self._deflate(ref, Z_SYNC_FLUSH)
        left_in, left_out = strm.avail_in, strm.avail_out
        strm.next_in = strm.next_out = None  # nothing dangles once `data` and `out` go
        if rc not in (Z_OK, Z_BUF_ERROR) or left_in or not left_out:
            raise zlib.error(f"deflate returned {rc} with {left_in} bytes left in, {left_out} free out")
        return ctypes.string_at(out, size - left_out)  # one copy (out.raw[:k] makes two)

    def crc32(self, data: bytes, value: int = 0) -> int:
        """zlib.crc32(data, value)."""
        if len(data) >= 1 << 31:
            return zlib.crc32(data, value)
        return int(self._crc32(value, data, len(data)))


class _Ender:
    """Ends a thread's deflate stream when that thread's locals are let go of."""

    def __init__(self, lib: ctypes.PyDLL, strm: _ZStream):
        self._lib, self._strm = lib, strm

    def __del__(self) -> None:
        self._lib.deflateEnd(ctypes.byref(self._strm))


def load(level: int) -> GilZlib | None:
    """The GIL-keeping zlib, or None where libz.so.1 or one of its symbols is missing (then the zlib module
    deflates, and CRCs of joined pieces are computed over their bytes)."""
    try:
        gz = GilZlib(ctypes.PyDLL("libz.so.1"), level)
        gz.deflate_block(b"probe")  # a stream can be made here
    except (OSError, AttributeError, ctypes.ArgumentError, zlib.error):
        return None
    return gz
