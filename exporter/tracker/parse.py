"""Markdown tracker -> a neutral model of phases, steps, claimed gates and automated checks.

The parser is tolerant by design: heading levels, emoji, bold, CRLF and prose around the
structure do not matter. What it cannot place it records (line number and reason) instead of
dropping silently; only a document whose structure is broken raises TrackerParseError.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from exporter.tracker.mojibake import normalise


class TrackerParseError(ValueError):
    """A tracker that cannot be read: a message and the 1-based line at fault."""

    def __init__(self, message: str, line: int = 1):
        self.message = message
        self.line = line
        super().__init__(f"line {line}: {message}")


@dataclass
class Claim:
    """One quality-gate line: `- [x] Name: threshold`."""

    line: int
    text: str
    name: str
    threshold: str
    ticked: bool | None  # None: a plain bullet under "Quality Gates", no checkbox
    rendered: bool = False  # the line carries the status note `qualitygate render` writes


@dataclass
class Check:
    """One automated check: a command line the document says verifies the step."""

    line: int
    command: str


@dataclass
class StepSection:
    """A step heading (or a tier section, or a heading that directly holds gates) and its body."""

    line: int
    level: int
    title: str
    number: int | None = None
    tier: str | None = None
    team: str = ""
    claimed_status: str = ""
    phase_ref: str = ""
    phase_ref_line: int = 0
    parent_phase: int | None = None  # index into TrackerModel.phases, by heading nesting
    claims: list[Claim] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)


@dataclass
class PhaseSection:
    """A `Phase N: title` heading and what its body claims."""

    line: int
    level: int
    title: str
    number: int | None
    claimed_status: str = ""
    claimed_completion: str = ""


@dataclass(frozen=True)
class Note:
    """A line the parser did not use, and why."""

    line: int
    text: str
    reason: str


@dataclass
class TrackerModel:
    """Everything the parser understood, in document order."""

    title: str = ""
    phases: list[PhaseSection] = field(default_factory=list)
    steps: list[StepSection] = field(default_factory=list)  # ordinary and implicit steps
    tier_steps: list[StepSection] = field(default_factory=list)
    tier_title: str = ""
    not_understood: list[Note] = field(default_factory=list)
    ignored: list[Note] = field(default_factory=list)  # whole sections with no structure (prose)


# --- inline text ------------------------------------------------------------------------------

_DROP_CATEGORIES = {"So", "Cf", "Co", "Cs"}
_STATUS_WORDS = (r"FULLY COMPLETED|COMPLETED|COMPLETE|DONE|IN PROGRESS|IN_PROGRESS|NOT STARTED|NOT_STARTED|"
                 r"BLOCKED|PENDING|TODO|WIP|PLANNED|NO GATES")
_TRAILING_STATUS = re.compile(rf"^(.*?)(?:\s*[-–—:|]\s*|\s+)({_STATUS_WORDS})(?:\s*\(\d+(?:\.\d+)?%\))?\s*$")
_TRAILING_STATUS_ANYCASE = re.compile(rf"^(.*?)\s+[-–—|]\s+({_STATUS_WORDS})(?:\s*\(\d+(?:\.\d+)?%\))?\s*$", re.I)


def clean(text: str) -> str:
    """Drop emoji and emphasis markers, collapse whitespace."""
    kept = "".join(ch for ch in text if unicodedata.category(ch) not in _DROP_CATEGORIES
                   and ch not in "\ufe0e\ufe0f\u20e3")
    kept = kept.replace("**", "").replace("__", "")
    return re.sub(r"\s+", " ", kept).strip()


def split_status(title: str) -> tuple[str, str]:
    """`Core Stabilization - COMPLETED` -> (`Core Stabilization`, `COMPLETED`)."""
    for rx in (_TRAILING_STATUS, _TRAILING_STATUS_ANYCASE):
        m = rx.match(title)
        if m and m[1].strip():
            return m[1].strip(" -–—:|"), m[2].upper()
    return title, ""


# The note `render` writes after a gate's text: " — ✅ pass: 96% (>= 95%)", " — ⏳ not verified: ...".
RENDERED_NOTE = re.compile(r"\s+—\s+(?:✅|❌|⚠️|⚠|⏳)\s*(?:pass|fail|error|not verified)\b", re.I)


def strip_note(text: str) -> str:
    """Drop a trailing ` — note` (rendered trackers put the live status there)."""
    return re.split(r"\s+—\s+", text, maxsplit=1)[0].strip()


# --- line shapes ------------------------------------------------------------------------------

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```+|~~~+)")
_HR = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_CHECKBOX = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+\[([ xX✓✔])\](?:\s+(.*?))?\s*$")
_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(.*?)\s*$")
_FIELD = re.compile(r"^(\*\*|__)?([A-Za-z][A-Za-z0-9 /&()'-]{0,40}?)\s*(?:\1\s*:|:\s*\1|:)\s*(.*)$")
_PHASE = re.compile(r"^phase\s+(\d+)\b\s*[:.)\-–—]?\s*(.*)$", re.I)
_STEP = re.compile(r"^step\s+(\d+)\b\s*[:.)\-–—]?\s*(.*)$", re.I)
_TIER_WORDS = (("critical", "must pass"), ("important", "should pass"), ("enhancement", "nice to have"))
_PHASE_IN_TEXT = re.compile(r"\bphase\s+(\d+)\b", re.I)

TEAM_KEYS = {"team", "owner", "owners", "responsible", "responsible team", "owning team"}
STATUS_KEYS = {"status", "state"}
COMPLETION_KEYS = {"completion", "progress"}
GATE_KEYS = {"quality gates", "quality gate", "gates", "acceptance criteria", "exit criteria"}
CHECK_KEYS = {"automated checks", "automated check", "checks", "check", "verification"}
PHASE_KEYS = {"phase"}
DATE_KEYS = {"completion date", "target date", "due", "due date", "timeline", "eta", "completed"}
OTHER_KEYS = {"deliverables", "key deliverables", "objective", "activities", "success criteria", "notes",
              "description", "risks", "dependencies", "priority", "steps", "last updated", "overall completion"}
KNOWN_KEYS = TEAM_KEYS | STATUS_KEYS | COMPLETION_KEYS | GATE_KEYS | CHECK_KEYS | PHASE_KEYS | DATE_KEYS | OTHER_KEYS
AUTOMATED_CHECK_NAMES = {"automated check", "automated checks"}


def tier_of(heading: str) -> str | None:
    """critical | important | enhancement for a tier-section heading, else None."""
    low = heading.lower()
    for tier, phrase in _TIER_WORDS:
        if phrase in low or re.match(rf"^{tier}\b.*\bgates?\b", low):
            return tier
    return None


def _field(text: str) -> tuple[str, str, bool] | None:
    """(normalised key, value, was bold) for `**Key**: value` / `Key: value`; None if not a field."""
    m = _FIELD.match(text)
    if not m:
        return None
    key = re.sub(r"\s+", " ", m[2]).strip().lower()
    value = m[3].replace("**", "").replace("__", "").strip()
    return key, value, bool(m[1])


def split_claim(text: str) -> tuple[str, str]:
    """`Name: threshold` -> (name, threshold); also `Name >99%` and a bare `Name`."""
    m = re.match(r"^(.*?)\s*:\s+(.*)$", text) or re.match(r"^(.*?):$", text)
    if m:
        return m[1].strip(), (m[2].strip() if m.lastindex and m.lastindex > 1 else "")
    m = re.match(r"^(.*?[^\s<>=≥≤])\s+((?:[<>≥≤]=?|==?)\s*\d.*)$", text)
    if m:
        return m[1].strip(), m[2].strip()
    return text.strip(), ""


def _split_commands(value: str) -> list[str]:
    """Commands in a value: every `backticked` span, else the whole value."""
    spans = re.findall(r"`([^`]+)`", value)
    if spans:
        return [s.strip() for s in spans if s.strip()]
    value = value.strip()
    return [] if value.lower() in ("", "none", "n/a", "manual", "-") else [value]


# --- the parser -------------------------------------------------------------------------------


@dataclass
class _Section:
    line: int  # heading line (0 for the preamble)
    level: int
    heading: str
    body: list[tuple[int, str]] = field(default_factory=list)


def _sections(lines: list[str]) -> list[_Section]:
    """Split into heading sections; code fences and HTML comments never reach the body parser."""
    sections = [_Section(0, 0, "")]
    fence: tuple[int, str] | None = None
    comment_from = 0
    for i, raw in enumerate(lines, start=1):
        if "\x00" in raw:
            raise TrackerParseError("NUL byte: this is not a text document", i)
        if fence:
            if raw.strip().startswith(fence[1]):
                fence = None
            continue
        if comment_from:
            if "-->" in raw:
                comment_from = 0
            continue
        m = _FENCE.match(raw)
        if m:
            fence = (i, m[1][0] * 3)
            sections[-1].body.append((i, "```"))
            continue
        stripped = raw.strip()
        if stripped.startswith("<!--"):
            if "-->" not in stripped:
                comment_from = i
            continue
        m = _ATX.match(raw)
        if m:
            sections.append(_Section(i, len(m[1]), m[2] or ""))
            continue
        body = sections[-1].body
        if _SETEXT.match(raw) and body and body[-1][0] == i - 1 and body[-1][1].strip() not in ("", "```") \
                and not _BULLET.match(body[-1][1]):
            prev_line, prev = body.pop()
            sections.append(_Section(prev_line, 1 if raw.strip()[0] == "=" else 2, prev.strip()))
            continue
        body.append((i, raw))
    if fence:
        raise TrackerParseError("code block opened here is never closed (add a closing ```)", fence[0])
    if comment_from:
        raise TrackerParseError("HTML comment opened here is never closed (add -->)", comment_from)
    return sections


def parse(text: str) -> TrackerModel:
    """Parse a markdown tracker; raise TrackerParseError only for a broken document."""
    model = TrackerModel()
    sections = _sections(normalise(text).split("\n"))
    open_phase: tuple[int, int] | None = None  # (index in model.phases, heading level)
    heading_stack: list[tuple[int, str]] = []  # (level, cleaned text) of enclosing headings
    numbers: dict[int, int] = {}
    for sec in sections:
        heading = clean(sec.heading)
        if sec.line:
            while heading_stack and heading_stack[-1][0] >= sec.level:
                heading_stack.pop()
            if open_phase and sec.level <= open_phase[1]:
                open_phase = None
        # The enclosing heading names the tier sections' phase, unless it is the document title.
        parent_heading = heading_stack[-1][1] if heading_stack and heading_stack[-1][0] > 1 else ""
        if sec.line:
            heading_stack.append((sec.level, heading))

        if sec.line and sec.level == 1 and not model.title and not _PHASE.match(heading) and not _STEP.match(heading):
            model.title = split_status(heading)[0]
            if _has_gates(sec):
                step = StepSection(sec.line, sec.level, model.title)
                _read_body(step, sec, model)
                model.steps.append(step)
            continue

        m = _PHASE.match(heading) if sec.line else None
        if m:
            number = int(m[1])
            if number in numbers:
                raise TrackerParseError(
                    f"phase {number} is defined twice (first on line {numbers[number]})", sec.line)
            numbers[number] = sec.line
            title, status = split_status(m[2].strip())
            phase = PhaseSection(sec.line, sec.level, title or f"Phase {number}", number, claimed_status=status)
            model.phases.append(phase)
            open_phase = (len(model.phases) - 1, sec.level)
            holder = StepSection(sec.line, sec.level, phase.title, parent_phase=open_phase[0])
            fields = _read_body(holder, sec, model)
            phase.claimed_status = status or fields.get("status", "")
            phase.claimed_completion = fields.get("completion", "")
            if holder.claims or holder.checks:  # gates written directly under the phase heading
                model.steps.append(holder)
            continue

        m = _STEP.match(heading) if sec.line else None
        tier = None if m or not sec.line else tier_of(heading)
        if m or tier or (sec.line and _has_gates(sec)):
            if m:
                title, status = split_status(m[2].strip())
                title = title or f"Step {m[1]}"
            else:
                title, status = split_status(heading)
            step = StepSection(sec.line, sec.level, title, number=int(m[1]) if m else None, tier=tier,
                               claimed_status=status)
            if open_phase and not tier:
                step.parent_phase = open_phase[0]
            _read_body(step, sec, model)
            if tier:
                model.tier_steps.append(step)
                if not model.tier_title and parent_heading and tier_of(parent_heading) is None \
                        and not _PHASE.match(parent_heading) and not _STEP.match(parent_heading):
                    model.tier_title = split_status(parent_heading)[0]
            else:
                model.steps.append(step)
            continue

        content = [(n, raw) for n, raw in sec.body if raw.strip() and not _HR.match(raw)]
        if content:
            what = f"section {heading!r}" if sec.line else "text before the first heading"
            first, last = (sec.line or content[0][0]), content[-1][0]
            model.ignored.append(Note(first, heading, f"{what} (lines {first}-{last}) has no phases, steps or gates"))

    if not model.phases and not model.steps and not model.tier_steps:
        raise TrackerParseError("no phases, steps or quality gates found: expected headings such as "
                                "'## Phase 1: Title' or '### Step 1: Title', or checkbox lines "
                                "'- [ ] Gate name: threshold'", 1)
    return model


def _has_gates(sec: _Section) -> bool:
    for _, raw in sec.body:
        if _CHECKBOX.match(raw):
            return True
        b = _BULLET.match(raw)
        f = _field(b[1] if b else raw.strip())
        if f and (f[0] in GATE_KEYS or f[0] in CHECK_KEYS):
            return True
    return False


def _read_body(step: StepSection, sec: _Section, model: TrackerModel) -> dict[str, str]:
    """Read a section's fields, gate lines and checks into `step`; return the other fields."""
    fields: dict[str, str] = {}
    context = ""  # which list the bullets below belong to: gates | checks | other
    for n, raw in sec.body:
        stripped = raw.strip()
        if not stripped or _HR.match(raw):
            continue
        if stripped == "```":
            model.not_understood.append(Note(n, stripped, "code block ignored"))
            continue
        m = _CHECKBOX.match(raw)
        if m:
            if not (m[2] or "").strip():
                raise TrackerParseError("a quality-gate checkbox with no text (write '- [ ] Gate name: threshold')", n)
            _add_claim(step, n, m[2], m[1] != " ", model)
            context = "gates"
            continue
        b = _BULLET.match(raw)
        f = _field(b[1] if b else stripped)
        if f and f[0] in KNOWN_KEYS:
            key, value, _bold = f
            if key in TEAM_KEYS:
                step.team = value
            elif key in STATUS_KEYS:
                fields["status"] = clean(value)
                step.claimed_status = step.claimed_status or clean(value)
            elif key in COMPLETION_KEYS:
                fields["completion"] = clean(value)
            elif key in GATE_KEYS:
                context = "gates"
            elif key in CHECK_KEYS:
                context = "checks"
                step.checks.extend(Check(n, c) for c in _split_commands(value))
            elif key in PHASE_KEYS or (key in DATE_KEYS and _PHASE_IN_TEXT.search(value)):
                step.phase_ref, step.phase_ref_line = clean(value), n
                context = "other"
            else:
                context = "other"
            continue
        if b and context == "gates":
            _add_claim(step, n, b[1], None, model)
            continue
        if f and f[2]:
            model.not_understood.append(Note(n, stripped, f"unknown field {f[0]!r}"))
            context = "other"
            continue
        if b and context == "checks":
            step.checks.extend(Check(n, c) for c in _split_commands(b[1]))
            continue
        if b and context == "other":
            continue
        model.not_understood.append(Note(n, stripped, "not a gate, check or known field"))
    return fields


def _add_claim(step: StepSection, line: int, text: str, ticked: bool | None, model: TrackerModel) -> None:
    body = clean(strip_note(text))
    name, threshold = split_claim(body)
    if name.lower().rstrip(":") in AUTOMATED_CHECK_NAMES and threshold:
        step.checks.extend(Check(line, c) for c in _split_commands(threshold))
        return
    if not name:
        raise TrackerParseError(f"quality gate {text.strip()!r} has no name before its threshold", line)
    step.claims.append(Claim(line, body, name, threshold, ticked, bool(RENDERED_NOTE.search(text))))
