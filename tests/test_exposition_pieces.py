"""The cached pieces of /metrics (exposition/frame.py, blobs.py): however evaluations dirty the pieces, their
groups and sections between scrapes, a scrape is byte for byte what a frame built from scratch on the same
state renders, gzip-compressed or not, in both formats. Several groups of pieces per family, so that a
changed piece must invalidate its own group and no other."""

from __future__ import annotations

import gzip
import random
import time
import zlib

import pytest

from exporter.config.model import parse_config
from exporter.exposition import frame as framemod
from exporter.exposition.blobs import Blob, gzip_member
from exporter.exposition.gates import Exposition
from exporter.model import Result
from exporter.state.memory import State

GATES = 3 * framemod.CHUNK * framemod.GROUP + 5  # three whole groups and a short fourth, in every family


def config_text(n: int) -> str:
    gates = "\n".join(f"          - {{id: g{i:05d}, file: {{path: /etc/hostname}}, expect: '< 30d'}}"
                      for i in range(n))
    return f"tracker: t\nphases:\n  - id: p\n    steps:\n      - id: s\n        gates:\n{gates}\n"


def fresh(config, state: State, now: float) -> Exposition:
    expo = Exposition(registry=None)
    expo.set_trackers([(config, state)])
    return expo


@pytest.mark.parametrize("seed", [1, 2])
def test_incremental_scrapes_equal_a_frame_built_from_scratch(seed: int):
    config = parse_config(config_text(GATES))
    state, rnd, now = State(), random.Random(seed), time.time()
    expo = fresh(config, state, now)
    gates = config.gates
    for round_ in range(12):
        # 1-40 gates changed between two scrapes: inside one piece, across groups, the last short group
        for _ in range(rnd.choice((1, 3, 40))):
            g = gates[rnd.choice((rnd.randrange(GATES), GATES - 1, 0))]
            outcome = rnd.choice(("pass", "fail", "error"))
            st = state.record(Result(g.id, outcome, now + round_, rnd.random(), {"value": rnd.random() * 100}))
            expo.update(g, st, config.uptime_window, now + round_)
        if round_ % 3 == 1:
            expo._live.sweep(budget=1.0)  # some pieces rendered ahead, as the loop's sweep does
        want = fresh(config, state, now + round_)
        for om in (False, True):
            plain = expo.render(om, gzip=False)
            assert plain == want.render(om, gzip=False)
            assert gzip.decompress(expo.render(om, gzip=True)) == plain


def test_a_gzip_member_of_groups_is_one_valid_stream_with_the_right_crc_and_size():
    pieces = [Blob(source=(lambda i=i: f"line {i}\n".encode() * (i % 5))) for i in range(40)]
    groups = [Blob(parts=pieces[k:k + 16]) for k in range(0, 40, 16)]
    body = Blob(parts=[Blob(b"# HELP x\n"), *groups])
    member = gzip_member(body, b"tail\n")
    want = b"# HELP x\n" + b"".join(f"line {i}\n".encode() * (i % 5) for i in range(40)) + b"tail\n"
    assert gzip.decompress(member) == want  # gzip checks the CRC-32 and the size in the trailer
    assert body.crc == zlib.crc32(want[:-5]) and body.size == len(want) - 5
    assert body.z == b"".join(body.zleaves())


@pytest.mark.parametrize("n", [0, 1, 100, 5_000, 15_000, 300_000])
def test_the_gil_keeping_deflate_and_crc_are_the_zlib_modules(n: int):
    from exporter.exposition import gilzlib

    gz = gilzlib.load(1)
    if gz is None:
        pytest.skip("no libz.so.1 here: the zlib module does the work")
    rnd = random.Random(n)
    for alphabet in (b"gate_passed{} 0.1\n", bytes(range(256))):  # text, and bytes deflate cannot shrink
        data = bytes(rnd.choice(alphabet) for _ in range(n))
        block = gz.deflate_block(data)
        assert zlib.decompressobj(-15).decompress(block) == data
        if gz.version.decode() == zlib.ZLIB_RUNTIME_VERSION:  # the same library: the same bytes
            co = zlib.compressobj(1, zlib.DEFLATED, -15)
            assert block == co.compress(data) + co.flush(zlib.Z_SYNC_FLUSH)
        assert gz.crc32(data, 7) == zlib.crc32(data, 7)
        assert gz.crc32_combine(zlib.crc32(b"head"), zlib.crc32(data), len(data)) == zlib.crc32(b"head" + data)


def test_each_thread_deflates_on_its_own_stream():
    import threading

    from exporter.exposition import gilzlib

    gz = gilzlib.load(1)
    if gz is None:
        pytest.skip("no libz.so.1 here")
    data = [bytes([65 + i]) * 20_000 + bytes(range(256)) * 30 for i in range(4)]
    got: dict[int, list[bytes]] = {}

    def work(i: int) -> None:
        got[i] = [gz.deflate_block(data[i]) for _ in range(200)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        assert {zlib.decompressobj(-15).decompress(b) for b in got[i]} == {data[i]}
