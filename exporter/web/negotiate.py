"""Content negotiation: which coding (RFC 9110 Accept-Encoding, with q-values) and which format."""

from __future__ import annotations


def _qvalue(params: list[str]) -> float:
    """The q of one list member's parameters (1 when absent, 0 when malformed: fail to identity)."""
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return 0.0
            return q if 0.0 <= q <= 1.0 else 0.0
    return 1.0


def accepted_codings(header: str) -> dict[str, float]:
    """Accept-Encoding as {coding: q}, lower-cased; a coding named twice keeps its last q."""
    out: dict[str, float] = {}
    for member in header.split(","):
        coding, *params = member.split(";")
        coding = coding.strip().lower()
        if coding:
            out[coding] = _qvalue(params)
    return out


def accepts_gzip(header: str) -> bool:
    """Whether a response may be gzipped: `gzip` (or `x-gzip`, or `*` when gzip is not named) with q > 0."""
    codings = accepted_codings(header)
    for name in ("gzip", "x-gzip"):
        if name in codings:
            return codings[name] > 0
    return codings.get("*", 0.0) > 0


def wants_openmetrics(accept: str) -> bool:
    """Whether an Accept header asks for OpenMetrics with q > 0 (Prometheus sends it first when it can)."""
    for member in accept.split(","):
        media, *params = member.split(";")
        if media.strip().lower() == "application/openmetrics-text" and _qvalue(params) > 0:
            return True
    return False
