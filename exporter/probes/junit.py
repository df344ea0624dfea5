"""`junit` gates: JUnit XML reports (a glob; several files summed); passes when nothing failed.

Counting: every <testcase> counts once, as an error if it holds <error>, else a failure if it
holds <failure>, else skipped if it holds <skipped>, else passed. Counting test cases rather
than trusting <testsuite> attributes keeps nested suites (and tools that disagree about them)
right. A file without any <testcase> falls back to its top-level suites' tests/failures/errors/
skipped attributes.

value is the pass rate of the tests that ran: passed / (tests - skipped). A report in which no
test ran (none, or all skipped) is an error: there is no pass rate to judge.
"""

from __future__ import annotations

import asyncio
import glob
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from exporter.config.fields import FilePath, opt
from exporter.probes.base import Measurement, ProbeContext, ProbeError, ProbeKind
from exporter.probes.files import display_path, parse_xml, read_bytes

MAX_FILES = 10_000


@dataclass(frozen=True)
class JUnitSpec:
    """Options of a `junit` gate."""

    path: FilePath = opt(required=True, doc="A JUnit XML file or glob (`**` recurses), e.g. reports/*.xml.")


@dataclass
class Counts:
    """Test counts of one or more reports."""

    tests: int = 0
    failures: int = 0
    errors: int = 0
    skipped: int = 0

    def add(self, other: Counts) -> None:
        """Add another report's counts to these."""
        self.tests += other.tests
        self.failures += other.failures
        self.errors += other.errors
        self.skipped += other.skipped


async def probe(spec: JUnitSpec, ctx: ProbeContext) -> Measurement:
    """Sum every matching report; failures or errors fail the gate."""
    shown = display_path(spec.path, ctx.base_dir)
    counts, files = await asyncio.to_thread(read_reports, spec.path, shown, ctx.base_dir)
    ran = counts.tests - counts.skipped
    if ran <= 0:
        raise ProbeError(f"{shown}: no test ran "
                         f"({counts.tests} tests, {counts.skipped} skipped in {files} files)")
    passed = ran - counts.failures - counts.errors
    values = {"tests": float(counts.tests), "failures": float(counts.failures), "errors": float(counts.errors),
              "skipped": float(counts.skipped), "value": max(0.0, passed / ran)}
    if counts.failures or counts.errors:
        message = (f"{_plural(counts.failures, 'failure')}, {_plural(counts.errors, 'error')} "
                   f"in {_plural(counts.tests, 'test')}")
        return Measurement(values, ok=False, message=message)
    return Measurement(values)


def read_reports(pattern: str, shown: str, base_dir: str | None = None) -> tuple[Counts, int]:
    """Counts summed over every file matching the glob, and the number of files."""
    if any(c in pattern for c in "*?["):
        files = sorted(p for p in glob.iglob(pattern, recursive=True) if os.path.isfile(p))
    else:
        files = [pattern]  # a plain path: a missing file says "no such file"
    if not files:
        raise ProbeError(f"{shown}: no files match")
    if len(files) > MAX_FILES:
        raise ProbeError(f"{shown}: {len(files)} files match, more than {MAX_FILES}")
    total = Counts()
    for path in files:
        name = display_path(path, base_dir)
        total.add(count(parse_xml(read_bytes(path, name), name), name))
    return total, len(files)


def count(root: ET.Element, name: str) -> Counts:
    """The counts of one parsed report."""
    if root.tag not in ("testsuites", "testsuite"):
        raise ProbeError(f"{name}: not a JUnit report (root is <{root.tag}>)")
    cases = list(root.iter("testcase"))
    if not cases:
        suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
        if root.tag == "testsuites" and not suites:
            suites = [root]
        out = Counts()
        for s in suites:
            out.add(Counts(*(_int(s.get(k), name) for k in ("tests", "failures", "errors", "skipped"))))
        return out
    out = Counts(tests=len(cases))
    for case in cases:
        if case.find("error") is not None:
            out.errors += 1
        elif case.find("failure") is not None:
            out.failures += 1
        elif case.find("skipped") is not None:
            out.skipped += 1
    return out


def _int(text: str | None, name: str) -> int:
    if text is None:
        return 0
    try:
        return int(float(text))
    except ValueError:
        raise ProbeError(f"{name}: {text!r} is not a count") from None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


KIND = ProbeKind("junit", JUnitSpec, probe, ("value", "tests", "failures", "errors", "skipped"),
                 doc="JUnit XML test reports show no failures or errors.")
