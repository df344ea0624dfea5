"""`promql` gates: an instant query against the Prometheus HTTP API must yield exactly one number.

A scalar or a one-sample instant vector is the value; an empty result, several samples, a range
vector, an unreachable Prometheus or an API error are errors (no measurement), never a fail:
the gate's claim was not checked. The query is sent with `timeout` set to the gate's timeout
so that Prometheus gives up on it when we do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from exporter.config.durations import format_duration
from exporter.config.fields import Url, opt
from exporter.probes.base import Measurement, ProbeContext, ProbeError, ProbeKind
from exporter.probes.http import new_session
from exporter.probes.net import describe_os_error


def _check_query(query: str) -> None:
    if not query.strip():
        raise ValueError("must not be empty")


@dataclass(frozen=True, slots=True)
class PromQLSpec:
    """Options of a `promql` gate."""

    query: str = opt(required=True, doc="A PromQL expression yielding a scalar or exactly one sample.",
                     check=_check_query)
    url: Url | None = opt(None, doc="Prometheus base URL (default: prometheus.url of the config).")


async def probe(spec: PromQLSpec, ctx: ProbeContext) -> Measurement:
    """Run the instant query and return its single number as the value."""
    base = spec.url or ctx.prometheus_url
    if not base:
        raise ProbeError("no Prometheus URL (set promql.url or prometheus.url)")
    endpoint = base.rstrip("/") + "/api/v1/query"
    params = {"query": spec.query, "timeout": format_duration(ctx.timeout)}
    owned = ctx.session is None
    session = new_session() if ctx.session is None else ctx.session(False)
    try:
        try:
            async with session.get(endpoint, params=params, timeout=aiohttp.ClientTimeout(total=ctx.timeout)) as resp:
                status = resp.status
                body = await resp.read()
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise ProbeError(f"Prometheus did not answer within {format_duration(ctx.timeout)}") from None
        except aiohttp.ClientConnectorError as exc:
            raise ProbeError(f"Prometheus unreachable: {describe_os_error(exc.os_error)}") from None
        except aiohttp.ClientError as exc:
            raise ProbeError(f"Prometheus unreachable: {str(exc) or type(exc).__name__}") from None
    finally:
        if owned:
            await session.close()
    return Measurement({"value": parse_response(status, body)})


def parse_response(status: int, body: bytes) -> float:
    """The single number in a /api/v1/query answer; ProbeError saying why there is none."""
    try:
        doc: Any = json.loads(body)
    except ValueError:
        raise ProbeError(f"Prometheus answered status {status} without a JSON body") from None
    if not isinstance(doc, dict):
        raise ProbeError(f"Prometheus answered status {status} with an unexpected body")
    if doc.get("status") != "success":
        kind = doc.get("errorType") or f"status {status}"
        raise ProbeError(f"Prometheus: {kind}: {str(doc.get('error') or 'query failed')[:300]}")
    data = doc.get("data") or {}
    result_type, result = data.get("resultType"), data.get("result")
    if result_type == "scalar":
        return _sample_value(result)
    if result_type == "vector":
        if not result:
            raise ProbeError("query returned no samples")
        if len(result) > 1:
            raise ProbeError(f"query returned {len(result)} samples, expected 1")
        return _sample_value(result[0].get("value") if isinstance(result[0], dict) else None)
    if result_type == "matrix":
        raise ProbeError("query returned a range vector, expected a scalar or one sample")
    raise ProbeError(f"query returned a {result_type or 'malformed'} result, expected a number")


def _sample_value(pair: Any) -> float:
    try:
        return float(pair[1])  # [timestamp, "value"]; Prometheus spells NaN and Inf as strings
    except (TypeError, ValueError, IndexError):
        raise ProbeError("Prometheus answered a malformed sample") from None


KIND = ProbeKind("promql", PromQLSpec, probe, ("value",), needs_expect=True,
                 doc="A PromQL query's single number meets the expectation.")
