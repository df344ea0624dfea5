"""What a tracker's words mean to the exporter: thresholds -> `expect`, check commands -> probes."""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from exporter.config.expect import format_number, parse_condition


@dataclass(frozen=True)
class Expectation:
    """A threshold read as expect conditions, with a note on how it was read."""

    conditions: tuple[str, ...]
    note: str = ""
    measurable: bool = False  # the claim has a number: a probe could measure it instead of a person


@dataclass(frozen=True)
class ProbeGuess:
    """A probe inferred from a command line: its config key and options."""

    kind: str  # http | command
    spec: dict[str, Any] = field(default_factory=dict)
    note: str = ""


_OP_WORDS = (
    (r"at least|no less than|minimum(?: of)?|min\.?", ">="),
    (r"at most|no more than|maximum(?: of)?|max\.?|up to", "<="),
    (r"above|more than|over|greater than", ">"),
    (r"below|under|less than|within", "<"),
)
_OPS = {">": ">", ">=": ">=", "=>": ">=", "≥": ">=", "<": "<", "<=": "<=", "=<": "<=", "≤": "<=",
        "=": "==", "==": "==", "!=": "!=", "≠": "!="}
# (unit in expect syntax, multiplier): the expect language knows % ms s m h d; weeks become days.
_UNITS = {
    "%": ("%", 1), "percent": ("%", 1),
    "ms": ("ms", 1), "msec": ("ms", 1), "millisecond": ("ms", 1), "milliseconds": ("ms", 1),
    "s": ("s", 1), "sec": ("s", 1), "secs": ("s", 1), "second": ("s", 1), "seconds": ("s", 1),
    "m": ("m", 1), "min": ("m", 1), "mins": ("m", 1), "minute": ("m", 1), "minutes": ("m", 1),
    "h": ("h", 1), "hr": ("h", 1), "hrs": ("h", 1), "hour": ("h", 1), "hours": ("h", 1),
    "d": ("d", 1), "day": ("d", 1), "days": ("d", 1),
    "w": ("d", 7), "wk": ("d", 7), "wks": ("d", 7), "week": ("d", 7), "weeks": ("d", 7),
}
_NUMERIC = re.compile(
    r"^(?P<op>>=|<=|=>|=<|==|!=|≥|≤|≠|>|<|=)?\s*"
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)\s*"
    r"(?P<scale>/\s*\d+(?:\.\d+)?)?\s*"
    r"(?P<unit>%|[A-Za-z]+\b)?\s*(?P<plus>\+)?(?P<rest>.*)$"
)
_ATTEST_WORDS = {"true", "yes", "pass", "passes", "passing", "passed", "done", "complete", "completed",
                 "achieved", "implemented", "operational", "working", "ready", "active", "clean",
                 "documented", "established", "successful", "green", "ok", "enabled", "deployed"}
_ZERO_WORDS = {"none", "zero", "nil"}
_FALSE_WORDS = {"false", "no"}


def _canonical(part: str) -> str:
    """`>99.9%` -> `> 99.9%`, `<= 3 s` -> `<= 3s`: the spelling the docs use."""
    spaced = re.sub(r"\s*(<=|>=|==|!=|<|>)\s*", r" \1 ", part).strip()
    return re.sub(r"(\d)\s+(%|ms|s|m|h|d)$", r"\1\2", spaced)


def expectation(threshold: str) -> Expectation:
    """Read a tracker threshold (`>99.9%`, `<10min parallel`, `203/203 passing`, `true`) as expect."""
    text = threshold.strip()
    if not text:
        return Expectation((), "no threshold: an attestation is the pass condition")
    parts = [p for p in re.split(r"\s*(?:,|;|\band\b)\s*", text) if p]
    try:
        conds = [parse_condition(p) for p in parts]
    except ValueError:
        conds = []
    if conds:
        return Expectation(tuple(_canonical(c.text) for c in conds), "", True)

    low = text.lower()
    for words, op in _OP_WORDS:
        m = re.match(rf"^(?:{words})\s+(.*)$", low)
        if m:
            text = f"{op} {text[len(text) - len(m[1]):]}"
            break
    m = _NUMERIC.match(text)
    if m:
        return _numeric(m, threshold.strip())
    first = re.split(r"[\s(,;:]+", low, maxsplit=1)[0]
    if first in _ZERO_WORDS:
        return Expectation(("== 0",), f"{threshold.strip()!r} read as a count of zero", True)
    if first in _FALSE_WORDS:
        return Expectation(("== false",), f"{threshold.strip()!r} read as false", True)
    if first in _ATTEST_WORDS:
        return Expectation((), f"{threshold.strip()!r}: an attestation is the pass condition")
    return Expectation((), f"{threshold.strip()!r} is not measurable: an attestation is the pass condition")


