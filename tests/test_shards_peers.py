"""Shards act as one (issue 18): three, then four real `serve` processes on 127.0.0.10-13, one port.

Writes through every shard for gates of every other shard; every shard's API, badges and page
equal one exporter's for the same tracker; a stopped shard's gates are unknown and its writes
503; growing to four shards keeps every attestation and pushed report reachable.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from conftest import TESTDATA, Served, start_serve, wait_for
from exporter.engine.runtime import load_configs
from exporter.engine.sharding import owner_of

UNIT = (TESTDATA / "reports" / "junit" / "unit.xml").read_bytes()  # 5 tests, 1 failure, 1 skipped
PHASES, STEPS = 3, 4
# Times and counters differ between any two runs; everything else must be equal.
TIMING = {"generated_at", "last_evaluation", "last_pass", "duration_seconds", "since", "at", "at_seconds",
          "expires_at", "received_at", "started", "duration", "counts", "history", "age"}


def tracker(tmp_path: Path) -> Path:
    (tmp_path / "tokens").write_text("tok-ci\n")
    lines = ["tracker: one", "title: One tracker", "push_tokens_file: tokens",
             "defaults: {interval: 5s, timeout: 5s}", "phases:"]
    for p in range(PHASES):
        lines += [f"  - id: p{p}", "    steps:"]
        for s in range(STEPS):
            lines += [f"      - id: s{p}{s}", "        gates:",
                      f"          - {{id: ok{p}{s}, command: {{argv: [\"true\"]}}}}",
                      f"          - {{id: bad{p}{s}, tier: important, command: {{argv: [\"false\"]}}}}",
                      f"          - {{id: sign{p}{s}, tier: critical, manual: {{max_age: 1d}}}}",
                      f"          - {{id: tests{p}{s}, junit: {{push: {{max_age: 1d}}}}}}"]
    path = tmp_path / "one.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.10", 0))
        return int(s.getsockname()[1])


def call(base: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
         ) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(base + path, data=body, method="POST" if body is not None else "GET",
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def attest(base: str, gate: str) -> tuple[int, dict[str, Any]]:
    status, body, _ = call(base, f"/api/gates/{gate}/attestations", json.dumps(
        {"value": True, "by": "alice", "note": f"checked {gate}"}).encode(), {"Content-Type": "application/json"})
    return status, json.loads(body)


def push(base: str, gate: str) -> tuple[int, dict[str, Any]]:
    status, body, _ = call(base, f"/api/gates/{gate}/evidence?commit=abc&branch=main&run_id=7", UNIT,
                           {"Authorization": "Bearer tok-ci", "Content-Type": "application/xml"})
    return status, json.loads(body)


def doc(base: str, path: str) -> dict[str, Any]:
    status, body, _ = call(base, path)
    assert status == 200, (path, status, body[:300])
    return json.loads(body)


def untimed(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def difference(got: Any, want: Any, where: str = "") -> str:
    """The first place two documents differ, for a readable failure."""
    if isinstance(got, dict) and isinstance(want, dict):
        for k in sorted(set(got) | set(want)):
            if got.get(k) != want.get(k):
                return difference(got.get(k), want.get(k), f"{where}.{k}")
    elif isinstance(got, list) and isinstance(want, list) and len(got) == len(want):
        for n, (a, b) in enumerate(zip(got, want, strict=True)):
            if a != b:
                return difference(a, b, f"{where}[{n}]")
    return f"{where}: {got!r} != {want!r}"


def settled(base: str, gates: int) -> bool:
    """Every gate evaluated, and every write's re-evaluation done (manual and push gates judged on it)."""
    d = doc(base, "/api/progress/status")
    return (len(d["gates"]) == gates and all(g["status"] != "pending" for g in d["gates"])
            and all((g.get("evidence") or {}).get("kind") in ("attestation", "push")
                    for g in d["gates"] if g["id"].startswith(("sign", "tests"))))


