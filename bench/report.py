"""Benchmark results: one row per figure, printed as a markdown table and written as JSON."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Row:
    """One measured figure, with its peer or baseline figure and the target it is held to."""

    id: str
    what: str
    ours: float | None
    unit: str
    peer: float | None = None
    peer_what: str = ""
    ratio: float | None = None  # how ours compares, in the direction the target states
    ratio_what: str = ""
    target: str = ""
    ok: bool | None = None  # None: informational, no target
    details: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def fmt_value(value: float | None, unit: str) -> str:
    """A figure with a sensible number of digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def table(rows: list[Row], machine: dict[str, Any]) -> str:
    """The markdown table of a run."""
    where = (f"{machine.get('cores')} cores {machine.get('cpu')}, Linux {machine.get('kernel')}, "
             f"Python {machine.get('python')}")
    out = ["| # | what | ours | peer / baseline | ratio | target | met | machine |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.error:
            out.append(f"| {r.id} | {r.what} | error: {r.error.splitlines()[0][:80]} | | | {r.target} | no | {where} |")
            continue
        peer = f"{fmt_value(r.peer, r.unit)} ({r.peer_what})" if r.peer is not None else (r.peer_what or "—")
        ratio = f"{r.ratio:.2f}x {r.ratio_what}".strip() if r.ratio is not None else "—"
        met = "—" if r.ok is None else ("yes" if r.ok else "**no**")
        ours = fmt_value(r.ours, r.unit)
        out.append(f"| {r.id} | {r.what} | {ours} | {peer} | {ratio} | {r.target or '—'} | {met} | {where} |")
    return "\n".join(out)


def write_json(rows: list[Row], machine: dict[str, Any], args: dict[str, Any], out_dir: Path) -> Path:
    """Write the run as JSON into out_dir (a timestamped file, and latest.json)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {"generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine, "args": args,
           "rows": [asdict(r) for r in rows]}
    text = json.dumps(doc, indent=2, default=str) + "\n"
    path = out_dir / f"bench-{time.strftime('%Y%m%d-%H%M%S')}{'-smoke' if args.get('smoke') else ''}.json"
    path.write_text(text)
    (out_dir / ("latest-smoke.json" if args.get("smoke") else "latest.json")).write_text(text)
    return path
