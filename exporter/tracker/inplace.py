"""`render --in-place` and `render --check`: the team's own tracker document, made honest in place.

Only what the document claims is rewritten: a gate's checkbox and the short status after it, the
status words, emoji and figures of phase and step headings, `**Status**:` and `**Completion**:`
lines, a phase's "All passed (...)" summary, the overall status lines and the "last updated"
line. Every other byte stays, line endings included. The same pass finds, for `--check`, every
claim the evidence does not bear out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from exporter.config import units
from exporter.config.model import Config, Gate
from exporter.report.status import progress_word
from exporter.tracker.claims import UPDATED, Document, Group, Site, read_document, steps_complete
from exporter.tracker.evidencenote import evidence_note
from exporter.tracker.parse import RENDERED_NOTE, clean, split_status
from exporter.tracker.render import _inline, fail_detail
from exporter.tracker.values import named_value, pct, sentences

EMOJI = {"complete": "✅", "in_progress": "🔄", "not_started": "⏳"}
WORDS = {"complete": "COMPLETED", "in_progress": "IN PROGRESS", "not_started": "NOT STARTED"}
# Words and emoji of each state as documents write them: a word of the right state is kept as written.
_CLASS_WORDS = {"complete": ("FULLY COMPLETED", "COMPLETED", "COMPLETE", "DONE"),
                "in_progress": ("IN PROGRESS", "IN_PROGRESS", "WIP"),
                "not_started": ("NOT STARTED", "NOT_STARTED", "TODO", "PLANNED", "PENDING")}
_CLASS_EMOJI = {"complete": ("✅", "🎉", "✔️", "☑️", "🟢", "✔"), "in_progress": ("🔄", "🚧", "🟡"),
                "not_started": ("⏳", "⬜", "🔴", "❌")}
_ALL_WORDS = [*sorted((w for ws in _CLASS_WORDS.values() for w in ws), key=len, reverse=True), "BLOCKED", "NO GATES"]
_WORD_RX = re.compile(r"\b(" + "|".join(re.escape(w) for w in _ALL_WORDS) + r")\b", re.I)
_EMOJI_RX = re.compile("|".join(re.escape(e) for e in sorted({e for es in _CLASS_EMOJI.values() for e in es},
                                                             key=len, reverse=True)) + "|⚠️")
_COUNT_RX = re.compile(r"\s*\(\d+ of \d+ gates pass\)")
_PCT_RX = re.compile(r"\d+(?:\.\d+)?%")
_BOX_RX = re.compile(r"^(\s*(?:[-*+]|\d+[.)])\s+\[)([ xX✓✔])(\])(.*?)(\s*)$")
_BULLET_RX = re.compile(r"^(\s*(?:[-*+]|\d+[.)])\s+)(.*?)(\s*)$")
_FIELD_VALUE = re.compile(r"^(.*?(?:\*\*|__)?[A-Za-z][A-Za-z ]*(?:\*\*|__)?\s*:\s*(?:\*\*|__)?)(?=\S)(.*?)(\s*)$")
_ALL_PASSED = re.compile(r"^(?:All passed|\d+ of \d+ passed)", re.I)
_ALL_STEPS = re.compile(r"\b(?:ALL|\d+ OF \d+)(?=\s)", re.I)


@dataclass
class Outcome:
    """What one pass over the document found and would write."""

    text: str
    changed: list[int] = field(default_factory=list)
    false_claims: list[tuple[int, str]] = field(default_factory=list)
    warnings: list[tuple[str, int, str]] = field(default_factory=list)  # (file, line, message)
    repaired: list[int] = field(default_factory=list)
    rewritten: dict[str, int] = field(default_factory=dict)  # claim kind -> lines changed


class _Facts:
    """The evidence: each gate's status entry, and the state of any group of gates."""

    def __init__(self, status: dict[str, Any]):
        self.gates = {g["id"]: g for g in status.get("gates") or [] if isinstance(g, dict) and "id" in g}
        self.generated_at = str(status.get("generated_at") or "")
        self.link_base = ""

    def status(self, gate_id: str) -> str:
        return str((self.gates.get(gate_id) or {}).get("status") or "pending")

    def group(self, group: Group) -> tuple[int, int, str]:
        passed = sum(self.status(g) == "pass" for g in group.gate_ids)
        return passed, len(group.gate_ids), progress_word(passed, len(group.gate_ids))


