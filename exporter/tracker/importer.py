"""`qualitygate import`: a markdown tracker -> a commented config the loader accepts."""

from __future__ import annotations

import os
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from exporter.probes import KINDS
from exporter.tracker.infer import (
    Expectation,
    NotInferable,
    expectation,
    looks_like_command,
    probe_for,
    prometheus_base,
    prometheus_claim,
    tls_claim,
)
from exporter.tracker.parse import (
    _PHASE_IN_TEXT,
    Claim,
    Note,
    StepSection,
    TrackerModel,
    TrackerParseError,
    parse,
)
from exporter.tracker.pushable import push_for, push_header, push_line
from exporter.tracker.yamltext import comment as _comment
from exporter.tracker.yamltext import flow as _flow
from exporter.tracker.yamltext import quote as _q

__all__ = ["ImportResult", "TrackerParseError", "import_tracker", "import_tracker_file", "read_tracker"]

TIER_PHASE_ID = "quality-gate-status"
TIER_PHASE_TITLE = "Quality Gate Status"
UNASSIGNED_PHASE_ID = "unassigned"
AUTOMATED_CHECK_SUFFIX = "-automated-check"
AUTOMATED_CHECK_TITLE = "Automated check: "
CHECK_ANCHOR = "check: "  # the `source` of a gate made from an automated check's command
MANUAL_MAX_AGE = "30d"
# Scripts (test suites, load tests) run far longer than an HTTP probe, and not every minute.
COMMAND_INTERVAL, COMMAND_TIMEOUT = "1h", "10m"
_UPTIME_NAME = re.compile(r"\b(uptime|availability)\b", re.I)


@dataclass
class GatePlan:
    """One gate as it will be written."""

    title: str
    kind: str
    spec: dict[str, Any]
    line: int
    expect: tuple[str, ...] = ()
    tier: str | None = None
    description: str = ""
    interval: str | None = None
    timeout: str | None = None
    comments: list[str] = field(default_factory=list)
    ticked: bool | None = None
    source: str = ""  # the line's text, which `render --in-place` finds the line by
    measurable: bool = False
    slug_base: str = ""
    id: str = ""
    observes: GatePlan | None = None  # uptime gates: the gate whose pass ratio they measure
    report: str = ""  # push-sourced gates: the report file CI sends (qualitygate push ID REPORT)


@dataclass
class StepPlan:
    """One step as it will be written."""

    title: str
    team: str
    line: int
    gates: list[GatePlan] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    id: str = ""


@dataclass
class PhasePlan:
    """One phase as it will be written."""

    title: str
    line: int
    steps: list[StepPlan] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    id: str = ""
    fixed_id: str = ""


@dataclass
class ImportResult:
    """The imported config text, the plan it was written from, and what could not be used."""

    source: str
    tracker: str
    title: str
    phases: list[PhasePlan]
    model: TrackerModel
    notes: list[Note]
    yaml_text: str = ""

    @property
    def gates(self) -> list[GatePlan]:
        """Every gate, in config order."""
        return [g for p in self.phases for s in p.steps for g in s.gates]

    @property
    def steps(self) -> list[StepPlan]:
        """Every step, in config order."""
        return [s for p in self.phases for s in p.steps]

    @property
    def automated(self) -> list[GatePlan]:
        """Gates with a probe (anything but manual)."""
        return [g for g in self.gates if g.kind != "manual"]

    @property
    def pushed(self) -> list[GatePlan]:
        """Report gates whose report CI pushes."""
        return [g for g in self.gates if g.report]

    def push_lines(self) -> list[str]:
        """The `qualitygate push` line that feeds each push gate."""
        return [push_line(g.id, g.report, self.tracker) for g in self.pushed]

    @property
    def manual(self) -> list[GatePlan]:
        """Gates that pass only on a fresh attestation."""
        return [g for g in self.gates if g.kind == "manual"]

    def summary_lines(self) -> list[str]:
        """What was imported, what needs a probe or an attestation, and every line not understood."""
        m = self.model
        claims = [c for s in [*m.steps, *m.tier_steps] for c in s.claims]
        checks = [c for s in [*m.steps, *m.tier_steps] for c in s.checks]
        ticked = sum(c.ticked is True and not c.rendered for c in claims)
        rendered = sum(c.ticked is True and c.rendered for c in claims)
        kinds = Counter(g.kind for g in self.automated)
        measurable = sum(g.measurable for g in self.manual)
        lines = [
            f"{self.source}: {len(self.phases)} phases, {len(self.steps)} steps, {len(self.gates)} gates "
            f"(tracker {self.tracker!r})",
            f"  from the document: {len(m.phases)} phases, {len(m.steps)} steps, {len(m.tier_steps)} tier sections, "
            f"{len(claims)} gate lines ({ticked} ticked by hand"
            + (f", {rendered} ticked by qualitygate render" if rendered else "") + f"), {len(checks)} automated checks",
        ]
        extra = [p for p in self.phases if p.fixed_id]
        for p in extra:
            lines.append(f"  added phase {p.id!r} ({p.title}) for {len(p.steps)} step(s)")
        detail = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
        lines.append(f"  automated: {len(self.automated)} gates" + (f" ({detail})" if detail else ""))
        if self.pushed:
            lines.append(f"  pushed from CI: {len(self.pushed)} of them; each fails until CI sends its report:")
            lines += [f"    {line}" for line in self.push_lines()]
        lines.append(f"  manual: {len(self.manual)} gates need an attestation "
                     f"(qualitygate attest GATE --value V); {measurable} of them state a number "
                     "that a probe (coverage, junit, promql, http) could measure instead")
        lines.append("  every gate starts pending: no box ticked by hand is taken as passed")
        if self.notes:
            lines.append(f"notes ({len(self.notes)}):")
            lines += [f"  line {n.line}: {n.reason}" for n in self.notes]
        if m.not_understood:
            lines.append(f"not understood ({len(m.not_understood)} lines):")
            lines += [f"  line {n.line}: {n.reason}: {n.text[:100]}" for n in m.not_understood]
        if m.ignored:
            lines.append(f"ignored ({len(m.ignored)} sections of prose, no phases, steps or gates):")
            lines += [f"  line {n.line}: {n.reason}" for n in m.ignored]
        return lines


