"""`qualitygate check --from URL`: gates whose evidence lives in a running exporter are judged there.

`manual` gates (attestations), `uptime` gates (history) and push-sourced report gates (pushes)
have no evidence on a CI runner: without --from they fail for want of a state file. With it,
their outcome is the exporter's (GET /api/progress/status?tracker=NAME), and every other gate is
still probed locally. The exporter must judge them by the same `expect` as the local config: a
gate it judges otherwise (or does not have) is an error, never a pass.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from exporter.config.model import Config, Gate
from exporter.engine.evaluate import takes_evidence
from exporter.model import ERROR, OUTCOMES, Result

REMOTE_KINDS = ("manual", "uptime")
TIMEOUT = 10.0


def judged_remotely(gate: Gate) -> bool:
    """Whether `check --from` takes this gate's outcome from the exporter."""
    return gate.kind in REMOTE_KINDS or takes_evidence(gate)


def remote_results(config: Config, base_url: str, timeout: float = TIMEOUT) -> dict[str, Result]:
    """The exporter's outcome of every gate judged remotely; raises FetchError when it cannot be read."""
    from exporter.tracker.fetch import fetch_status

    wanted = [g for g in config.gates if judged_remotely(g)]
    if not wanted:
        return {}
    doc = fetch_status(base_url, tracker=config.tracker, timeout=timeout)
    entries = {str(e.get("id")): e for e in doc.get("gates") or [] if isinstance(e, Mapping)}
    shown = base_url.rstrip("/")
    return {g.id: result_of(g, entries.get(g.id), shown) for g in wanted}


def result_of(gate: Gate, entry: Mapping[str, Any] | None, shown: str) -> Result:
    """One gate's Result from the exporter's entry (fail closed: anything unexpected is an error)."""
    now = time.time()
    if entry is None:
        return Result(gate.id, ERROR, now, 0.0, message=f"the exporter at {shown} has no gate {gate.id!r}")
    theirs = entry.get("expect")
    if isinstance(theirs, list) and theirs != gate.expect_text:
        return Result(gate.id, ERROR, now, 0.0, message=f"the exporter at {shown} judges it by {theirs!r}, "
                                                        f"this config by {gate.expect_text!r}: reload it")
    status = entry.get("status")
    if status not in OUTCOMES:
        return Result(gate.id, ERROR, now, 0.0, message=f"not evaluated yet by the exporter at {shown}")
    values = {k: float(v) for k, v in (entry.get("measurements") or {}).items()
              if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if not values and isinstance(entry.get("value"), (int, float)):
        values["value"] = float(entry["value"])
    message = str(entry.get("message") or "")
    message = f"{message} (from {shown})" if message else f"from {shown}"
    return Result(gate.id, str(status), now, 0.0, values, message, awaiting=entry.get("awaiting_evidence") is True)
