"""CI reports of a status document: JUnit XML, a markdown table for PR comments, JSON.

Every function takes the `/api/progress/status` document (or `{"trackers": [doc, ...]}` when
`check` ran several trackers) and returns text; `write_reports` writes the files and appends
the markdown to `$GITHUB_STEP_SUMMARY` when that is set.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import logging
import os
import re
import socket
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from exporter.config import units
from exporter.report.badges import XML_BAD, percent

log = logging.getLogger("qualitygate.reports")

_ICON = {"pass": "✅", "fail": "❌", "error": "⚠️", "pending": "⏳"}
_ORDER = {"fail": 0, "error": 1, "pending": 2, "pass": 3}
_TIER_ORDER = {"critical": 0, "important": 1, "enhancement": 2}
# Past this many rows a PR comment nears GitHub's 65,536-character limit.
MAX_ROWS = 200


def trackers(status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The tracker documents inside a status document (one, or the `trackers` list)."""
    if "gates" not in status and isinstance(status.get("trackers"), list):
        return [t for t in status["trackers"] if isinstance(t, Mapping)]
    return [status]


# --- JUnit XML --------------------------------------------------------------------------------


def junit_xml(status: Mapping[str, Any]) -> str:
    """JUnit XML (Ant/Jenkins format): a testsuite per phase, a testcase per gate (classname phase.step)."""
    root = ET.Element("testsuites")
    host = _xml(socket.gethostname() or "localhost") or "localhost"
    suite_id = 0
    for doc in trackers(status):
        tracker = str(doc.get("tracker") or "tracker")
        stamp = _junit_time(doc.get("generated_at"))
        phases = [p.get("id", "") for p in doc.get("phase_status") or []]
        gates = list(doc.get("gates") or [])
        for g in gates:
            if g.get("phase") not in phases:
                phases.append(g.get("phase", ""))
        for phase in phases:
            members = [g for g in gates if g.get("phase") == phase]
            if not members:
                continue
            counts = {w: sum(g.get("status") == w for g in members) for w in ("fail", "error", "pending")}
            total_time = sum(_seconds(g) for g in members)
            suite = ET.SubElement(root, "testsuite", {
                "name": _xml(f"{tracker}.{phase}"), "package": _xml(tracker), "id": str(suite_id),
                "timestamp": stamp, "hostname": host, "tests": str(len(members)),
                "failures": str(counts["fail"]), "errors": str(counts["error"]), "skipped": str(counts["pending"]),
                "time": f"{total_time:.3f}",
            })
            suite_id += 1
            props = ET.SubElement(suite, "properties")
            for name, value in (("tracker", tracker), ("title", doc.get("title") or tracker), ("phase", phase)):
                ET.SubElement(props, "property", {"name": name, "value": _xml(str(value))})
            for g in members:
                case = ET.SubElement(suite, "testcase", {
                    "name": _xml(str(g.get("id", ""))),
                    "classname": _xml(f"{g.get('phase', '')}.{g.get('step', '')}"),
                    "time": f"{_seconds(g):.3f}",
                })
                word = g.get("status", "pending")
                if word in ("fail", "error"):
                    tag = "failure" if word == "fail" else "error"
                    el = ET.SubElement(case, tag, {"message": _xml(_one_line(_message(g), 500)), "type": word})
                    el.text = _xml(_details(g))
                elif word != "pass":
                    ET.SubElement(case, "skipped", {"message": "pending: not evaluated yet"})
            out = ET.SubElement(suite, "system-out")
            out.text = _xml("\n".join(f"{g.get('status', 'pending'):<7} {g.get('id', '')}: {g.get('title', '')}"
                                      for g in members) + "\n")
            ET.SubElement(suite, "system-err")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _junit_time(rfc3339: Any) -> str:
    """The Ant schema wants a local-less timestamp: YYYY-MM-DDTHH:MM:SS (we give UTC)."""
    try:
        t = datetime.datetime.fromisoformat(str(rfc3339).replace("Z", "+00:00"))
        if t.tzinfo is not None:
            t = t.astimezone(datetime.UTC)
    except ValueError:
        t = datetime.datetime.now(datetime.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S")


def _seconds(g: Mapping[str, Any]) -> float:
    try:
        return max(0.0, float(g.get("duration_seconds") or 0.0))
    except (TypeError, ValueError):
        return 0.0


def _message(g: Mapping[str, Any]) -> str:
    if g.get("message"):
        return str(g["message"])
    expect = " and ".join(str(e) for e in g.get("expect") or [])
    value = _value(g)
    if value and expect:
        return f"value {value}, expect {expect}"
    return str(g.get("status", ""))


def _details(g: Mapping[str, Any]) -> str:
    lines = [f"gate: {g.get('id', '')} ({g.get('title', '')})", f"tier: {g.get('tier', '')}",
             f"status: {g.get('status', '')}"]
    if g.get("value") is not None:
        lines.append(f"value: {_value(g)}")
    if g.get("expect"):
        lines.append("expect: " + " and ".join(str(e) for e in g["expect"]))
    for key in ("message", "last_evaluation", "last_pass"):
        if g.get(key):
            lines.append(f"{key.replace('_', ' ')}: {g[key]}")
    return "\n".join(lines) + "\n"


def _value(g: Mapping[str, Any]) -> str:
    """The gate's value in human units (the one formatter); the JSON report keeps it in base units."""
    return units.document_value(g)


def _xml(text: str) -> str:
    """Text XML 1.0 can carry (control characters dropped)."""
    return XML_BAD.sub("", text)


def _one_line(text: str, limit: int) -> str:
    out = re.sub(r"\s+", " ", text).strip()
    return out if len(out) <= limit else out[: limit - 1] + "…"


# --- markdown ---------------------------------------------------------------------------------


def markdown_table(status: Mapping[str, Any]) -> str:
    """A markdown summary for a pull-request comment: counts per tier, then every gate not passing."""
    return "\n".join(_markdown_one(doc) for doc in trackers(status))


def _markdown_one(doc: Mapping[str, Any]) -> str:
    gates = list(doc.get("gates") or [])
    passed = sum(g.get("status") == "pass" for g in gates)
    total = len(gates)
    ok = passed == total
    title = _cell(str(doc.get("title") or doc.get("tracker") or "tracker"))
    pct = percent(passed / total) if total else "n/a"
    out = [f"### {'✅' if ok else '❌'} Quality gates: {title}: {passed} of {total} passed ({pct})", ""]
    out += ["| Tier | ✅ Pass | ❌ Fail | ⚠️ Error | ⏳ Pending | Total |", "|---|---:|---:|---:|---:|---:|"]
    q = doc.get("quality_gates") or {}
    for tier in _TIER_ORDER:
        c = q.get(tier) or {}
        if c.get("total"):
            out.append(f"| {tier} | {c.get('passed', 0)} | {c.get('failed', 0)} | {c.get('error', 0)} | "
                       f"{c.get('pending', 0)} | {c.get('total', 0)} |")
    out.append("")
    rest = sorted((g for g in gates if g.get("status") != "pass"),
                  key=lambda g: (_ORDER.get(g.get("status", ""), 9), _TIER_ORDER.get(g.get("tier", ""), 9)))
    header = ["| | Gate | Tier | Phase / step | Value | Expect | Message |", "|---|---|---|---|---|---|---|"]
    if rest:
        out += header + [_row(g) for g in rest[:MAX_ROWS]]
        if len(rest) > MAX_ROWS:
            out.append(f"\n…and {len(rest) - MAX_ROWS} more gates not passing (see the JUnit or JSON report).")
        out.append("")
    ok_gates = [g for g in gates if g.get("status") == "pass"]
    if ok_gates:
        out += [f"<details><summary>{len(ok_gates)} passing gates</summary>", ""]
        out += header + [_row(g) for g in ok_gates[:MAX_ROWS]]
        out += ["", "</details>", ""]
    if doc.get("generated_at"):
        out += [f"<sub>qualitygate-exporter · {_cell(str(doc.get('tracker', '')))} · {doc['generated_at']}</sub>", ""]
    return "\n".join(out)


def _row(g: Mapping[str, Any]) -> str:
    status = g.get("status", "pending")
    gate = f"`{_code(str(g.get('id', '')))}` {_cell(str(g.get('title', '')))}"
    expect = ", ".join(_cell(str(e)) for e in g.get("expect") or [])
    where = f"{_cell(str(g.get('phase', '')))} / {_cell(str(g.get('step', '')))}"
    return (f"| {_ICON.get(status, '')} {status} | {gate} | {_cell(str(g.get('tier', '')))} | {where} | "
            f"{_cell(_value(g))} | {expect} | {_cell(_one_line(str(g.get('message') or ''), 200))} |")


def _cell(text: str) -> str:
    """Table-cell-safe markdown: one line, pipes escaped, HTML tags defused, no stray code spans."""
    text = re.sub(r"\s+", " ", text).strip().replace("|", "\\|").replace("`", "'")
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", text)


def _code(text: str) -> str:
    return text.replace("`", "'").replace("|", "\\|")


# --- files ------------------------------------------------------------------------------------


def json_report(status: Mapping[str, Any]) -> str:
    """The status document as JSON, the same shape as /api/progress/status."""
    return json.dumps(status, indent=2, ensure_ascii=False) + "\n"


class ReportWriteError(OSError):
    """A report file could not be written: `path` is the one asked for, `error` what the system said."""

    def __init__(self, path: str, error: OSError):
        super().__init__(error.errno, error.strerror, path)
        self.path = path
        self.error = error


def write_reports(status: Mapping[str, Any], junit_path: str | None = None, markdown_path: str | None = None,
                  json_path: str | None = None, *, environ: Mapping[str, str] | None = None) -> list[str]:
    """Write the requested reports (ReportWriteError naming the path if one cannot be written); append the
    markdown to $GITHUB_STEP_SUMMARY."""
    env = os.environ if environ is None else environ
    written = []
    markdown = None
    for path, render in ((junit_path, junit_xml), (markdown_path, markdown_table), (json_path, json_report)):
        if path:
            text = render(status)
            if render is markdown_table:
                markdown = text
            try:
                _write_atomic(path, text)
            except OSError as exc:
                raise ReportWriteError(path, exc) from exc
            written.append(path)
    summary = env.get("GITHUB_STEP_SUMMARY")
    if summary:
        try:
            with open(summary, "a", encoding="utf-8") as fh:
                fh.write((markdown if markdown is not None else markdown_table(status)) + "\n")
            written.append(summary)
        except OSError as exc:
            # The step summary is a convenience: the check's own exit code must not depend on it.
            log.warning("cannot append to GITHUB_STEP_SUMMARY path=%s error=%s", summary, exc.strerror or exc)
    return written


def _write_atomic(path: str, text: str) -> None:
    if os.path.isdir(path):
        # os.replace would give EBUSY for "/" and EISDIR elsewhere, after a temporary file was made
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".qualitygate-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