# --- entry points -----------------------------------------------------------------------------


def read_tracker(path: str) -> str:
    """Read a tracker file as text; TrackerParseError (with the line) if it is not UTF-8."""
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise TrackerParseError(f"not UTF-8 text (byte 0x{raw[exc.start]:02x})", line) from None


def import_tracker_file(path: str) -> ImportResult:
    """Import a tracker file (see import_tracker)."""
    return import_tracker(read_tracker(path), os.path.basename(path))


def import_tracker(markdown_text: str, source_name: str = "tracker.md") -> ImportResult:
    """Parse a markdown tracker and write the config it describes; TrackerParseError if it is broken."""
    model = parse(markdown_text)
    notes: list[Note] = []
    phases = [PhasePlan(p.title, p.line, comments=[_phase_comment(p)]) for p in model.phases]
    unassigned = PhasePlan("Unassigned", 0, fixed_id=UNASSIGNED_PHASE_ID,
                           comments=["steps the document puts in no phase"])
    for step in model.steps:
        index, why = _phase_of(step, model, notes)
        plan = _step_plan(step, notes)
        if why:
            plan.comments.append(why)
        (phases[index] if index is not None else unassigned).steps.append(plan)
    if unassigned.steps:
        phases.append(unassigned)
    if model.tier_steps:
        tiers = PhasePlan(model.tier_title or TIER_PHASE_TITLE, model.tier_steps[0].line, fixed_id=TIER_PHASE_ID,
                          comments=["the document's tier sections (Critical / Important / Enhancement gates)"])
        tiers.steps = [_step_plan(s, notes) for s in model.tier_steps]
        phases.append(tiers)

    title = model.title or os.path.splitext(os.path.basename(source_name))[0]
    tracker = _slug(title) or "tracker"
    _assign_ids(phases)
    result = ImportResult(source_name, tracker, title, phases, model, notes)
    result.yaml_text = _emit(result)
    return result


# --- building the plan ------------------------------------------------------------------------


def _phase_comment(p: Any) -> str:
    claimed = ", ".join(x for x in (p.claimed_status, p.claimed_completion) if x)
    return f"line {p.line}: phase {p.number}" + (f" (the document claims: {claimed})" if claimed else "")


def _phase_of(step: StepSection, model: TrackerModel, notes: list[Note]) -> tuple[int | None, str]:
    """Which phase a step belongs to: an explicit phase line first, then heading nesting."""
    if step.phase_ref:
        m = _PHASE_IN_TEXT.search(step.phase_ref)
        for i, p in enumerate(model.phases):
            if (m and p.number == int(m[1])) or (not m and _slug(p.title) in (_slug(step.phase_ref),)):
                return i, f"phase from line {step.phase_ref_line}: {step.phase_ref!r}"
        notes.append(Note(step.phase_ref_line, step.phase_ref,
                          f"step {step.title!r} names {step.phase_ref!r}, which is not a phase of the document: "
                          f"it goes to phase {UNASSIGNED_PHASE_ID!r}"))
        return None, ""
    if step.parent_phase is not None:
        return step.parent_phase, ""
    return None, ""