def rewrite(text: str, config: Config, status: dict[str, Any], name: str, link_base: str = "") -> Outcome:
    """Rewrite the document's claims from the status; NotImported if the config was not made from it.

    `link_base` (the exporter's URL) adds a link to each gate's page after its status."""
    doc, _model = read_document(text, config, name)
    facts = _Facts(status)
    facts.link_base = link_base
    out = Outcome("", repaired=doc.repaired)
    new = {ln.n: ln.text for ln in doc.lines}
    for site in doc.sites:
        if site.what == "updated":
            continue
        line = new[site.line]
        fixed, problem = _SITE[site.what](line, site, facts, config)
        if problem:
            out.false_claims.append((site.line, problem))
        if fixed != line:
            new[site.line] = fixed
            out.rewritten[site.what] = out.rewritten.get(site.what, 0) + 1
        if site.what == "box" and site.gate is None:
            out.warnings.append((name, site.line, f"checkbox {site.text!r} has no gate in {config.source}"
                                 + (": unticked, nothing verifies it" if fixed != line else ": never ticked")))
    for gate in doc.unmatched_gates:
        out.warnings.append((config.source, gate.line, f"gate {gate.id!r} has no line in {name} "
                             f"(its source {gate.source!r} matches no checkbox or check)"))
    for gate in config.gates:
        if not gate.source:
            out.warnings.append((config.source, gate.line, f"gate {gate.id!r} has no `source:`: no line of {name} "
                                 "shows it"))
    changed = [n for n in new if new[n] != _line_text(doc, n)]
    if changed and facts.generated_at:
        # "Last updated" moves only with a change, so that a run that finds nothing new writes nothing.
        when = facts.generated_at.replace("T", " ").replace("Z", " UTC")
        for site in (s for s in doc.sites if s.what == "updated"):
            fixed = UPDATED.sub(lambda m: f"{m[1]}{when}{m[3]}", new[site.line], count=1)
            if fixed != new[site.line]:
                new[site.line] = fixed
                out.rewritten["updated"] = 1
    out.changed = sorted(set(n for n in new if new[n] != _line_text(doc, n)) | set(doc.repaired))
    out.text = ("\ufeff" if doc.bom else "") + "".join(new[ln.n] + ln.end for ln in doc.lines)
    return out


def _line_text(doc: Document, n: int) -> str:
    return doc.lines[n - 1].text


# --- one function per kind of claim: (the line as it should read, why the line as written is false) ---


def _box(line: str, site: Site, facts: _Facts, config: Config) -> tuple[str, str]:
    gate = site.gate
    m = _BOX_RX.match(line)
    ticked = bool(m) and m[2] != " "  # type: ignore[index]
    if gate is None:
        if not m or not ticked:
            return line, ""
        return f"{m[1]} {m[3]}{m[4]}{m[5]}", f"'{site.text}' is ticked, but no gate of {config.source} measures it"
    entry = facts.gates.get(gate.id) or {}
    passed = facts.status(gate.id) == "pass"
    note = " — " + gate_note(entry, gate) + evidence_note(entry, config.tracker, facts.link_base)
    if m:
        body = _without_note(m[4])
        tick = (m[2] if ticked else "x") if passed else " "
        fixed = f"{m[1]}{tick}{m[3]}{body}{note}{m[5]}"
    else:  # a plain bullet under "Quality Gates": no box to tick, the status goes after it
        b = _BULLET_RX.match(line)
        fixed = f"{b[1]}{_without_note(b[2])}{note}{b[3]}" if b else line
    problem = ""
    if ticked and not passed:
        problem = f"'{site.text}' is ticked, but gate {gate.id} is {facts.status(gate.id)}: {gate_note(entry, gate)}"
    return fixed, problem


def _without_note(text: str) -> str:
    m = RENDERED_NOTE.search(text)
    return text[: m.start()] if m else text


