"""Prometheus duration syntax: 500ms, 15s, 5m, 1h30m, 30d, 1w, 1y."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
# Units must appear largest first, each at most once, exactly as Prometheus' model.ParseDuration.
# [0-9], not \d: \d would also take other scripts' digits ("١s"), which int() then reads.
_RE = re.compile(r"(?:([0-9]+)y)?(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?(?:([0-9]+)ms)?",
                 re.ASCII)
_ORDER = ("y", "w", "d", "h", "m", "s", "ms")
MAX_SECONDS = 100 * _UNITS["y"]
"""The longest duration accepted (100y): beyond it, sleeps and timers overflow (docs/reference.md)."""
_MAX_DIGITS = 16  # more digits than any duration up to 100y needs; refused before int() and float() see them


def _show(text: str) -> str:
    """The text for a message, shortened: a 400-digit duration need not be printed whole."""
    return repr(text) if len(text) <= 40 else repr(text[:37] + "...")


def parse_duration(text: str) -> float:
    """Parse a Prometheus duration into seconds; raise ValueError on anything else."""
    if not isinstance(text, str):
        raise ValueError(f"invalid duration {text!r}")
    if text in ("", "0"):
        if text == "0":
            return 0.0
        raise ValueError("invalid duration ''")
    match = _RE.fullmatch(text.strip(" \t"))
    if not match or not any(match.groups()):
        raise ValueError(f"invalid duration {_show(text)} (use Prometheus syntax such as 500ms, 15s, 5m, 1h30m, 30d)")
    groups = match.groups()
    if any(len(g) > _MAX_DIGITS for g in groups if g):
        raise ValueError(f"duration {_show(text)} is too long (at most 100y)")
    seconds = sum(int(g) * _UNITS[u] for g, u in zip(groups, _ORDER, strict=True) if g)
    if seconds > MAX_SECONDS:
        raise ValueError(f"duration {_show(text)} is too long (at most 100y)")
    return seconds


def format_duration(seconds: float) -> str:
    """Render seconds back in Prometheus syntax (the shortest exact form)."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    parts = []
    for unit in ("w", "d", "h", "m", "s"):
        size = int(_UNITS[unit] * 1000)
        if ms >= size:
            parts.append(f"{ms // size}{unit}")
            ms %= size
    if ms:
        parts.append(f"{ms}ms")
    return "".join(parts)
