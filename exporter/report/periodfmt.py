"""A PeriodReport as markdown (for a chat or a pull request) or as HTML (for an email).

Both say the same things in the same order. Text from the config and from people (titles,
messages, notes, names) is escaped: markdown's own characters are backslashed, HTML goes through
Jinja2 with autoescaping on.
"""

from __future__ import annotations

import datetime
import re

import jinja2

from exporter.report.history import DAY, REGRESSED, Change
from exporter.report.period import Completion, Event, Expiring, PeriodReport

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")


def md(text: object) -> str:
    """Text safe inside a markdown table cell: one line, markdown's characters backslashed."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def stamp(ts: float) -> str:
    """`2024-05-03 14:05 UTC`."""
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def when(c: Change) -> str:
    """When a change happened: to the evaluation, or to the bucket that saw it."""
    if c.exact:
        return stamp(c.lo)
    lo = datetime.datetime.fromtimestamp(c.lo, datetime.UTC)
    if c.hi - c.lo >= DAY:
        return f"on {lo:%Y-%m-%d} (UTC day)"
    hi = datetime.datetime.fromtimestamp(c.hi, datetime.UTC)
    return f"between {lo:%Y-%m-%d %H:%M} and {hi:%H:%M} UTC"


def age(seconds: float) -> str:
    """A duration for people, at most two units: `3d 4h`, `25m`."""
    s = max(0, int(seconds))
    units = (("d", DAY), ("h", 3600), ("m", 60), ("s", 1))
    parts: list[str] = []
    for name, size in units:
        if s >= size or (not parts and size == 1):
            parts.append(f"{s // size}{name}")
            s %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


def pct(n: int, total: int) -> str:
    """`80% (8 of 10)`."""
    return f"{round(100 * n / total) if total else 0}% ({n} of {total})"


def delta(c: Completion) -> str:
    """The change in completion, in percentage points."""
    points = round(100 * c.now / c.total) - round(100 * c.then / c.total) if c.total else 0
    return f"{points:+d} pts" if points else "no change"


def change_words(e: Event) -> str:
    """`regressed to fail`, `recovered`, with a mixed bucket's count."""
    c = e.change
    words = c.kind if c.kind != REGRESSED or not c.outcome else f"regressed to {c.outcome}"
    return words + (f" ({c.failed} evaluations did not pass)" if c.failed else "")


def evidence_words(x: Expiring) -> str:
    """Whose evidence it is: `attested by alice: pentest #12`, `push abc1234 (main)`."""
    ev = x.evidence
    if ev.kind == "attestation":
        return f"attested by {ev.by or 'anonymous'}" + (f": {ev.note}" if ev.note else "")
    bits = [f"push {ev.commit[:12]}" if ev.commit else "push"]
    if ev.branch:
        bits.append(f"({ev.branch})")
    return " ".join(bits)


def expiry_words(x: Expiring, now: float) -> str:
    """`in 2d 3h (2024-05-05 10:00 UTC)` or `lapsed 1d ago (...)`."""
    t = x.expires_at
    return f"in {age(t - now)} ({stamp(t)})" if t > now else f"lapsed {age(now - t)} ago ({stamp(t)})"


def href(url: str | None) -> str:
    """A link target only for http(s) URLs: a pushed run_url is data from CI, never a javascript: link."""
    return url if url and re.fullmatch(r"https?://[^\s<>\"]+", url) else ""


def markdown(rep: PeriodReport) -> str:
    """The report as GitHub-flavoured markdown."""
    period = age(rep.since)
    out = [f"# {md(rep.title)}: the last {period}", "",
           f"From {stamp(rep.start)} to {stamp(rep.now)}, from the exporter's stored history.", "",
           "## Completion", "", f"| | {period} ago | now | change |", "|---|---|---|---|"]
    for c in rep.completion:
        label = f"**{md(c.label)}**" if not c.key else md(c.label)
        out.append(f"| {label} | {pct(c.then, c.total)} | {pct(c.now, c.total)} | {delta(c)} |")
    out += ["", f"## Changes ({len(rep.regressed)} regressed, {len(rep.recovered)} recovered)", ""]
    if rep.events:
        out += ["| when | gate | tier | change | now |", "|---|---|---|---|---|"]
        out += [f"| {when(e.change)} | {md(e.gate.title)} (`{md(e.gate.id)}`) | {e.gate.tier} | "
                f"{md(change_words(e))} | {e.status_now} |" for e in rep.events]
    else:
        out.append("No gate regressed or recovered.")
    out += ["", f"## Blockers ({len(rep.blockers)})", ""]
    if rep.blockers:
        out += ["| gate | tier | status | for | message |", "|---|---|---|---|---|"]
        out += [f"| {md(b.gate.title)} (`{md(b.gate.id)}`) | {b.gate.tier} | {b.status} | "
                f"{age(rep.now - b.since) if b.since is not None else 'unknown'} | {md(b.message)} |"
                for b in rep.blockers]
    else:
        out.append("No critical or important gate fails.")
    out += ["", f"## Evidence expiring within the next {period} ({len(rep.expiring)})", ""]
    if rep.expiring:
        out += ["| gate | evidence | expires |", "|---|---|---|"]
        out += [f"| {md(x.gate.title)} (`{md(x.gate.id)}`) | {md(evidence_words(x))}"
                + (f" [run](<{href(x.evidence.run_url)}>)" if href(x.evidence.run_url) else "")
                + f" | {expiry_words(x, rep.now)} |" for x in rep.expiring]
    else:
        out.append("No attestation or pushed report lapses.")
    if rep.unevaluated:
        out += ["", f"{rep.unevaluated} gates have no stored evaluation (not counted as passing)."]
    return "\n".join(out) + "\n"


