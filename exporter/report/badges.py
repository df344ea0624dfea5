"""README badges as SVG (the flat shields.io look), from a status document. Pure functions."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape

from exporter.config import units

COLORS = {
    "brightgreen": "#4c1", "green": "#97ca00", "yellowgreen": "#a4a61d", "yellow": "#dfb317",
    "orange": "#fe7d37", "red": "#e05d44", "blue": "#007ec6", "lightgrey": "#9f9f9f", "grey": "#555",
}
# Advance widths of Verdana at 11px (the badge font), from its 2048-unit em; others default to 7.
_WIDTHS = {
    " ": 3.87, "!": 4.33, '"': 5.05, "#": 9.0, "$": 7.0, "%": 11.84, "&": 8.0, "'": 2.95, "(": 4.99, ")": 4.99,
    "*": 7.0, "+": 9.0, ",": 4.0, "-": 4.99, ".": 4.0, "/": 4.99, ":": 4.99, ";": 4.99, "<": 9.0, "=": 9.0,
    ">": 9.0, "?": 6.0, "@": 11.0, "[": 4.99, "\\": 4.99, "]": 4.99, "^": 9.0, "_": 7.0, "`": 7.0, "{": 6.98,
    "|": 4.99, "}": 6.98, "~": 9.0,
    "A": 7.52, "B": 7.54, "C": 7.68, "D": 8.48, "E": 6.96, "F": 6.32, "G": 8.53, "H": 8.27, "I": 4.62, "J": 5.0,
    "K": 7.62, "L": 6.12, "M": 9.27, "N": 8.23, "O": 8.66, "P": 6.63, "Q": 8.66, "R": 7.65, "S": 7.52, "T": 6.78,
    "U": 8.05, "V": 7.52, "W": 10.88, "X": 7.54, "Y": 6.77, "Z": 7.54,
    "a": 6.61, "b": 6.85, "c": 5.73, "d": 6.85, "e": 6.55, "f": 3.87, "g": 6.85, "h": 6.96, "i": 3.02, "j": 3.79,
    "k": 6.51, "l": 3.02, "m": 10.7, "n": 6.96, "o": 6.68, "p": 6.85, "q": 6.85, "r": 4.69, "s": 5.73, "t": 4.33,
    "u": 6.96, "v": 6.51, "w": 8.98, "x": 6.51, "y": 6.51, "z": 5.78,
    **{d: 7.0 for d in "0123456789"},
}
_HEX = re.compile(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
# Characters XML 1.0 cannot carry: dropped from badges and from JUnit reports.
XML_BAD = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
MAX_TEXT = 64  # a badge is a glance, not a paragraph
CONTENT_TYPE = "image/svg+xml; charset=utf-8"
# Live status: caches (GitHub's image proxy included) must revalidate on every view.
CACHE_CONTROL = "no-cache, max-age=0, must-revalidate"


def text_width(text: str) -> float:
    """Estimated rendered width of `text` in Verdana 11px."""
    return sum(_WIDTHS.get(ch, 11.0 if ord(ch) >= 0x1100 else 7.0) for ch in text)


def resolve_color(color: str) -> str:
    """A named colour or hex code -> `#rrggbb`-style fill; ValueError for anything else."""
    if color in COLORS:
        return COLORS[color]
    m = _HEX.match(color)
    if not m:
        raise ValueError(f"invalid badge colour {color!r} (a name such as {', '.join(COLORS)} or a hex code)")
    return "#" + m[1].lower()


def badge_svg(label: str, message: str, color: str) -> str:
    """A flat badge: grey label on the left, message on `color` on the right."""
    fill = resolve_color(color)
    label, message = _text(label), _text(message)
    lw = math.ceil(text_width(label) + 10) if label else 0
    mw = math.ceil(text_width(message) + 10)
    width = lw + mw
    title = f"{label}: {message}" if label else message
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" '
        f'aria-label="{escape(title, {chr(34): "&quot;"})}">',
        f"<title>{escape(title)}</title>",
        '<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/>'
        '<stop offset="1" stop-opacity=".1"/></linearGradient>',
        f'<clipPath id="r"><rect width="{width}" height="20" rx="3" fill="#fff"/></clipPath>',
        f'<g clip-path="url(#r)"><rect width="{lw}" height="20" fill="#555"/>'
        f'<rect x="{lw}" width="{mw}" height="20" fill="{fill}"/>'
        f'<rect width="{width}" height="20" fill="url(#s)"/></g>',
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" '
        'text-rendering="geometricPrecision" font-size="11">',
    ]
    for text, x in ((label, lw / 2), (message, lw + mw / 2)):
        if text:
            parts.append(f'<text x="{x:g}" y="15" fill="#010101" fill-opacity=".3">{escape(text)}</text>'
                         f'<text x="{x:g}" y="14">{escape(text)}</text>')
    parts.append("</g></svg>")
    return "".join(parts) + "\n"


def _text(text: str) -> str:
    out = re.sub(r"\s+", " ", XML_BAD.sub("", str(text))).strip()
    return out if len(out) <= MAX_TEXT else out[: MAX_TEXT - 1] + "…"


def completion_color(ratio: float | None) -> str:
    """Colour for a completion ratio: green only at 100%, red below 25%, grey when unknown."""
    if ratio is None or not isinstance(ratio, (int, float)) or math.isnan(ratio):
        return "lightgrey"
    for floor, color in ((1.0, "brightgreen"), (0.9, "green"), (0.75, "yellowgreen"), (0.5, "yellow"),
                         (0.25, "orange")):
        if ratio >= floor:
            return color
    return "red"


def status_color(status: str) -> str:
    """Colour for a gate status (pass/fail/error/pending) or a phase/step word (complete/...)."""
    return {"pass": "brightgreen", "complete": "brightgreen", "fail": "red", "error": "orange",
            "in_progress": "yellow", "pending": "lightgrey", "not_started": "lightgrey"}.get(status, "lightgrey")


def percent(ratio: float, decimals: int = 1) -> str:
    """A completion ratio as a percentage (badges, reports, trackers, the status page): see units.percent."""
    return units.percent(ratio, decimals)


# --- badges of a status document (the HTTP routes call these; None means 404) -----------------


def tracker_badge(status: Mapping[str, Any], label: str = "quality gates") -> str:
    """Overall completion of the tracker."""
    ratio = float(status.get("overall_completion") or 0.0)
    gates = status.get("gates") or []
    if not gates:
        return badge_svg(label, "no gates", "lightgrey")
    return badge_svg(label, percent(ratio), completion_color(ratio))


def phase_badge(status: Mapping[str, Any], phase_id: str) -> str | None:
    """One phase's completion, labelled with its title; None for an unknown phase."""
    phase = next((p for p in status.get("phase_status") or [] if p.get("id") == phase_id), None)
    if phase is None:
        return None
    ratio = float(phase.get("completion") or 0.0)
    return badge_svg(str(phase.get("title") or phase_id), percent(ratio), completion_color(ratio))


def gate_badge(status: Mapping[str, Any], gate_id: str) -> str | None:
    """One gate's status (pass, fail, error, pending); None for an unknown gate."""
    gate = next((g for g in status.get("gates") or [] if g.get("id") == gate_id), None)
    if gate is None:
        return None
    word = str(gate.get("status") or "pending")
    return badge_svg(str(gate.get("title") or gate_id), word, status_color(word))
