"""`coverage` gates: line or branch coverage (a ratio 0..1) read from a coverage report.

Formats: Cobertura XML (coverage.py `xml`, gcovr, Istanbul `cobertura`), JaCoCo XML, LCOV
(`lcov.info`) and coverage.py JSON (`coverage json`). `auto` tells them apart by content.
Counts are preferred over precomputed rates (Cobertura `lines-covered`/`lines-valid`, LCOV
`LH`/`LF`, ...). A report that counts no lines (or no branches, for `metric: branch`, as a
coverage.py run without `--branch` does) is an error, not 0%: nothing was measured.

XML and LCOV reports are read as a stream (files.scan_xml, line by line): memory does not grow
with the report's size. `parse_report(spec, data, name)` (KIND.parse_report) judges a pushed report.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from exporter.config.fields import opt
from exporter.probes import offload
from exporter.probes.base import Measurement, ProbeContext, ProbeError, ProbeKind
from exporter.probes.files import MAX_REPORT, peek, scan_xml
from exporter.probes.reading import open_regular, read_limited
from exporter.probes.sources import ReportSource, measure, parse_bytes

FORMATS = ("auto", "cobertura", "lcov", "jacoco", "coverage.py")
METRICS = ("line", "branch")


@dataclass(frozen=True, slots=True)
class CoverageSpec(ReportSource):
    """Options of a `coverage` gate."""

    format: str = opt("auto", doc="auto | cobertura | lcov | jacoco | coverage.py", enum=FORMATS)
    metric: str = opt("line", doc="line | branch", enum=METRICS)


async def probe(spec: CoverageSpec, ctx: ProbeContext) -> Measurement:
    """Read the report; its coverage ratio is the value."""
    return await measure(spec, ctx, parse)


def parse(spec: CoverageSpec, stream: BinaryIO, name: str) -> Measurement:
    """The coverage ratio of one report read from a stream."""
    # A large report is parsed in a worker process (probes/offload.py), a small one right here.
    return Measurement({"value": offload.run(coverage_of, stream, spec.format, spec.metric, name)})


def read_coverage(path: str, fmt: str = "auto", metric: str = "line", shown: str | None = None) -> float:
    """The line or branch coverage ratio of a report file; ProbeError if it cannot be read."""
    name = shown or path
    with open_regular(path, name) as fh:
        return coverage_of(fh, fmt, metric, name)


def coverage_of(stream: BinaryIO, fmt: str, metric: str, name: str) -> float:
    """The line or branch coverage ratio of a report; ProbeError if it is not one."""
    head, stream = peek(stream)
    if fmt == "auto":
        fmt = _sniff(head, name)
    if fmt == "coverage.py":
        covered, total = _coverage_py(read_limited(stream, MAX_REPORT, name), name, metric)
    elif fmt == "lcov":
        covered, total = _lcov(stream, name, metric)
    else:
        found = _XmlCounts(name, metric, fmt)
        scan_xml(stream, name, found.start)
        if found.rate is not None:
            return found.rate
        covered, total = found.covered, found.total
    return _ratio(covered, total, name, metric)


_XML_ROOTS = {"coverage": "cobertura", "report": "jacoco"}


def _sniff(head: bytes, name: str) -> str:
    """coverage.py (JSON), lcov, or xml (told apart later by the root element)."""
    head = head.lstrip(b"\xef\xbb\xbf \t\r\n")
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


class _XmlCounts:
    """What a Cobertura or JaCoCo report says, picked up element by element as it is scanned."""

    def __init__(self, name: str, metric: str, fmt: str) -> None:
        self.name, self.metric, self.fmt = name, metric, fmt
        self.rate: float | None = None
        self.covered = self.total = 0.0
        self._want = "BRANCH" if metric == "branch" else "LINE"

    def start(self, tag: str, attrs: dict[str, str], depth: int) -> None:
        if depth == 1:
            self._root(tag, attrs)
        # JaCoCo: the report's own counters are its direct children; deeper ones belong to packages.
        elif depth == 2 and self.fmt == "jacoco" and tag == "counter" and attrs.get("type") == self._want:
            missed, covered = _num(attrs.get("missed"), self.name), _num(attrs.get("covered"), self.name)
            self.covered, self.total = covered, covered + missed

    def _root(self, tag: str, attrs: dict[str, str]) -> None:
        name, metric = self.name, self.metric
        if self.fmt == "xml":
            self.fmt = _XML_ROOTS.get(tag, "")
            if not self.fmt:
                raise ProbeError(f"{name}: XML, but neither Cobertura (<coverage>) nor JaCoCo (<report>)")
        if self.fmt == "jacoco":
            if tag != "report":
                raise ProbeError(f"{name}: not a JaCoCo report (root is <{tag}>)")
            return
        if tag != "coverage":
            raise ProbeError(f"{name}: not a Cobertura report (root is <{tag}>)")
        prefix = "branches" if metric == "branch" else "lines"
        covered, valid = attrs.get(f"{prefix}-covered"), attrs.get(f"{prefix}-valid")
        if covered is not None and valid is not None:
            self.rate = _ratio(_num(covered, name), _num(valid, name), name, metric)
            return
        rate = attrs.get("branch-rate" if metric == "branch" else "line-rate")
        if rate is None:
            raise ProbeError(f"{name}: Cobertura report without {prefix} counts or rate")
        self.rate = min(1.0, max(0.0, _num(rate, name)))


def _lcov(stream: BinaryIO, name: str, metric: str) -> tuple[float, float]:
    """Sum LCOV records; a record without LF/LH (or BRF/BRH) is counted from its DA (BRDA) lines."""
    total_key, hit_key = ("BRF", "BRH") if metric == "branch" else ("LF", "LH")
    covered = total = 0.0
    record: dict[str, float] = {}
    counted_hit = counted_total = 0
    saw_record = False
    size = 0
    for raw in _lines(stream, name):
        size += len(raw)
        if size > MAX_REPORT:
            raise ProbeError(f"{name}: larger than {MAX_REPORT // (1024 * 1024)} MiB")
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


def _lines(stream: BinaryIO, name: str) -> Iterator[str]:
    """Decoded lines (UTF-8, else Latin-1 for that line); a line is at most 1 MiB."""
    while raw := stream.readline(1024 * 1024):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            yield raw.decode("latin-1")


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
                 doc="Line or branch coverage from a Cobertura, JaCoCo, LCOV or coverage.py report.",
                 parse_report=parse_bytes(parse))