def gate_note(entry: dict[str, Any], gate: Gate) -> str:
    """The short status after a gate's line: the value against the expectation, in the formatter's words."""
    status = str(entry.get("status") or "pending")
    msg = _inline(entry.get("message") or "", 120).replace(" — ", " - ")
    if status == "pass":
        said = "; ".join(sentences(entry, gate))
        if gate.kind == "manual":  # an attested value means something only against an expect
            return "✅ pass: attested" + (f", {said}" if said else "")
        said = said or named_value(entry, gate)
        return "✅ pass" + (f": {said}" if said else "")
    if status == "pending":
        return "⏳ not verified: not evaluated yet"
    if status == "error":
        return "⚠️ not verified: could not measure" + (f": {msg}" if msg else "")
    if gate.kind == "manual" and (entry.get("value") is None or "max_age" in msg):
        why = "attestation expired" if entry.get("value") is not None else "no attestation yet"
        return f"⏳ not verified: {why} (qualitygate attest {gate.id} --value V)"
    detail = fail_detail(entry, gate, msg)
    return "❌ fail" + (f": {detail}" if detail else "")


def _state_word(old: str, state: str) -> str:
    """The document's own word when it already says this state, else ours, in the document's case."""
    if old.upper() in _CLASS_WORDS[state]:
        return old
    word = WORDS[state]
    return word if old.isupper() or not old else word.title()


def _claimed_state(text: str, word: bool = True) -> str:
    """complete | in_progress | not_started | '' for what a line says of itself."""
    m = _claim_word(text) if word else None
    if m:
        return next((s for s, ws in _CLASS_WORDS.items() if m[1].upper() in ws), "")
    e = _EMOJI_RX.findall(text)
    return next((s for s, es in _CLASS_EMOJI.items() if e and e[-1] in es), "")


def _claim_word(text: str) -> re.Match[str] | None:
    """The status word a value claims: written in capitals, or the whole value ("Complete monitoring" is prose)."""
    words = [m for m in _WORD_RX.finditer(text) if m[1].isupper()]
    if words:
        return words[-1]
    m = _WORD_RX.search(text)
    return m if m and clean(_COUNT_RX.sub("", text)).strip(" .").upper() == m[1].upper() else None


def _restate(text: str, state: str, m: re.Match[str] | None, count: str = "") -> str:
    """Put `state` into a claim: its status word `m`, its status emoji, and the count after the word."""
    if m:
        end = m.end()
        while text[end:end + 2] in ("**", "__"):
            end += 2
        rest = text[end:]
        if count:
            rest = f" {count}{_COUNT_RX.sub('', rest, count=1) if _COUNT_RX.match(rest) else rest}"
        text = text[: m.start()] + _state_word(m[1], state) + text[m.end():end] + rest
    return _EMOJI_RX.sub(lambda e: e[0] if e[0] in _CLASS_EMOJI[state] else EMOJI[state], text)


def _word_pct(text: str) -> re.Match[str] | None:
    """The figure a status word carries: `100% COMPLETED` or `COMPLETED (85%)`, not any number in a title."""
    words = list(_WORD_RX.finditer(text))
    if not words:
        return None
    m = words[-1]
    before = re.search(r"(\d+(?:\.\d+)?%)[\s*_]*$", text[: m.start()])
    if before:
        return before
    return re.compile(r"(?:\*\*|__)*\s*\((\d+(?:\.\d+)?%)\)").match(text, m.end())


def _heading(line: str, site: Site, facts: _Facts, config: Config) -> tuple[str, str]:
    assert site.group is not None
    passed, total, state = facts.group(site.group)
    said = split_status(clean(line.lstrip("# ")))[1]
    claimed = next((s for s, ws in _CLASS_WORDS.items() if said in ws), "") if said else _claimed_state(line, False)
    if not claimed and not said:
        return line, ""
    words = list(_WORD_RX.finditer(line)) if said else []
    fixed = _restate(line, state, words[-1] if words else None)
    figure = _word_pct(fixed) if said else None
    problem = _state_problem(claimed, state, site.group, passed, total)
    if figure:
        problem = problem or _pct_problem(figure[1], passed, total, site.group)
        fixed = fixed[: figure.start(1)] + pct(passed / total if total else 0.0) + fixed[figure.end(1):]
    return fixed, problem


