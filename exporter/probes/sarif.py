"""`sarif` gates: static analysis and security scan results (SARIF 2.1.0: Bandit, Semgrep, Trivy, CodeQL).

value counts the results at or above `level` (error > warning > note), summed over every run of
the log; the gate passes by default when it is 0. A result's level is, as SARIF 2.1.0 §3.27.10
says: its own `level`; else `none` if its `kind` is anything but `fail` (pass, review, ...);
else its rule's `defaultConfiguration.level`; else `warning`.

Left out: suppressed results (§3.27.23: a non-empty `suppressions` whose every entry is accepted;
one under review or rejected does not suppress) and results whose `baselineState` is `absent`
(they were in the baseline and are gone). A run whose `results` is missing or null (the tool did
not produce any) or whose invocation says it did not succeed is an error: no measurement.
`parse_report(spec, data, name)` (KIND.parse_report) judges a pushed log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, BinaryIO

from exporter.config.fields import opt
from exporter.probes import offload
from exporter.probes.base import Measurement, ProbeContext, ProbeError, ProbeKind
from exporter.probes.files import MAX_REPORT
from exporter.probes.reading import read_limited
from exporter.probes.sources import ReportSource, measure, parse_bytes

LEVELS = ("error", "warning", "note")
_RANK = {"none": 0, "note": 1, "warning": 2, "error": 3}
_PLURAL = {"error": "errors", "warning": "warnings", "note": "notes"}


@dataclass(frozen=True, slots=True)
class SARIFSpec(ReportSource):
    """Options of a `sarif` gate."""

    level: str = opt("warning", doc="Count results at or above this level: error | warning | note.", enum=LEVELS)


async def probe(spec: SARIFSpec, ctx: ProbeContext) -> Measurement:
    """Count the log's unsuppressed results at or above `level`; any fails the gate."""
    return await measure(spec, ctx, parse)


def parse(spec: SARIFSpec, stream: BinaryIO, name: str) -> Measurement:
    """Judge one SARIF log read from a stream."""
    # A large log is decoded in a worker process (probes/offload.py), a small one right here.
    counts = offload.run(count_stream, stream, name)
    value = sum(n for level, n in counts.items() if _RANK[level] >= _RANK[spec.level])
    values = {"value": float(value), "errors": float(counts["error"]), "warnings": float(counts["warning"]),
              "notes": float(counts["note"])}
    if value:
        detail = ", ".join(f"{counts[lv]} {_PLURAL[lv] if counts[lv] != 1 else lv}" for lv in LEVELS)
        noun = "result" if value == 1 else "results"
        return Measurement(values, ok=False, message=f"{value} {noun} at or above {spec.level} ({detail})")
    return Measurement(values)


def count_stream(stream: BinaryIO, name: str) -> dict[str, int]:
    """Unsuppressed results per level in a SARIF log read from a stream."""
    return count(read_limited(stream, MAX_REPORT, name), name)


def count(data: bytes, name: str) -> dict[str, int]:
    """Unsuppressed results per level (error, warning, note) over every run of a SARIF log."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise ProbeError(f"{name}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or "runs" not in doc:
        raise ProbeError(f"{name}: not a SARIF log (no runs)")
    if doc.get("version") != "2.1.0":
        raise ProbeError(f"{name}: SARIF version {doc.get('version')!r}, only 2.1.0 is read")
    runs = doc["runs"]
    if not isinstance(runs, list):
        raise ProbeError(f"{name}: runs is not an array")
    counts = dict.fromkeys(LEVELS, 0)
    for i, run in enumerate(runs):
        where = f"{name}: runs[{i}]"
        if not isinstance(run, dict):
            raise ProbeError(f"{where} is not an object")
        for inv in _list(run.get("invocations"), f"{where}.invocations"):
            if isinstance(inv, dict) and inv.get("executionSuccessful") is False:
                raise ProbeError(f"{where}: the tool reports that it did not run successfully")
        results = run.get("results")
        if results is None:
            raise ProbeError(f"{where} has no results (the tool produced none)")
        rules = _Rules(run, where)
        for j, result in enumerate(_list(results, f"{where}.results")):
            if not isinstance(result, dict):
                raise ProbeError(f"{where}.results[{j}] is not an object")
            if _suppressed(result, f"{where}.results[{j}]") or result.get("baselineState") == "absent":
                continue
            level = _level(result, rules, f"{where}.results[{j}]")
            if level != "none":
                counts[level] += 1
    return counts


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ProbeError(f"{where} is not an array")
    return value


def _suppressed(result: dict[str, Any], where: str) -> bool:
    entries = _list(result.get("suppressions"), f"{where}.suppressions")
    statuses = [e.get("status") if isinstance(e, dict) else "?" for e in entries]
    return bool(statuses) and all(s in (None, "accepted") for s in statuses)


class _Rules:
    """A run's rules (the driver's and its extensions'), found by index or by id."""

    def __init__(self, run: dict[str, Any], where: str) -> None:
        tool = run.get("tool") if isinstance(run.get("tool"), dict) else {}
        assert isinstance(tool, dict)
        self.components = [tool.get("driver"), *_list(tool.get("extensions"), f"{where}.tool.extensions")]
        self.by_id: dict[str, dict[str, Any]] = {}
        for comp in reversed(self.components):  # the driver's own rules win a clash of ids
            for rule in self._rules(comp):
                if isinstance(rule, dict) and isinstance(rule.get("id"), str):
                    self.by_id[rule["id"]] = rule

    @staticmethod
    def _rules(comp: Any) -> list[Any]:
        rules = comp.get("rules") if isinstance(comp, dict) else None
        return rules if isinstance(rules, list) else []

    def find(self, result: dict[str, Any]) -> dict[str, Any] | None:
        ref = result.get("rule") if isinstance(result.get("rule"), dict) else {}
        assert isinstance(ref, dict)
        comp_ref = ref.get("toolComponent")
        comp_index = comp_ref.get("index") if isinstance(comp_ref, dict) else None
        # toolComponent.index counts extensions from 0; the driver is components[0].
        comp = self.components[comp_index + 1] if isinstance(comp_index, int) and \
            0 <= comp_index + 1 < len(self.components) else self.components[0]
        index = ref.get("index", result.get("ruleIndex") if comp_ref is None else None)
        rules = self._rules(comp)
        if isinstance(index, int) and 0 <= index < len(rules) and isinstance(rules[index], dict):
            found: dict[str, Any] = rules[index]
            return found
        rule_id = ref.get("id", result.get("ruleId"))
        return self.by_id.get(rule_id) if isinstance(rule_id, str) else None


def _level(result: dict[str, Any], rules: _Rules, where: str) -> str:
    level = result.get("level")
    if level is None:
        kind = result.get("kind", "fail")
        if kind != "fail":
            return "none"
        rule = rules.find(result)
        config = rule.get("defaultConfiguration") if rule else None
        level = config.get("level", "warning") if isinstance(config, dict) else "warning"
    if level not in _RANK:
        raise ProbeError(f"{where}: unknown level {level!r} (none, note, warning, error)")
    return str(level)


KIND = ProbeKind("sarif", SARIFSpec, probe, ("value", "errors", "warnings", "notes"),
                 doc="A SARIF 2.1.0 scan has no unsuppressed results at or above a level.",
                 parse_report=parse_bytes(parse))