_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ rep.title }}: the last {{ period }}</title>
<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:1rem auto;padding:0 1rem}
table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #8884;padding:.25rem .5rem;text-align:left}
.muted{opacity:.75}</style></head>
<body>
<h1>{{ rep.title }}: the last {{ period }}</h1>
<p class="muted">From {{ stamp(rep.start) }} to {{ stamp(rep.now) }}, from the exporter's stored history.</p>
<h2>Completion</h2>
<table><thead><tr><th scope="col"></th><th scope="col">{{ period }} ago</th><th scope="col">now</th>
<th scope="col">change</th></tr></thead><tbody>
{% for c in rep.completion %}<tr data-group="{{ c.key }}"><th scope="row">{{ c.label }}</th>
<td>{{ pct(c.then, c.total) }}</td><td>{{ pct(c.now, c.total) }}</td><td>{{ delta(c) }}</td></tr>
{% endfor %}</tbody></table>
<h2>Changes ({{ rep.regressed | length }} regressed, {{ rep.recovered | length }} recovered)</h2>
{% if rep.events %}<table><thead><tr><th scope="col">when</th><th scope="col">gate</th><th scope="col">tier</th>
<th scope="col">change</th><th scope="col">now</th></tr></thead><tbody>
{% for e in rep.events %}<tr data-gate="{{ e.gate.id }}" data-change="{{ e.change.kind }}"><td>{{ when(e.change) }}</td>
<td>{{ e.gate.title }} <code>{{ e.gate.id }}</code></td><td>{{ e.gate.tier }}</td><td>{{ change_words(e) }}</td>
<td>{{ e.status_now }}</td></tr>
{% endfor %}</tbody></table>{% else %}<p>No gate regressed or recovered.</p>{% endif %}
<h2>Blockers ({{ rep.blockers | length }})</h2>
{% if rep.blockers %}<table><thead><tr><th scope="col">gate</th><th scope="col">tier</th><th scope="col">status</th>
<th scope="col">for</th><th scope="col">message</th></tr></thead><tbody>
{% for b in rep.blockers %}<tr data-gate="{{ b.gate.id }}"><td>{{ b.gate.title }} <code>{{ b.gate.id }}</code></td>
<td>{{ b.gate.tier }}</td><td>{{ b.status }}</td>
<td>{{ age(rep.now - b.since) if b.since is not none else "unknown" }}</td><td>{{ b.message }}</td></tr>
{% endfor %}</tbody></table>{% else %}<p>No critical or important gate fails.</p>{% endif %}
<h2>Evidence expiring within the next {{ period }} ({{ rep.expiring | length }})</h2>
{% if rep.expiring %}<table><thead><tr><th scope="col">gate</th><th scope="col">evidence</th>
<th scope="col">expires</th></tr></thead><tbody>
{% for x in rep.expiring %}<tr data-gate="{{ x.gate.id }}"><td>{{ x.gate.title }} <code>{{ x.gate.id }}</code></td>
<td>{{ evidence_words(x) }}{% set link = href(x.evidence.run_url) %}{% if link %} <a href="{{ link }}">run</a>
{%- endif %}</td>
<td>{{ expiry_words(x, rep.now) }}</td></tr>
{% endfor %}</tbody></table>{% else %}<p>No attestation or pushed report lapses.</p>{% endif %}
{% if rep.unevaluated %}<p class="muted">{{ rep.unevaluated }} gates have no stored evaluation
(not counted as passing).</p>{% endif %}
</body></html>
"""

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
_TEMPLATE = _ENV.from_string(_HTML)


def html(rep: PeriodReport) -> str:
    """The report as one self-contained HTML page (inline style, no script: fit for an email)."""
    return _TEMPLATE.render(rep=rep, period=age(rep.since), stamp=stamp, when=when, pct=pct,
                            delta=delta, age=age, change_words=change_words, evidence_words=evidence_words,
                            expiry_words=expiry_words, href=href)