def _numeric(m: re.Match[str], original: str) -> Expectation:
    number = float(m["num"].replace(",", ""))
    word = (m["unit"] or "").lower()
    unit, factor = _UNITS.get(word, ("", 1))
    rest = (("" if word in _UNITS else (m["unit"] or "")) + (m["rest"] or "")).strip()
    op = _OPS.get(m["op"] or "", "")
    notes = []
    if m["scale"] and not op:
        # "203/203 passing": a pass ratio.
        denominator = float(m["scale"].lstrip("/ "))
        if denominator <= 0:
            return Expectation((), f"{original!r}: a ratio over zero is not measurable")
        pct = math.floor(number / denominator * 10000) / 100
        return Expectation((f">= {format_number(pct)}%",), f"{original!r} read as a pass ratio", True)
    if m["scale"]:
        notes.append(f"out of {m['scale'].lstrip('/ ')}")
    if m["plus"]:
        op = op or ">="
    if not op:
        if unit in ("ms", "s", "m", "h", "d"):
            op, why = "<=", "a bare duration read as a ceiling"
        elif number == 0 and unit != "%":
            op, why = "==", "a bare zero read as exactly zero"
        else:
            op, why = ">=", "a bare number read as a floor"
        notes.append(why)
    if rest:
        notes.append(f"ignored {rest!r}")
    value = format_number(number * factor)
    cond = f"{op} {value}{unit}"
    parse_condition(cond)  # every form built here is valid expect syntax; fail loudly if not
    note = f"{original!r} -> {cond!r}" + (f" ({'; '.join(notes)})" if notes else "")
    return Expectation((cond,), note, True)


# --- commands -> probes -----------------------------------------------------------------------

_CURL_FLAGS = set("fsSLkIvi")
_CURL_LONG = {"--fail", "--fail-with-body", "--silent", "--show-error", "--location", "--insecure", "--head",
              "--verbose", "--include", "--compressed", "--no-progress-meter", "-sS", "-fsS"}
_CURL_IGNORED_WITH_ARG = {"-o", "--output", "-w", "--write-out", "--connect-timeout", "-m", "--max-time",
                          "--retry", "--retry-delay", "--retry-max-time"}
_CURL_SECRETS = {"-u", "--user", "--oauth2-bearer", "-b", "--cookie", "-E", "--cert", "--key"}
_COMMAND_START = re.compile(r"^(?:curl|\./\S+|/\S+|python3?|pytest|bash|sh|make|npm|npx|go|cargo|tox|nox|"
                            r"promtool|node|uv|poetry)(?:\s|$)")


class NotInferable(ValueError):
    """A command the importer will not turn into a probe (the gate stays manual)."""


def looks_like_command(text: str) -> str | None:
    """The command in a gate's threshold (`backticked`, or starting like one), else None."""
    t = text.strip()
    m = re.fullmatch(r"`([^`]+)`", t)
    if m:
        return m[1].strip()
    return t if _COMMAND_START.match(t) else None


def probe_for(command: str) -> ProbeGuess:
    """`curl -f URL` -> http; any other command line -> command (argv, or shell when it needs one)."""
    command = command.strip().strip("`").strip()
    if not command:
        raise NotInferable("empty command")
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise NotInferable(f"cannot split the command line: {exc}") from None
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError as exc:
        raise NotInferable(f"cannot split the command line: {exc}") from None
    needs_shell = any(t and set(t) <= set("();<>|&") for t in tokens) or re.search(r"\$|`", command)
    if argv and argv[0] == "curl" and not needs_shell:
        guess = _curl(argv)
        if guess is not None:
            return guess
    if argv and argv[0] == "curl" and any(a.split("=")[0] in _CURL_SECRETS or "authorization:" in a.lower()
                                          for a in argv):
        raise NotInferable("the check carries credentials; configure an http gate with basic_auth "
                           "password_file or bearer_token_file by hand")
    if needs_shell:
        return ProbeGuess("command", {"shell": command}, "runs with /bin/sh -c (the command uses shell syntax)")
    return ProbeGuess("command", {"argv": argv}, "passes when it exits 0")