def page_outline(base: str) -> list[str]:
    """What the overview says, without times or uptime strips: links and status words, in order."""
    status, body, _ = call(base, "/")
    assert status == 200
    html = body.decode()
    return re.findall(r'href="(/(?:gates|phases)/[^"?]+)|>(Pass|Fail|Error|Pending|Unknown)<', html)


class Shards:
    """N shards of one tracker on 127.0.0.1{index}:PORT, each with its own state file."""

    def __init__(self, tmp_path: Path, config: Path, count: int, port: int):
        self.tmp_path, self.config, self.count, self.port = tmp_path, config, count, port
        (tmp_path / "shard.secret").write_text("a shared secret of the shards, 32+ bytes\n")
        self.procs: dict[int, Served] = {}

    def base(self, i: int) -> str:
        return f"http://127.0.0.1{i}:{self.port}"

    def start(self, i: int) -> Served:
        def up(s: Served) -> bool:
            try:
                return call(self.base(i), "/-/ready")[0] == 200
            except OSError:
                return False

        served = start_serve(self.config, self.tmp_path, "--web.listen-address", f"127.0.0.1{i}:{self.port}",
                             "--storage.path", str(self.tmp_path / f"shard-{i}.db"),
                             "--shard.index", str(i), "--shard.count", str(self.count),
                             "--shard.peers", f"http://127.0.0.1{{index}}:{self.port}",
                             "--shard.secret-file", str(self.tmp_path / "shard.secret"), probe=up)
        self.procs[i] = served
        return served

    def stop(self) -> None:
        for s in self.procs.values():
            s.stop(signal.SIGTERM)


@pytest.fixture
def shards(tmp_path: Path):
    made: list[Shards] = []

    def make(config: Path, count: int, port: int) -> Shards:
        s = Shards(tmp_path, config, count, port)
        made.append(s)
        for i in range(count):
            s.start(i)
        return s

    yield make
    for s in made:
        s.stop()


