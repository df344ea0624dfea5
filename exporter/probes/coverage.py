"""`coverage` gates: line or branch coverage (a ratio 0..1) read from a coverage report.

Formats: Cobertura XML (coverage.py `xml`, gcovr, Istanbul `cobertura`), JaCoCo XML, LCOV
(`lcov.info`) and coverage.py JSON (`coverage json`). `auto` tells them apart by content.
Counts are preferred over precomputed rates (Cobertura `lines-covered`/`lines-valid`, LCOV
`LH`/`LF`, ...). A report that counts no lines (or no branches, for `metric: branch`, as a
coverage.py run without `--branch` does) is an error, not 0%: nothing was measured.
"""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from exporter.config.fields import FilePath, opt
from exporter.probes.base import Measurement, ProbeContext, ProbeError, ProbeKind
from exporter.probes.files import display_path, parse_xml, read_bytes

FORMATS = ("auto", "cobertura", "lcov", "jacoco", "coverage.py")
METRICS = ("line", "branch")


@dataclass(frozen=True)
class CoverageSpec:
    """Options of a `coverage` gate."""

    path: FilePath = opt(required=True, doc="The coverage report.")
    format: str = opt("auto", doc="auto | cobertura | lcov | jacoco | coverage.py", enum=FORMATS)
    metric: str = opt("line", doc="line | branch", enum=METRICS)


async def probe(spec: CoverageSpec, ctx: ProbeContext) -> Measurement:
    """Read the report; its coverage ratio is the value."""
    shown = display_path(spec.path, ctx.base_dir)
    return Measurement({"value": await asyncio.to_thread(read_coverage, spec.path, spec.format, spec.metric, shown)})


def read_coverage(path: str, fmt: str = "auto", metric: str = "line", shown: str | None = None) -> float:
    """The line or branch coverage ratio of a report; ProbeError if it cannot be read."""
    name = shown or path
    data = read_bytes(path, name)
    if fmt == "auto":
        fmt = _sniff(data, name)
    if fmt == "coverage.py":
        covered, total = _coverage_py(data, name, metric)
    elif fmt == "lcov":
        covered, total = _lcov(data, name, metric)
    else:
        root = parse_xml(data, name)
        if fmt == "xml":
            fmt = _XML_ROOTS.get(root.tag, "")
            if not fmt:
                raise ProbeError(f"{name}: XML, but neither Cobertura (<coverage>) nor JaCoCo (<report>)")
        if fmt == "cobertura":
            return _cobertura(root, name, metric)
        covered, total = _jacoco(root, name, metric)
    return _ratio(covered, total, name, metric)


_XML_ROOTS = {"coverage": "cobertura", "report": "jacoco"}


def _sniff(data: bytes, name: str) -> str:
    """coverage.py (JSON), lcov, or xml (told apart later by the root element)."""
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"{"):
        return "coverage.py"
    if head.startswith(b"<"):
        return "xml"
    if any(line.split(b":", 1)[0] in (b"TN", b"SF", b"LF", b"DA") for line in head.splitlines()[:20]):
        return "lcov"
    raise ProbeError(f"{name}: not a coverage report this exporter knows (Cobertura, JaCoCo, LCOV, coverage.py JSON)")


def _ratio(covered: float, total: float, name: str, metric: str) -> float:
    if total <= 0:
        raise ProbeError(f"{name}: the report counts no {'branches' if metric == 'branch' else 'lines'}")
    return min(1.0, max(0.0, covered / total))


def _cobertura(root: ET.Element, name: str, metric: str) -> float:
    if root.tag != "coverage":
        raise ProbeError(f"{name}: not a Cobertura report (root is <{root.tag}>)")
    prefix = "branches" if metric == "branch" else "lines"
    covered, valid = root.get(f"{prefix}-covered"), root.get(f"{prefix}-valid")
    if covered is not None and valid is not None:
        return _ratio(_num(covered, name), _num(valid, name), name, metric)
    rate = root.get("branch-rate" if metric == "branch" else "line-rate")
    if rate is None:
        raise ProbeError(f"{name}: Cobertura report without {prefix} counts or rate")
    return min(1.0, max(0.0, _num(rate, name)))


def _jacoco(root: ET.Element, name: str, metric: str) -> tuple[float, float]:
    if root.tag != "report":
        raise ProbeError(f"{name}: not a JaCoCo report (root is <{root.tag}>)")
    want = "BRANCH" if metric == "branch" else "LINE"
    # The report's own counters are its direct children; deeper ones belong to packages.
    for counter in root.findall("counter"):
        if counter.get("type") == want:
            missed, covered = _num(counter.get("missed"), name), _num(counter.get("covered"), name)
            return covered, covered + missed
    return 0.0, 0.0


def _lcov(data: bytes, name: str, metric: str) -> tuple[float, float]:
    """Sum LCOV records; a record without LF/LH (or BRF/BRH) is counted from its DA (BRDA) lines."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    total_key, hit_key = ("BRF", "BRH") if metric == "branch" else ("LF", "LH")
    covered = total = 0.0
    record: dict[str, float] = {}
    counted_hit = counted_total = 0
    saw_record = False
    for raw in text.splitlines():
        line = raw.strip()
        if line == "end_of_record":
            saw_record = True
            if total_key in record:
                total += record[total_key]
                covered += record.get(hit_key, 0.0)
            else:
                total += counted_total
                covered += counted_hit
            record, counted_hit, counted_total = {}, 0, 0
            continue
        key, _, rest = line.partition(":")
        if key in (total_key, hit_key):
            record[key] = _num(rest, name)
        elif metric == "line" and key == "DA":
            parts = rest.split(",")
            counted_total += 1
            counted_hit += len(parts) > 1 and parts[1].strip() not in ("0", "-")
        elif metric == "branch" and key == "BRDA":
            parts = rest.split(",")
            counted_total += 1
            counted_hit += len(parts) > 3 and parts[3].strip() not in ("0", "-")
    if not saw_record:
        raise ProbeError(f"{name}: not an LCOV report (no end_of_record)")
    return covered, total


def _coverage_py(data: bytes, name: str, metric: str) -> tuple[float, float]:
    try:
        doc: Any = json.loads(data)
    except ValueError:
        raise ProbeError(f"{name}: not valid JSON") from None
    totals = doc.get("totals") if isinstance(doc, dict) else None
    if not isinstance(totals, dict):
        raise ProbeError(f"{name}: not a coverage.py JSON report (no totals)")
    keys = ("covered_branches", "num_branches") if metric == "branch" else ("covered_lines", "num_statements")
    if any(k not in totals for k in keys):
        if metric == "branch":
            return 0.0, 0.0  # coverage.py without --branch: no branch data
        raise ProbeError(f"{name}: coverage.py totals without {keys[1]}")
    return _num(totals[keys[0]], name), _num(totals[keys[1]], name)


def _num(text: Any, name: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        raise ProbeError(f"{name}: {text!r} is not a number") from None


KIND = ProbeKind("coverage", CoverageSpec, probe, ("value",), needs_expect=True,
                 doc="Line or branch coverage from a Cobertura, JaCoCo, LCOV or coverage.py report.")
