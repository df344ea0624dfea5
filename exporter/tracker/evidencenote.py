"""The evidence after a gate's status in the rendered document: stable, so a second render changes nothing.

Only what changes with the evidence itself is written: a push's commit, branch and run link, an
attestation's author, date and expiry. A probe's evaluation time changes every run and is left to
the gate page, which a short link names when the exporter's URL is known (`render --from URL`).
"""

from __future__ import annotations

import datetime
import re
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from exporter.report.periodfmt import md
from exporter.tracker.fetch import STATUS_PATH

_HTTP = re.compile(r"https?://[^\s<>()\[\]\"']+")


def page_base(url: str | None) -> str:
    """The exporter's base URL from a `--from` URL (which may name the status document itself)."""
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return ""
    path = parts.path.rstrip("/")
    path = path.removesuffix(STATUS_PATH)
    host = parts.netloc.rsplit("@", 1)[-1]  # never a password in the document
    return f"{parts.scheme}://{host}{path}"


def _day(value: object) -> str:
    """`2026-11-20` from the API's RFC 3339 time."""
    text = str(value or "")
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).strftime("%Y-%m-%d")
    except ValueError:
        return ""


def evidence_note(entry: dict[str, Any], tracker: str, base: str) -> str:
    """` · evidence: push abc123 on main [run](...)` and ` · [details](...)`; empty when nothing applies."""
    if str(entry.get("status") or "pending") == "pending":
        return ""
    ev = entry.get("evidence") if isinstance(entry.get("evidence"), dict) else None
    out = ""
    if ev and ev.get("kind") == "push":
        words = "push" + (f" {md(str(ev['commit'])[:12])}" if ev.get("commit") else "")
        words += f" on {md(ev['branch'])}" if ev.get("branch") else ""
        run = str(ev.get("run_url") or "")
        out = f" · evidence: {words}" + (f" [run](<{run}>)" if _HTTP.fullmatch(run) else "")
    elif ev and ev.get("kind") == "attestation":
        out = f" · evidence: attested by {md(ev.get('by') or 'anonymous')}"
        out += f" on {_day(ev.get('at'))}" if _day(ev.get("at")) else ""
        out += f", expires {_day(ev.get('expires_at'))}" if _day(ev.get("expires_at")) else ""
    if base and entry.get("id"):
        link = f"{base}/gates/{quote(str(entry['id']), safe='')}?{urlencode({'tracker': tracker})}"
        out += f" · [details](<{link}>)"
    return out.replace(" — ", " - ")