def test_three_shards_act_as_one_then_four(tmp_path: Path, serve, shards) -> None:
    config = tracker(tmp_path)
    whole = load_configs([str(config)])[0]
    ids = [g.id for g in whole.gates]
    manual = [i for i in ids if i.startswith("sign")]
    pushed = [i for i in ids if i.startswith("tests")]

    single_db = str(tmp_path / "single.db")
    single = serve(config, "--storage.path", single_db)
    for gate in manual:
        assert attest(single.url, gate)[0] == 201
    for gate in pushed:
        assert push(single.url, gate)[0] == 202
    wait_for(lambda: settled(single.url, len(ids)), timeout=30, what="the single exporter to settle")
    want = {path: untimed(doc(single.url, path)) for path in ("/api/progress/status", "/api/gates")}
    want_gates = {g: untimed(doc(single.url, f"/api/gates/{g}")) for g in ids}
    want_badges = {p: call(single.url, p)[1] for p in ["/badge/tracker.svg", "/badge/phase/p1.svg",
                                                       *(f"/badge/gate/{g}.svg" for g in ids)]}
    want_page = page_outline(single.url)
    assert len(want_page) > 10, want_page
    single.stop()

    three = shards(config, 3, free_port())
    owner = {g: owner_of(whole, g, 3) for g in ids}
    assert set(owner.values()) == {0, 1, 2}, "every shard owns gates"
    # Every shard writes for gates of every other shard.
    pairs: set[tuple[int, int]] = set()
    for n, gate in enumerate(manual + pushed):
        via = (owner[gate] + 1 + n % 2) % 3
        status, answer = attest(three.base(via), gate) if gate.startswith("sign") else push(three.base(via), gate)
        assert status == (201 if gate.startswith("sign") else 202), answer
        assert answer["gate"] == gate
        pairs.add((via, owner[gate]))
    assert pairs == {(a, b) for a in range(3) for b in range(3) if a != b}
    for i in range(3):
        wait_for(lambda i=i: settled(three.base(i), len(ids)), timeout=30, what=f"shard {i} to show everything")

    for i in range(3):
        base = three.base(i)
        for path, expected in want.items():
            got = untimed(doc(base, path))
            assert got == expected, (i, path, difference(got, expected))
        for gate in ids:
            assert untimed(doc(base, f"/api/gates/{gate}")) == want_gates[gate], (i, gate)
        for path, svg in want_badges.items():
            got_svg = call(base, path)[1]
            texts = re.compile(rb">([^<>]+)</text>")
            assert got_svg == svg, (i, path, texts.findall(got_svg), texts.findall(svg))
        got_page = page_outline(base)
        assert got_page == want_page, (i, len(got_page), len(want_page), difference(got_page, want_page),
                                       [x for x in got_page if x not in want_page][:5],
                                       [x for x in want_page if x not in got_page][:5])

    # A signature a client made up is refused, and the write is not stored.
    forged = {"X-Qualitygate-Shard-From": "1", "X-Qualitygate-Shard-Time": "0", "X-Qualitygate-Shard-Signature": "00",
              "Content-Type": "application/json"}
    gate0 = next(g for g in manual if owner[g] == 0)
    status, body, _ = call(three.base(0), f"/api/gates/{gate0}/attestations", b'{"value": false}', forged)
    assert status == 401 and b"signature" in body

    # Shard 2 stops: its gates are unknown (never pass) on the others, counted apart; its writes are 503.
    three.procs[2].stop(signal.SIGTERM)
    mine = [g for g in ids if owner[g] == 2]
    for i in (0, 1):
        base = three.base(i)
        wait_for(lambda base=base: doc(base, "/api/progress/status").get("unknown_gates") == len(mine),
                 timeout=10, what="the stopped shard's gates to be unknown")
        d = doc(base, "/api/progress/status")
        unknown = {g["id"] for g in d["gates"] if g["status"] == "unknown"}
        assert unknown == set(mine)
        assert all(g["shard"] == 2 and "shard 2" in g["message"] for g in d["gates"] if g["id"] in unknown)
        assert [s["shard"] for s in d["unknown_shards"]] == [2]
        assert sum(t.get("unknown", 0) for t in d["quality_gates"].values()) == len(mine)
        assert not any(b["gate"] in unknown for b in d["blockers"])
        passed = sum(g["status"] == "pass" for g in d["gates"])
        assert d["overall_completion"] == pytest.approx(passed / len(ids))
        gate = next(g for g in mine if g.startswith("sign"))
        status, answer = attest(base, gate)
        assert status == 503 and answer["shard"] == 2 and "shard 2" in answer["error"]
        status, answer = push(base, next(g for g in mine if g.startswith("tests")))
        assert status == 503 and answer["shard"] == 2
        assert b">unknown<" in call(base, f"/badge/gate/{gate}.svg")[1]
        assert call(base, f"/api/gates/{gate}")[0] == 503
    three.stop()

    # What one exporter shows after a restart (pushes come back from its state file) is the reference now.
    single = serve(config, "--storage.path", single_db)
    wait_for(lambda: settled(single.url, len(ids)), timeout=30, what="the restarted single exporter to settle")
    want_restarted = untimed(doc(single.url, "/api/progress/status"))
    want_gates = {g: untimed(doc(single.url, f"/api/gates/{g}")) for g in ids}
    single.stop()

    # Four shards on the same state files (and a new one): every attestation and push is still there.
    four = shards(config, 4, three.port)
    moved = [g for g in ids if owner_of(whole, g, 4) == 3]
    assert any(g.startswith("sign") for g in moved) and any(g.startswith("tests") for g in moved)
    for i in range(4):
        wait_for(lambda i=i: settled(four.base(i), len(ids)), timeout=40, what=f"shard {i} of 4 to settle")
    for i in range(4):
        base = four.base(i)
        got = untimed(doc(base, "/api/progress/status"))
        assert got == want_restarted, (i, difference(got, want_restarted))
        for gate in moved:
            assert untimed(doc(base, f"/api/gates/{gate}")) == want_gates[gate], (i, gate)
