"""The completion chart's SVG, built from a State filled at chosen times: valid XML, one point a day, escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from exporter.model import FAIL, PASS, Result
from exporter.report.chart import completion_svg, legend, table_rows
from exporter.report.history import DAY, completion_series
from exporter.state.memory import State

SVG = "{http://www.w3.org/2000/svg}"
NOW = 1_800_000_000.0 // DAY * DAY + 15 * 3600  # 15:00 UTC of some day


def filled() -> State:
    """Two gates over 10 days, hourly: a passes throughout, b passes only from day -3 on; day -6 has nothing."""
    state = State()
    for h in range(10 * 24):
        t = NOW - 10 * DAY + h * 3600
        if NOW // DAY * DAY - 6 * DAY <= t < NOW // DAY * DAY - 5 * DAY:
            continue  # the exporter was down that day
        state.record(Result("a", PASS, t, 0.0, {}))
        state.record(Result("b", PASS if t >= NOW - 3 * DAY else FAIL, t, 0.0, {}))
    state.compact(32 * DAY, NOW)
    return state


def test_series_and_svg_from_a_state() -> None:
    state = filled()
    series = completion_series([("", "Team <&> tracker", ["a", "b"]), ("p1", 'Phase "one"', ["b"])],
                               state.gates, NOW)
    overall, phase = series
    assert len(overall.days) == 30 and overall.days[-1] == NOW // DAY * DAY
    assert overall.values[:19] == (None,) * 19  # before the first evaluation: no point, not 0%
    assert overall.values[-7] is None  # the day the exporter was down
    assert overall.values[-1] == 1.0 and phase.values[-1] == 1.0 and overall.now == 1.0
    assert phase.values[-8] == 0.0 and overall.values[-8] == 0.5
    assert 0.0 < phase.values[-4] < 1.0  # day -3: b failed until 15:00 and passed after

    svg = completion_svg(series, "Completion of <Team & co>")
    root = ET.fromstring(svg)  # well-formed XML, or this raises
    assert root.tag == f"{SVG}svg" and root.get("role") == "img"
    assert root.find(f"{SVG}title").text == "Completion of <Team & co>"
    assert "Team <&> tracker: 100% on the last day with data, 100% now" in root.find(f"{SVG}desc").text
    groups = [g for g in root.findall(f"{SVG}g") if g.get("data-series")]
    assert [g.get("data-series") for g in groups] == ["tracker", "p1"]
    points = groups[0].findall(f"{SVG}circle")
    assert len(points) == sum(v is not None for v in overall.values) == 10
    assert [float(p.get("data-value")) for p in points] == [v for v in overall.values if v is not None]
    # The day without data breaks the line into two pieces.
    assert groups[0].find(f"{SVG}path").get("d").count("M") == 2
    # Themes: every stroke and fill is currentColor (the series' colour comes from a CSS variable).
    assert all(e.get("stroke") in (None, "none", "currentColor") and e.get("fill") in (None, "none", "currentColor")
               for e in root.iter())
    assert [g.get("class") for g in groups] == ["series qg-s1", "series qg-s2"]
    assert not any(e.get("style") for e in root.iter())  # the page's CSP (style-src 'self') would drop it
    # Labels are escaped, never markup: a phase title with quotes stays one attribute.
    assert "<script" not in svg and 'Phase "one"' in groups[1].find(f"{SVG}title").text
    assert [p.find(f"{SVG}title").text for p in points][-1].endswith(": 100%")


def test_table_and_legend_say_the_same() -> None:
    series = completion_series([("", "T", ["a", "b"])], filled().gates, NOW)
    header, body = table_rows(series)
    assert header[-1] == "now" and len(header) == 8
    assert body[0][:3] == ["T", "no data", "50%"] and body[0][-3:] == ["100%", "100%", "100%"]
    assert legend(series) == [{"key": "tracker", "label": "T", "cls": "qg-s1", "dash": ""}]


def test_no_data_no_chart() -> None:
    assert completion_svg([], "x") == ""
    empty = completion_series([("", "T", ["a"])], {}, NOW)
    assert empty[0].values == (None,) * 30 and empty[0].now == 0.0
    root = ET.fromstring(completion_svg(empty, "T"))
    assert root.findall(f".//{SVG}circle") == [] and root.find(f".//{SVG}path") is None
