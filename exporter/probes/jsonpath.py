"""A small JSONPath subset that selects exactly one value: `$.a.b[0].c`, `a.b`, `$['odd key'][-1]`.

Supported: an optional leading `$`, `.name` members, `[N]` array indexes (negative counts from
the end) and `['name']` / `["name"]` members for keys with dots, spaces or brackets. A gate
compares one number, so anything that can select several values (`[*]`, `..`, filters, slices)
is rejected when the config is loaded rather than summed or averaged behind the user's back.
"""

from __future__ import annotations

import functools
import re
from typing import Any

Step = str | int

_NAME = re.compile(r"[^.\[\]'\"\s]+")
_INDEX = re.compile(r"\[\s*(-?\d+)\s*\]")
_QUOTED = re.compile(r"""\[\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")\s*\]""")
_ESCAPE = re.compile(r"\\(.)")


@functools.lru_cache(maxsize=1024)
def parse(path: str) -> tuple[Step, ...]:
    """Parse a path into member names and indexes; raise ValueError saying what is wrong."""
    text = path.strip()
    if not text:
        raise ValueError("invalid json_path '' (want e.g. $.a.b[0])")
    pos = 0
    if text.startswith("$"):
        pos = 1
    elif not text.startswith("["):
        text = "." + text  # `a.b` is accepted as `$.a.b`
    steps: list[Step] = []
    while pos < len(text):
        if text.startswith("..", pos) or text.startswith("[*]", pos) or text.startswith(".*", pos):
            raise ValueError(f"invalid json_path {path!r}: wildcards and '..' are not supported "
                             "(a json_path must select exactly one value)")
        if text[pos] == ".":
            m = _NAME.match(text, pos + 1)
            if not m:
                raise ValueError(f"invalid json_path {path!r}: expected a member name at offset {pos + 1}")
            steps.append(m[0])
            pos = m.end()
            continue
        if text[pos] == "[":
            if m := _INDEX.match(text, pos):
                steps.append(int(m[1]))
            elif m := _QUOTED.match(text, pos):
                raw = m[1] if m[1] is not None else m[2]
                steps.append(_ESCAPE.sub(r"\1", raw))
            else:
                raise ValueError(f"invalid json_path {path!r}: only [N] and ['name'] are supported "
                                 "(a json_path must select exactly one value)")
            pos = m.end()
            continue
        raise ValueError(f"invalid json_path {path!r}: unexpected {text[pos]!r} at offset {pos}")
    return tuple(steps)


def check(path: str) -> None:
    """Config check: raise ValueError if `path` is not in the supported subset."""
    parse(path)


def select(document: Any, path: str) -> Any:
    """The value at `path`; raise KeyError naming the first step that is missing."""
    node = document
    walked = "$"
    for step in parse(path):
        if isinstance(step, int):
            if not isinstance(node, list) or not -len(node) <= step < len(node):
                raise KeyError(f"{walked}[{step}]")
            node = node[step]
            walked += f"[{step}]"
        else:
            if not isinstance(node, dict) or step not in node:
                raise KeyError(f"{walked}.{step}")
            node = node[step]
            walked += f".{step}"
    return node


def number(document: Any, path: str) -> float:
    """The value at `path` as a float (booleans 1/0, numeric strings parsed); ValueError otherwise.

    A missing path raises KeyError (see `select`); a value that is not a number raises ValueError.
    """
    value = select(document, path)
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        # Many APIs (Prometheus' own among them) send numbers as strings.
        try:
            return float(value.strip())
        except ValueError:
            pass
    if value is None:
        shown = "null"
    elif isinstance(value, dict):
        shown = "an object"
    elif isinstance(value, list):
        shown = "an array"
    else:
        shown = repr(value)
    raise ValueError(f"{path} is {shown}, not a number")
