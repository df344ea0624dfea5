"""Prometheus duration syntax: 500ms, 15s, 5m, 1h30m, 30d, 1w, 1y."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
# Units must appear largest first, each at most once, exactly as Prometheus' model.ParseDuration.
_RE = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_ORDER = ("y", "w", "d", "h", "m", "s", "ms")


def parse_duration(text: str) -> float:
    """Parse a Prometheus duration into seconds; raise ValueError on anything else."""
    if not isinstance(text, str) or text in ("", "0"):
        if text == "0":
            return 0.0
        raise ValueError(f"invalid duration {text!r}")
    match = _RE.match(text.strip())
    if not match or not any(match.groups()):
        raise ValueError(f"invalid duration {text!r} (use Prometheus syntax such as 500ms, 15s, 5m, 1h30m, 30d)")
    return sum(int(g) * _UNITS[u] for g, u in zip(match.groups(), _ORDER, strict=True) if g)


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
