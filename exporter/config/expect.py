"""The `expect` mini-language: `[MEASUREMENT] OP NUMBER[UNIT]`, every condition must hold."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
UNITS = {"%": 0.01, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

_RE = re.compile(
    r"^\s*(?:(?P<measurement>[a-z_][a-z0-9_]*)\s*)?"
    r"(?P<op><=|>=|==|!=|<|>)\s*"
    r"(?P<number>true|false|[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*"
    r"(?P<unit>%|ms|s|m|h|d)?\s*$",
    re.ASCII,  # \d and \s mean ASCII digits and spaces: "< ١" is not a number
)


@dataclass(frozen=True, slots=True)
class Condition:
    """One parsed condition, its number already in base units (seconds, ratio 0..1)."""

    measurement: str
    op: str
    threshold: float
    text: str
    unit: str = ""  # as written (`%`, `ms`, ...), for showing values the way the user wrote them

    def holds(self, value: float) -> bool:
        """Whether a measured value satisfies this condition."""
        return OPERATORS[self.op](value, self.threshold)

    def describe(self) -> str:
        """The condition in base units, for messages: `value >= 0.85`."""
        return f"{self.measurement} {self.op} {format_number(self.threshold)}"


def parse_condition(text: object) -> Condition:
    """Parse one condition; raise ValueError with a readable reason."""
    if not isinstance(text, str):
        raise ValueError(f"expect condition must be a string, got {type(text).__name__}")
    match = _RE.fullmatch(text)
    if not match:
        raise ValueError(
            f"invalid expect condition {text!r} (want [MEASUREMENT] OP NUMBER[UNIT], "
            "OP one of < <= > >= == !=, UNIT one of % ms s m h d)"
        )
    number = match["number"]
    if number in ("true", "false"):
        if match["unit"]:
            raise ValueError(f"invalid expect condition {text!r}: true/false take no unit")
        threshold = 1.0 if number == "true" else 0.0
    else:
        threshold = float(number) * UNITS.get(match["unit"] or "", 1.0)
    if not math.isfinite(threshold):
        raise ValueError(f"invalid expect condition {text!r}: number is not finite")
    return Condition(match["measurement"] or "value", match["op"], threshold, text.strip(), match["unit"] or "")


def format_number(value: float) -> str:
    """A compact, exact-enough rendering of a float for messages (NaN and infinities included)."""
    if not math.isfinite(value):
        return "NaN" if math.isnan(value) else "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"
