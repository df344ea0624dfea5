"""Where a tracker document makes claims, and which gates of the config each claim speaks for.

`render --in-place` and `render --check` read the team's own document: the lines that claim
something (a checkbox, a status line, a completion figure, a heading's COMPLETED) are found here,
and matched to gates through the `source` anchor that `qualitygate import` wrote for each gate
(the checkbox's text, so that edits to the prose around it do not break the match).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from exporter.config.model import Config, Gate
from exporter.tracker.importer import CHECK_ANCHOR, TIER_PHASE_ID, _phase_of
from exporter.tracker.mojibake import repair
from exporter.tracker.parse import (
    _BULLET,
    _CHECKBOX,
    COMPLETION_KEYS,
    GATE_KEYS,
    STATUS_KEYS,
    Note,
    StepSection,
    TrackerModel,
    _field,
    _sections,
    clean,
    parse,
    split_status,
    strip_note,
)


class NotImported(ValueError):
    """The document and the config do not belong together: a one-line reason naming what is missing."""


@dataclass(frozen=True)
class Line:
    """One line of the document: its text without the line ending, and the ending itself."""

    n: int
    text: str
    end: str


@dataclass
class Group:
    """What a heading, status line or figure speaks for: a set of gates of the config."""

    kind: str  # phase | step | overall
    name: str  # for messages: the config ids it stands for
    gate_ids: tuple[str, ...]


@dataclass
class Site:
    """One claim of the document, at one line."""

    line: int
    what: str  # box | heading | status | completion | summary | overall | all-steps | updated
    group: Group | None = None
    gate: Gate | None = None  # boxes: the matched gate (None: a box with no gate)
    text: str = ""  # boxes: the claim's text


@dataclass
class Document:
    """A tracker document read for rewriting: its lines, its claims and what matched nothing."""

    lines: list[Line]
    bom: bool
    repaired: list[int]  # lines the mojibake repair changed
    sites: list[Site] = field(default_factory=list)
    unmatched_gates: list[Gate] = field(default_factory=list)
    matched: int = 0
    step_gates: dict[int, list[Gate]] = field(default_factory=dict)  # id(StepSection) -> its matched gates


def split_lines(text: str) -> list[Line]:
    """Lines with their own endings kept (LF, CRLF, CR), numbered as the parser numbers them."""
    parts = re.split(r"(\r\n|\r|\n)", text)
    out = [Line(i + 1, parts[2 * i], parts[2 * i + 1]) for i in range(len(parts) // 2)]
    if parts[-1]:
        out.append(Line(len(out) + 1, parts[-1], ""))
    return out


def anchor(text: str) -> str:
    """The comparable form of a checkbox text or a `source` key: no note, emoji, emphasis or case."""
    return re.sub(r"\s+", " ", clean(strip_note(text))).strip().casefold()


def _title_key(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", split_status(clean(text))[0].casefold()).strip()


_OVERALL = re.compile(r"^overall\b[^:]{0,60}\b(?:status|completion|progress)\b", re.I)
_ALL_STEPS = re.compile(r"^(?:ALL|\d+ OF \d+)\s+(?:[\w&/-]+\s+){0,4}(?:STEPS|PHASES)\s+(?:COMPLETED?|DONE)\b", re.I)
UPDATED = re.compile(r"(?i)(last updated(?:\*\*|__)?\s*:\s*(?:\*\*|__)?\s*)([^*_]*?)(\.?[*_]*\s*)$")


def read_document(text: str, config: Config, source_name: str) -> tuple[Document, TrackerModel]:
    """Find every claim of the document and match it to the config; NotImported if nothing matches."""
    bom = text.startswith("\ufeff")
    body = text[1:] if bom else text
    fixed = repair(body)
    lines = split_lines(fixed)
    repaired = [a.n for a, b in zip(split_lines(body), lines, strict=False) if a.text != b.text] \
        if fixed != body else []
    model = parse(fixed)
    doc = Document(lines, bom, repaired)
    sourced = [g for g in config.gates if g.source]
    if not sourced:
        raise NotImported(f"no gate of {config.source} has a `source:` key, so no line of {source_name} can be "
                          f"matched to a gate: make the config with `qualitygate import {source_name}` (it records "
                          "each gate's line), or add `source: \"<the checkbox text>\"` to the gates")
    _match(doc, model, config, sourced)
    if not doc.matched:
        raise NotImported(f"none of the {len(sourced)} gates of {config.source} that have a `source:` matches a line "
                          f"of {source_name} (first: {sourced[0].source!r}): was the config imported from another "
                          "document?")
    _groups(doc, model, config)
    return doc, model


def _match(doc: Document, model: TrackerModel, config: Config, sourced: list[Gate]) -> None:
    """Give each checkbox its gate: same anchor text, and the same step title when the text repeats."""
    steps = [*model.steps, *model.tier_steps]
    # A key per line that can hold a gate: (line, "") for a checkbox, (line, command) for a check.
    boxes: dict[str, list[tuple[tuple[int, str], StepSection]]] = {}
    for s in steps:
        for c in s.claims:
            boxes.setdefault(anchor(c.text), []).append(((c.line, ""), s))
        for k in s.checks:
            boxes.setdefault(anchor(CHECK_ANCHOR + k.command), []).append(((k.line, k.command), s))
    titles = {(s.phase, s.id): s.title for s in config.steps}
    taken: dict[tuple[int, str], Gate] = {}
    for gate in sourced:
        candidates = [c for c in boxes.get(anchor(gate.source), []) if c[0] not in taken]
        if not candidates:
            doc.unmatched_gates.append(gate)
            continue
        want = _title_key(titles.get((gate.phase, gate.step), ""))
        key = next((c for c in candidates if _title_key(c[1].title) == want), candidates[0])[0]
        taken[key] = gate
    doc.matched = len(taken)
    for s in steps:
        for c in s.claims:
            doc.sites.append(Site(c.line, "box", gate=taken.get((c.line, "")), text=c.text))
        keys = [(c.line, "") for c in s.claims] + [(k.line, k.command) for k in s.checks]
        doc.step_gates[id(s)] = [taken[k] for k in keys if k in taken]


def _groups(doc: Document, model: TrackerModel, config: Config) -> None:
    """Headings, status lines and figures, each with the gates it speaks for."""
    step_gates = doc.step_gates
    by_step = {(s.phase, s.id): tuple(g.id for g in s.gates) for s in config.steps}
    by_phase = {p.id: tuple(g.id for g in p.gates) for p in config.phases}
    step_groups: dict[int, Group] = {}
    for s in [*model.steps, *model.tier_steps]:
        keys = sorted({(g.phase, g.step) for g in step_gates[id(s)]})
        step_groups[s.line] = Group("step", ", ".join(k[1] for k in keys) or _title_key(s.title),
                                    tuple(i for k in keys for i in by_step[k]))
    notes: list[Note] = []
    phase_groups: dict[int, Group] = {}
    for i, p in enumerate(model.phases):
        ids = sorted({g.phase for s in model.steps if _phase_of(s, model, notes)[0] == i for g in step_gates[id(s)]})
        if not ids:  # no step of the document names this phase: fall back on the config's titles
            ids = [cp.id for cp in config.phases if _title_key(cp.title) == _title_key(p.title)]
        phase_groups[p.line] = Group("phase", ", ".join(ids) or _title_key(p.title),
                                     tuple(g for pid in ids for g in by_phase[pid]))
    everything = Group("overall", config.tracker, tuple(g.id for g in config.gates))
    headings = {**step_groups, **phase_groups}
    live = _live_lines(doc.lines)
    for sec in _sections([ln.text for ln in doc.lines]):
        group = headings.get(sec.line) if sec.line else None
        if group is not None:
            doc.sites.append(Site(sec.line, "heading", group))
        elif sec.line:
            _overall_site(doc, sec.line, sec.heading, everything)
        for n, raw in sec.body:
            if raw == "```":
                continue
            b = _BULLET.match(raw)
            f = _field(b[1] if b else raw.strip()) if not _CHECKBOX.match(raw) else None
            if f and group is not None and f[1]:
                key = f[0]
                what = ("status" if key in STATUS_KEYS else "completion" if key in COMPLETION_KEYS
                        else "summary" if key in GATE_KEYS and group.kind == "phase" else "")
                if what:
                    doc.sites.append(Site(n, what, group))
                    continue
            if f and f[0] == "overall completion":
                doc.sites.append(Site(n, "completion", everything))
                continue
            _overall_site(doc, n, raw, everything)
    for ln in doc.lines:
        if ln.n in live and UPDATED.search(ln.text):
            doc.sites.append(Site(ln.n, "updated"))
    doc.sites.sort(key=lambda site: site.line)


def _overall_site(doc: Document, n: int, text: str, everything: Group) -> None:
    plain = clean(text).lstrip("-*+ ")
    if _OVERALL.match(plain):
        doc.sites.append(Site(n, "overall", everything))
    elif _ALL_STEPS.match(plain):
        doc.sites.append(Site(n, "all-steps", everything))


def _live_lines(lines: list[Line]) -> set[int]:
    """Line numbers outside code blocks and HTML comments."""
    live: set[int] = set()
    for sec in _sections([ln.text for ln in lines]):
        if sec.line:
            live.add(sec.line)
        live.update(n for n, raw in sec.body if raw != "```")
    return live


def steps_complete(config: Config, passed: set[str]) -> tuple[int, int]:
    """(complete steps, steps) of the plan, the tier sections left out (they are no steps of work)."""
    steps = [s for s in config.steps if s.phase != TIER_PHASE_ID]
    return sum(bool(s.gates) and all(g.id in passed for g in s.gates) for s in steps), len(steps)