def _step_plan(step: StepSection, notes: list[Note]) -> StepPlan:
    claimed = f" (the document claims: {step.claimed_status})" if step.claimed_status else ""
    kind = f"{step.tier} tier section" if step.tier else "step"
    plan = StepPlan(step.title, step.team, step.line, comments=[f"line {step.line}: {kind}{claimed}"])
    checks: list[GatePlan] = []
    for check in step.checks:
        gate = GatePlan(AUTOMATED_CHECK_TITLE + check.command, "manual", {"max_age": MANUAL_MAX_AGE}, check.line,
                        tier=step.tier, slug_base="", source=CHECK_ANCHOR + check.command,
                        comments=[f"line {check.line}: automated check: {check.command}"])
        _apply_probe(gate, check.command, notes)
        checks.append(gate)
    claims = [(claim, _claim_gate(claim, step, notes)) for claim in step.claims]
    # An uptime claim is measurable when the step has exactly one endpoint probe to count passes of.
    endpoints = [g for g in [*checks, *(g for _, g in claims)] if g.kind in ("http", "tcp")]
    prom = prometheus_base(str(g.spec.get("url", "")) for g in checks if g.kind == "http")
    for claim, gate in claims:
        first = gate.expect[0] if gate.expect else ""
        if gate.kind == "manual" and _UPTIME_NAME.search(claim.name) and len(endpoints) == 1 \
                and first[:1] == ">" and first.endswith("%"):
            gate.kind, gate.spec, gate.observes, gate.measurable = "uptime", {}, endpoints[0], True
            gate.comments.append(f"measured: the pass ratio of {endpoints[0].title!r} over the uptime window")
        elif gate.kind == "manual" and prom and (guess := prometheus_claim(claim.name, gate.expect, prom)):
            gate.kind, gate.spec, gate.measurable = guess.kind, guess.spec, True
            gate.comments.append(guess.note)
    plan.gates = [g for _, g in claims] + checks
    return plan


def _claim_gate(claim: Claim, step: StepSection, notes: list[Note]) -> GatePlan:
    box = {True: "[x] ", False: "[ ] ", None: ""}[claim.ticked]
    gate = GatePlan(claim.name, "manual", {"max_age": MANUAL_MAX_AGE}, claim.line, tier=step.tier,
                    description=f"Tracker claim: {claim.text}", ticked=claim.ticked, slug_base=claim.name,
                    source=claim.text,
                    comments=[f"line {claim.line}: {box}{claim.text}"])
    command = looks_like_command(claim.threshold)
    if command:
        _apply_probe(gate, command, notes)
        return gate
    exp = expectation(claim.threshold)
    if exp.note:
        gate.comments.append(exp.note)
    if probe := tls_claim(claim.text, exp):
        gate.kind, gate.spec, gate.expect, gate.measurable = probe.kind, probe.spec, exp.conditions, True
        gate.comments.append(probe.note)
        return gate
    guess = push_for(claim.name, claim.threshold, exp)
    if guess is not None:
        gate.kind, gate.spec, gate.expect, gate.report = guess.kind, guess.spec, guess.expect, guess.report
        gate.measurable = True
        gate.comments += guess.notes
        return gate
    _manual(gate, exp)
    return gate


def _manual(gate: GatePlan, exp: Expectation) -> None:
    allowed = KINDS["manual"].measurements
    kept = tuple(c for c in exp.conditions if c.split()[0] in ("<", "<=", ">", ">=", "==", "!=")
                 or c.split()[0] in allowed)
    gate.kind, gate.spec, gate.expect, gate.measurable = "manual", {"max_age": MANUAL_MAX_AGE}, kept, exp.measurable
    if exp.conditions != kept:
        gate.comments.append(f"dropped {[c for c in exp.conditions if c not in kept]}: a manual gate measures "
                             f"only {', '.join(allowed)}")


def _apply_probe(gate: GatePlan, command: str, notes: list[Note]) -> None:
    try:
        guess = probe_for(command)
    except NotInferable as exc:
        notes.append(Note(gate.line, command, f"no probe for {command!r}: {exc}; the gate stays manual"))
        gate.comments.append(f"no probe inferred ({exc}): manual until you configure one")
        return
    gate.kind, gate.spec = guess.kind, guess.spec
    if guess.note:
        gate.comments.append(guess.note)
    if guess.kind == "command":
        gate.interval, gate.timeout = COMMAND_INTERVAL, COMMAND_TIMEOUT
        gate.comments.append("runs in the config file's folder; set cwd: if the script lives elsewhere")


