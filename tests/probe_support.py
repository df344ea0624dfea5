"""Helpers for the probe tests: a ProbeContext, running a probe like the scheduler, reading one gate."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

from exporter.config.model import Gate, parse_config
from exporter.probes import KINDS, Measurement, ProbeContext


def make_ctx(timeout: float = 10.0, **kw: Any) -> ProbeContext:
    """A context as the scheduler builds it, with no shared session (the probe makes its own)."""
    return ProbeContext(gate_id="g", timeout=timeout, **kw)


async def run_probe(kind: str, spec: Any, ctx: ProbeContext | None = None) -> Measurement:
    """Run a probe under its timeout exactly as the scheduler does (asyncio.wait_for)."""
    ctx = ctx or make_ctx()
    return await asyncio.wait_for(KINDS[kind].probe(spec, ctx), ctx.timeout)


def parse_gate(tmp_path: Path, gate_yaml: str, extra: str = "") -> Gate:
    """Parse a one-gate config written in tmp_path (relative paths resolve there); return the gate."""
    gate = textwrap.indent(textwrap.dedent(gate_yaml).strip(), " " * 10)
    head = f"tracker: t\n{textwrap.dedent(extra)}"
    text = f"{head}phases:\n  - id: p\n    steps:\n      - id: s\n        gates:\n{gate}\n"
    config = parse_config(text, str(tmp_path / "gates.yml"))
    (only,) = config.gates
    return only


def config_errors(tmp_path: Path, gate_yaml: str, extra: str = "") -> list[str]:
    """The `KEY: MESSAGE` parts of the errors a one-gate config produces (file and line dropped)."""
    from exporter.config.fields import ConfigError

    try:
        parse_gate(tmp_path, gate_yaml, extra)
    except ConfigError as exc:
        return [f"{i.key}: {i.message}" for i in exc.issues]
    return []
