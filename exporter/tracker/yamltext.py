"""YAML text for `qualitygate import`: quoted scalars, flow values and comments, written by hand.

The importer writes its config as text (not yaml.dump) so that every gate keeps its comments.
"""

from __future__ import annotations

import json
import re
from typing import Any


def quote(text: str) -> str:
    """A double-quoted YAML scalar (JSON strings are YAML; escape what YAML would not accept raw).

    Every `$` is written `$$` (a literal `$` to the loader's ${VAR} expansion): text copied from a
    document must never expand, or a tracker line holding `${AWS_SECRET_ACCESS_KEY:-x}` would put
    the exporter's own secret on the gate page.
    """
    out = json.dumps(text.replace("$", "$$"), ensure_ascii=False)
    return "".join(c if printable(c) else (f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}")
                   for c in out)


def printable(c: str) -> bool:
    """Whether YAML accepts the character raw in a double-quoted scalar or a comment."""
    o = ord(c)
    return (0x20 <= o <= 0x7E or (0xA0 <= o <= 0xD7FF and o not in (0x2028, 0x2029))
            or (0xE000 <= o <= 0xFFFD and o != 0xFEFF) or o >= 0x10000)


def comment(text: str) -> str:
    """One comment line: whitespace folded, unprintable characters blanked."""
    return "# " + re.sub(r"\s+", " ", "".join(c if printable(c) else " " for c in text)).strip()


def flow(value: Any) -> str:
    """A YAML flow value: plain words bare, other strings quoted, lists and mappings in [] and {}."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        plain = re.fullmatch(r"[a-z][a-z0-9_-]*", value) and value not in ("true", "false", "null", "yes", "no",
                                                                             "on", "off", "y", "n")
        return value if plain else quote(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{flow(k)}: {flow(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))