def _slug(text: str, limit: int = 60) -> str:
    """An id in [a-z0-9][a-z0-9_.-]*: ASCII-folded, lower case, dashes."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")
    if len(slug) > limit:
        slug = slug[:limit].rsplit("-", 1)[0] if "-" in slug[:limit] else slug[:limit]
    return slug.strip("-")


def _unique(base: str, seen: set[str]) -> str:
    out, n = base, 2
    while out in seen:
        out, n = f"{base}-{n}", n + 1
    seen.add(out)
    return out


def _assign_ids(phases: list[PhasePlan]) -> None:
    """Ids in config order, so that the same document always gets the same ids."""
    phase_ids: set[str] = set()
    step_ids: set[str] = set()
    gate_ids: set[str] = set()
    for pi, p in enumerate(phases, start=1):
        p.id = _unique(p.fixed_id or _slug(_no_parens(p.title)) or f"phase-{pi}", phase_ids)
        for s in p.steps:
            s.id = _unique(_slug(_no_parens(s.title)) or f"step-{len(step_ids) + 1}", step_ids)
            for g in s.gates:
                base = _slug(g.slug_base) if g.slug_base else s.id + AUTOMATED_CHECK_SUFFIX
                g.id = _unique(base or f"gate-{len(gate_ids) + 1}", gate_ids)
    for g in (g for p in phases for s in p.steps for g in s.gates):
        if g.observes is not None:
            g.spec = {"gate": g.observes.id}
        if g.report and g.kind == "json_file":
            g.spec = {**g.spec, "json_path": "$." + g.id.replace("-", "_")}


def _no_parens(text: str) -> str:
    return re.sub(r"\([^)]*\)", " ", text)


# --- YAML -------------------------------------------------------------------------------------


def _emit(result: ImportResult) -> str:
    gates = result.gates
    auto = result.automated
    out = [
        _comment(f"Imported from {result.source} by `qualitygate import`. Review before use."),
        _comment(f"{len(result.phases)} phases, {len(result.steps)} steps, {len(gates)} gates: {len(auto)} automated, "
                 f"{len(gates) - len(auto)} manual."),
        "# Every checkbox of the document is a gate, and none starts as passed: automated gates pass when",
        "# their probe does; manual gates pass on an attestation (qualitygate attest GATE --value V [--note TEXT])",
        "# younger than max_age. The command gates run the document's own check commands: read them first.",
        *push_header(result.push_lines()),
        f"tracker: {_flow(result.tracker)}",
        f"title: {_q(result.title)}",
        "defaults:",
        "  interval: 60s",
        "  timeout: 10s",
        "  tier: important",
        "phases:" if result.phases else "phases: []",
    ]
    for p in result.phases:
        out += [f"  {_comment(c)}" for c in p.comments]
        out += [f"  - id: {_flow(p.id)}", f"    title: {_q(p.title)}"]
        out.append("    steps:" if p.steps else "    steps: []")
        for s in p.steps:
            out += [f"      {_comment(c)}" for c in s.comments]
            out += [f"      - id: {_flow(s.id)}", f"        title: {_q(s.title)}"]
            if s.team:
                out.append(f"        team: {_q(s.team)}")
            out.append("        gates:" if s.gates else "        gates: []")
            for g in s.gates:
                out += [f"          {_comment(c)}" for c in g.comments]
                if g.kind == "manual":
                    value = "V" if g.expect else "1"
                    out.append(f"          # manual: passes on `qualitygate attest {g.id} --value {value}` younger "
                               f"than max_age" + (" that meets expect" if g.expect else ""))
                if g.report:
                    out.append(f"          {_comment('fed from CI: ' + push_line(g.id, g.report, result.tracker))}")
                out += [f"          - id: {_flow(g.id)}", f"            title: {_q(g.title)}"]
                if g.description:
                    out.append(f"            description: {_q(g.description)}")
                if g.source:
                    out.append(f"            source: {_q(g.source)}")
                if g.tier:
                    out.append(f"            tier: {g.tier}")
                if g.interval:
                    out.append(f"            interval: {g.interval}")
                if g.timeout:
                    out.append(f"            timeout: {g.timeout}")
                out.append(f"            {g.kind}: {_flow(g.spec)}")
                if len(g.expect) == 1:
                    out.append(f"            expect: {_q(g.expect[0])}")
                elif g.expect:
                    out.append(f"            expect: {_flow(list(g.expect))}")
    return "\n".join(out) + "\n"