def _curl(argv: list[str]) -> ProbeGuess | None:
    """An http probe for a plain curl invocation; None when an option has no http-probe equivalent."""
    # curl follows no redirect without -L; the http probe follows them by default.
    spec: dict[str, Any] = {"follow_redirects": False}
    urls: list[str] = []
    headers: dict[str, str] = {}
    it = iter(argv[1:])
    for arg in it:
        if arg in _CURL_LONG:
            if arg == "--location":
                spec.pop("follow_redirects", None)
            elif arg == "--insecure":
                spec["tls"] = {"insecure_skip_verify": True}
            elif arg == "--head":
                spec["method"] = "HEAD"
        elif arg in ("-X", "--request"):
            spec["method"] = next(it, "GET").upper()
        elif arg in ("-H", "--header"):
            raw = next(it, "")
            name, _, value = raw.partition(":")
            if not name.strip() or name.strip().lower() in ("authorization", "cookie"):
                return None
            headers[name.strip()] = value.strip()
        elif arg in ("-A", "--user-agent"):
            headers["User-Agent"] = next(it, "")
        elif arg in _CURL_IGNORED_WITH_ARG:
            next(it, None)
        elif arg.startswith("--"):
            return None
        elif arg.startswith("-") and len(arg) > 1:
            if not set(arg[1:]) <= _CURL_FLAGS:
                return None
            if "L" in arg:
                spec.pop("follow_redirects", None)
            if "k" in arg:
                spec["tls"] = {"insecure_skip_verify": True}
            if "I" in arg:
                spec["method"] = "HEAD"
        elif re.match(r"^https?://", arg):
            urls.append(arg)
        else:
            return None
    if len(urls) != 1:
        return None
    if spec.get("method") == "GET":
        del spec["method"]
    if headers:
        spec["headers"] = headers
    note = "curl -f: passes on a 2xx answer" if any(a in ("-f", "--fail") or (a.startswith("-") and not
                                                    a.startswith("--") and "f" in a) for a in argv[1:]) \
        else "curl without -f would pass on any answer; the http probe wants a 2xx"
    return ProbeGuess("http", {"url": urls[0], **spec}, note)


# --- claims about a Prometheus the document names ---------------------------------------------

_SCRAPE = re.compile(r"\bscrape\s+success\b", re.I)


def prometheus_base(urls: Iterable[str]) -> str | None:
    """The one Prometheus a step's checks name (`curl -f http://host:9090/-/healthy`), else None."""
    bases = {f"{u.scheme}://{u.netloc}" for u in map(urlsplit, urls) if u.path in ("/-/healthy", "/-/ready")}
    return bases.pop() if len(bases) == 1 else None


def prometheus_claim(name: str, conditions: tuple[str, ...], base: str) -> ProbeGuess | None:
    """A claim that Prometheus itself measures, as a promql gate on the document's Prometheus."""
    if _SCRAPE.search(name) and conditions and all(c.endswith("%") and c[:1] == ">" for c in conditions):
        return ProbeGuess("promql", {"url": base, "query": "avg(up)"},
                          "avg(up): the share of the targets whose last scrape succeeded (up is 1 when it did), "
                          "on the Prometheus this step's own check names")
    return None


# --- certificates ----------------------------------------------------------------------------

_TLS = re.compile(r"\b(?:tls|ssl|certificates?|certs?)\b", re.I)
# An address the text states: https://host[:port] (443 is the scheme's) or host:port; never a bare name.
_TLS_URL = re.compile(r"\bhttps://(\[[0-9a-f:]+\]|[a-z0-9.-]+)(?::(\d{1,5}))?", re.I)
_HOST_PORT = re.compile(r"(?<![/\w.-])((?:[a-z0-9-]+\.)*[a-z0-9-]+|\[[0-9a-f:]+\]):(\d{1,5})\b", re.I)


def tls_claim(text: str, exp: Expectation) -> ProbeGuess | None:
    """A certificate claim with an address in its text, as a `tls` gate; None without one."""
    if not _TLS.search(text):
        return None
    if m := _TLS_URL.search(text):
        address = f"{m[1]}:{m[2] or 443}"
    elif m := _HOST_PORT.search(text):
        address = f"{m[1]}:{m[2]}"
    else:
        return None
    if exp.conditions and not all(re.search(r"\d(?:ms|s|m|h|d)$", c) for c in exp.conditions):
        return None  # the tls kind measures time to expiry: a count or a ratio is no claim about it
    return ProbeGuess("tls", {"address": address}, f"connects to {address}: the chain and host name verify "
                      "and no certificate has expired" + ("; value is the time to the earliest expiry"
                                                          if exp.conditions else ""))
