"""Completion over time as an inline SVG: pure string building, no browser, no JavaScript.

The chart draws with `currentColor` only; each line's class (`qg-s1` ...) lets the page's stylesheet
set its `color` from a theme variable (`--qg-chart-1` ...), so it follows the light and the dark
theme, and without a stylesheet every line takes the text colour. No style attribute is written:
the status page's Content-Security-Policy (style-src 'self') would drop it; lines differ by dash pattern as well as by
colour, so they stay apart in print and for readers who do not see colour. Every text is escaped.
The SVG carries <title> and <desc>; `table_rows` gives the same numbers for a table beside it.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from html import escape

from exporter.report.history import Series

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 12, 28  # margins for the axis labels
MAX_LINES = 7  # the tracker and the first six phases; the table lists them all
_DASHES = ("", "6 3", "2 3", "8 3 2 3", "1 2", "10 4", "4 2 1 2")


def _day(ts: int) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d")


def _pct(v: float | None) -> str:
    return "no data" if v is None else f"{round(100 * v)}%"


def _x(i: int, n: int) -> float:
    return LEFT + (WIDTH - LEFT - RIGHT) * (i / (n - 1) if n > 1 else 0.5)


def _y(v: float) -> float:
    return TOP + (HEIGHT - TOP - BOTTOM) * (1 - max(0.0, min(1.0, v)))


def _path(values: Sequence[float | None]) -> str:
    """Line segments through the days that have a point; a day without one breaks the line."""
    out: list[str] = []
    pen_down = False
    for i, v in enumerate(values):
        if v is None:
            pen_down = False
            continue
        out.append(f"{'L' if pen_down else 'M'}{_x(i, len(values)):.1f},{_y(v):.1f}")
        pen_down = True
    return " ".join(out)


def completion_svg(series: Sequence[Series], title: str, chart_id: str = "completion-chart") -> str:
    """The chart of the series (the first is drawn heaviest: the whole tracker)."""
    if not series or not series[0].days:
        return ""
    days = series[0].days
    n = len(days)
    shown = list(series[:MAX_LINES])
    last = {s.key: next((v for v in reversed(s.values) if v is not None), None) for s in shown}
    desc = (f"Daily completion from {_day(days[0])} to {_day(days[-1])}. "
            + "; ".join(f"{s.label}: {_pct(last[s.key])} on the last day with data, {_pct(s.now)} now"
                        for s in shown) + ".")
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="qg-chart" id="{escape(chart_id)}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{chart_id}-t {chart_id}-d">',
             f'<title id="{chart_id}-t">{escape(title)}</title>',
             f'<desc id="{chart_id}-d">{escape(desc)}</desc>',
             '<g class="axis" fill="currentColor" stroke="currentColor" font-size="11" font-family="inherit">']
    for tick in (0.0, 0.5, 1.0):
        y = _y(tick)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke-opacity="0.25" '
                     'stroke-width="1"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" stroke="none">'
                     f'{round(tick * 100)}%</text>')
    for i in (0, n // 2, n - 1) if n > 2 else range(n):
        anchor = "start" if i == 0 else "end" if i == n - 1 else "middle"
        parts.append(f'<text x="{_x(i, n):.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}" stroke="none">'
                     f'{escape(_day(days[i]))}</text>')
    parts.append("</g>")
    for k, s in enumerate(shown):
        dash = f' stroke-dasharray="{_DASHES[k % len(_DASHES)]}"' if _DASHES[k % len(_DASHES)] else ""
        width = 2.5 if k == 0 else 1.5
        parts.append(f'<g class="series qg-s{k + 1}" data-series="{escape(s.key or "tracker")}">')
        parts.append(f'<title>{escape(s.label)}</title>')
        path = _path(s.values)
        if path:
            parts.append(f'<path d="{path}" fill="none" stroke="currentColor" stroke-width="{width}"{dash}/>')
        for i, v in enumerate(s.values):
            if v is not None:
                parts.append(f'<circle cx="{_x(i, n):.1f}" cy="{_y(v):.1f}" r="{2.5 if k == 0 else 2}" '
                             f'fill="currentColor" data-day="{_day(days[i])}" data-value="{v:.4f}">'
                             f'<title>{escape(s.label)}, {_day(days[i])}: {_pct(v)}</title></circle>')
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def legend(series: Sequence[Series]) -> list[dict[str, str]]:
    """The drawn lines, for a legend beside the chart: label, the line's class and its dash pattern."""
    return [{"key": s.key or "tracker", "label": s.label, "cls": f"qg-s{k + 1}", "dash": _DASHES[k % len(_DASHES)]}
            for k, s in enumerate(series[:MAX_LINES])]


def table_rows(series: Sequence[Series]) -> tuple[list[str], list[list[str]]]:
    """The chart's numbers as a table: one column per day (the last seven), one row per series, and now."""
    if not series or not series[0].days:
        return [], []
    days = series[0].days[-7:]
    header = [_day(d) for d in days] + ["now"]
    body = [[s.label, *(_pct(v) for v in s.values[-7:]), _pct(s.now)] for s in series]
    return header, body