def _status(line: str, site: Site, facts: _Facts, config: Config) -> tuple[str, str]:
    assert site.group is not None
    passed, total, state = facts.group(site.group)
    m = _FIELD_VALUE.match(line)
    if not m:
        return line, ""
    count = f"({passed} of {total} gates pass)"
    value = m[2]
    claimed = _claimed_state(value)
    # Prose ("All core systems operational") claims what no gate can check: it gives way to what the gates say.
    word = _claim_word(value)
    value = _restate(value, state, word, count) if word else f"{WORDS[state]} {count}"
    return f"{m[1]}{value}{m[3]}", _state_problem(claimed, state, site.group, passed, total) if claimed else ""


def _completion(line: str, site: Site, facts: _Facts, config: Config) -> tuple[str, str]:
    assert site.group is not None
    passed, total, _state = facts.group(site.group)
    m = _FIELD_VALUE.match(line)
    if not m:
        return line, ""
    value = _replace_pct(m[2], passed, total) if _PCT_RX.search(m[2]) else pct(passed / total if total else 0.0)
    return f"{m[1]}{value}{m[3]}", _pct_problem(m[2], passed, total, site.group)


def _summary(line: str, site: Site, facts: _Facts, config: Config) -> tuple[str, str]:
    assert site.group is not None
    passed, total, _state = facts.group(site.group)
    m = _FIELD_VALUE.match(line)
    if not m or not _ALL_PASSED.match(m[2]):
        return line, ""
    said_all = m[2].lower().startswith("all")
    now = "All passed" if total and passed == total else f"{passed} of {total} passed"
    problem = f"says all gates passed, but {_who(site.group, passed, total)}" if said_all and now != "All passed" \
        else ""
    return f"{m[1]}{_ALL_PASSED.sub(now, m[2], count=1)}{m[3]}", problem


def _overall(line: str, site: Site, facts: _Facts, config: Config) -> tuple[str, str]:
    return _heading(line, site, facts, config)


def _all_steps(line: str, site: Site, facts: _Facts, config: Config) -> tuple[str, str]:
    assert site.group is not None
    passed, total, state = facts.group(site.group)
    done, steps = steps_complete(config, {g for g in site.group.gate_ids if facts.status(g) == "pass"})
    said = _ALL_STEPS.search(line)
    if not said:
        return line, ""
    upper = said[0].isupper()
    count = "ALL" if done == steps and steps else f"{done} OF {steps}" if upper else f"{done} of {steps}"
    if not upper and count == "ALL":
        count = said[0]
    fixed = line[: said.start()] + count + line[said.end():]
    fixed = _EMOJI_RX.sub(lambda e: e[0] if e[0] in _CLASS_EMOJI[state] else EMOJI[state], fixed)
    fixed = _replace_pct(fixed, passed, total)
    problem = ""
    if said[0].upper() == "ALL" and count.upper() != "ALL":
        problem = f"says all steps are complete, but {done} of {steps} are"
    return fixed, problem or _pct_problem(line, passed, total, site.group)


def _replace_pct(text: str, passed: int, total: int) -> str:
    return _PCT_RX.sub(pct(passed / total if total else 0.0), text, count=1)


def _who(group: Group, passed: int, total: int) -> str:
    return f"{group.kind} {group.name} has {passed} of {total} gates passing"


def _state_problem(claimed: str, state: str, group: Group, passed: int, total: int) -> str:
    if claimed == "complete" and state != "complete":
        return f"claims COMPLETED, but {_who(group, passed, total)}"
    return ""


def _pct_problem(text: str, passed: int, total: int, group: Group) -> str:
    m = _PCT_RX.search(text)
    if not m:
        return ""
    claimed = float(m[0][:-1])
    ratio = passed / total if total else 0.0
    measured = pct(ratio)
    # A figure written to fewer decimals is true when it is the measured one at its precision (67% for 2 of 3);
    # the formatter never rounds up to 100%, so "100%" for 199 of 200 stays a false claim.
    decimals = len(m[0][:-1].partition(".")[2])
    if claimed > 100 * ratio and m[0] != units.percent(ratio, decimals):
        return f"claims {m[0]}, but {_who(group, passed, total)} ({measured})"
    return ""


_SITE = {"box": _box, "heading": _heading, "status": _status, "completion": _completion, "summary": _summary,
         "overall": _overall, "all-steps": _all_steps}
