"""SVG badges: well-formed XML, escaped text, widths that grow with the text, the right colours."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.report.badges import (
    COLORS,
    badge_svg,
    completion_color,
    gate_badge,
    percent,
    phase_badge,
    status_color,
    text_width,
    tracker_badge,
)
from tracker_support import small_status

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}text")]


def test_badge_is_svg_with_label_and_message():
    root = parse(badge_svg("quality gates", "85%", "green"))
    assert root.get("height") == "20" and int(root.get("width")) > 60
    assert root.get("role") == "img" and root.get("aria-label") == "quality gates: 85%"
    assert root.find(f"{SVG}title").text == "quality gates: 85%"
    assert texts(root) == ["quality gates", "quality gates", "85%", "85%"]
    fills = [r.get("fill") for r in root.iter(f"{SVG}rect")]
    assert "#555" in fills and COLORS["green"] in fills


def test_text_is_escaped():
    root = parse(badge_svg('<b>"x" & y</b>', "a\x00b\nc", "#ABC"))
    assert texts(root)[0] == '<b>"x" & y</b>'
    assert texts(root)[2] == "ab c"
    assert "#abc" in [r.get("fill") for r in root.iter(f"{SVG}rect")]


@pytest.mark.parametrize("color", ["purple", "#12", "red;stroke:1", 'red"/><script>', ""])
def test_bad_colours_are_rejected(color):
    with pytest.raises(ValueError, match="invalid badge colour"):
        badge_svg("a", "b", color)


def test_width_estimate():
    assert text_width("") == 0
    assert text_width("iii") < text_width("mmm")
    assert text_width("100%") == pytest.approx(7 * 3 + 11.84)
    narrow = int(parse(badge_svg("x", "1%", "red")).get("width"))
    wide = int(parse(badge_svg("x", "WWWWWWWW", "red")).get("width"))
    assert wide - narrow > 60


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=100), st.text(max_size=100))
def test_any_text_gives_well_formed_svg(label, message):
    root = parse(badge_svg(label, message, "blue"))
    assert int(root.get("width")) >= 10


def test_colours():
    assert [completion_color(r) for r in (1.0, 0.95, 0.8, 0.6, 0.3, 0.1, 0.0, None)] == [
        "brightgreen", "green", "yellowgreen", "yellow", "orange", "red", "red", "lightgrey"]
    assert [status_color(s) for s in ("pass", "fail", "error", "pending", "complete", "in_progress",
                                      "not_started", "bogus")] == [
        "brightgreen", "red", "orange", "lightgrey", "brightgreen", "yellow", "lightgrey", "lightgrey"]
    assert percent(0.9999) == "99.9%" and percent(1.0) == "100%" and percent(1 / 3) == "33.3%"
    # cut, not rounded, at any precision; and no float artefacts (0.29 * 100 is 28.999...)
    assert percent(199 / 200, 0) == "99%" and percent(0.29) == "29%" and percent(0.57, 0) == "57%"
    assert percent(0.025, 1) == "2.5%" and percent(0.0) == "0%"


def test_status_badges():
    status = small_status()
    assert texts(parse(tracker_badge(status)))[2] == "20%"
    assert texts(parse(phase_badge(status, "core")))[::2] == ["Core", "33.3%"]
    gate = parse(gate_badge(status, "coverage"))
    assert texts(gate)[::2] == ["Line coverage", "fail"]
    assert COLORS["red"] in [r.get("fill") for r in gate.iter(f"{SVG}rect")]
    assert phase_badge(status, "nope") is None and gate_badge(status, "nope") is None
    assert texts(parse(tracker_badge({**status, "gates": []})))[2] == "no gates"


# --- the HTTP routes, against a real runtime ----------------------------------------------------

TRACKER = """
tracker: {name}
title: Badges {name}
defaults: {{interval: 1s, timeout: 500ms}}
phases:
  - id: build
    title: Build & ship
    steps:
      - id: artifacts
        gates:
          - id: {name}-present
            title: Present
            file: {{path: present.txt}}
          - id: shared-absent
            title: Absent
            file: {{path: absent.txt}}
"""


@pytest.fixture
async def badge_client(aiohttp_client, tmp_path):
    import asyncio

    from exporter.engine.runtime import Runtime, load_configs
    from exporter.web.app import make_app

    (tmp_path / "present.txt").write_text("x", encoding="utf-8")
    paths = []
    for name in ("alpha", "beta"):
        path = tmp_path / f"{name}.yml"
        path.write_text(TRACKER.format(name=name), encoding="utf-8")
        paths.append(str(path))
    runtime = Runtime(paths)
    await runtime.start(load_configs(paths))
    for _ in range(200):  # every gate evaluated once, within 10 s
        if all(st.result for s in runtime.states.values() for st in s.gates.values()) and \
                all(len(s.gates) == 2 for s in runtime.states.values()):
            break
        await asyncio.sleep(0.05)
    client = await aiohttp_client(make_app(runtime))
    yield client
    await runtime.stop()


async def test_badge_routes(badge_client):
    resp = await badge_client.get("/badge/tracker.svg?tracker=alpha")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "image/svg+xml; charset=utf-8"
    assert resp.headers["Cache-Control"] == "no-cache, max-age=0, must-revalidate"
    root = parse(await resp.text())
    assert texts(root)[::2] == ["quality gates", "50%"]

    resp = await badge_client.get("/badge/phase/build.svg?tracker=beta")
    assert texts(parse(await resp.text()))[::2] == ["Build & ship", "50%"]
    resp = await badge_client.get("/badge/gate/alpha-present.svg")  # unique across trackers
    assert resp.status == 200 and texts(parse(await resp.text()))[::2] == ["Present", "pass"]
    resp = await badge_client.get("/badge/gate/shared-absent.svg?tracker=alpha")
    assert texts(parse(await resp.text()))[::2] == ["Absent", "fail"]
    resp = await badge_client.get("/badge/tracker.svg")  # both trackers summed: 2 of 4
    assert texts(parse(await resp.text()))[2] == "50%"


async def test_badge_routes_unknown_ids_and_revalidation(badge_client):
    for url in ("/badge/gate/nope.svg", "/badge/phase/nope.svg", "/badge/tracker.svg?tracker=nope",
                "/badge/gate/shared-absent.svg", "/badge/phase/build.svg", "/badge/gate/alpha-present.png"):
        resp = await badge_client.get(url)
        assert resp.status == 404, url
    resp = await badge_client.get("/badge/gate/alpha-present.svg")
    etag = resp.headers["ETag"]
    again = await badge_client.get("/badge/gate/alpha-present.svg", headers={"If-None-Match": etag})
    assert again.status == 304 and again.headers["ETag"] == etag and await again.read() == b""
