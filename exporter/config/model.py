"""The config file: YAML with line marks -> shape checks -> cross-references -> frozen `Config`."""

from __future__ import annotations

import dataclasses
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from exporter.config import yamlload
from exporter.config.expect import Condition, parse_condition
from exporter.config.fields import MISSING, Duration, FilePath, Reader, Url, child, key_node, opt
from exporter.config.issues import ConfigError, Issue, brief
from exporter.probes import KINDS

TIERS = ("critical", "important", "enhancement")
ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
MAX_ID = 128  # ids are label values and URL path parts
MAX_TITLE = 1000  # titles and other one-line text
MAX_TEXT = 10_000  # free text (descriptions, the imported tracker line)


def check_id(value: str) -> None:
    """Ids become label values and URL path parts: keep them to [a-z0-9][a-z0-9_.-]*."""
    if not ID_RE.fullmatch(value):
        raise ValueError(f"invalid id {brief(value, MAX_ID + 2)} (want [a-z0-9][a-z0-9_.-]*)")


# --- the document's shape (what the loader reads; also what `qualitygate schema` describes) ---


@dataclass(frozen=True, slots=True)
class DefaultsDoc:
    """Defaults every gate inherits unless it sets its own."""

    interval: Duration = opt(60.0, doc="How often each gate is evaluated (Prometheus duration).")
    timeout: Duration = opt(10.0, doc="How long one evaluation may take; must be <= interval.")
    tier: str = opt("important", doc="critical | important | enhancement", enum=TIERS)


@dataclass(frozen=True, slots=True)
class PrometheusDoc:
    """The Prometheus server that `promql` gates query."""

    url: Url = opt(required=True, doc="Base URL of the Prometheus HTTP API, e.g. http://localhost:9090")


@dataclass(frozen=True, slots=True)
class GateDoc:
    """A gate's common keys; exactly one probe key (http, tcp, command, ...) sits beside them."""

    id: str = opt(required=True, doc="Unique in the tracker; the `gate` label.", check=check_id, max_length=MAX_ID)
    title: str | None = opt(None, doc="Human name (default: the id).", max_length=MAX_TITLE)
    description: str | None = opt(None, doc="Free text for people; not exported as a label.", max_length=MAX_TEXT)
    tier: str | None = opt(None, doc="critical | important | enhancement (default: defaults.tier)", enum=TIERS)
    interval: Duration | None = opt(None, doc="Evaluation interval (default: defaults.interval).")
    timeout: Duration | None = opt(None, doc="Evaluation timeout (default: defaults.timeout).")
    expect: str | list[str] | None = opt(None, doc="Condition(s) that must all hold: '[MEASUREMENT] OP NUMBER[UNIT]'.")
    shard_key: str | None = opt(None, doc="Gates with the same key are evaluated by the same shard "
                                          "(default: the gate's step).", max_length=MAX_TITLE)
    source: str | None = opt(None, doc="The tracker line the gate was imported from (its checkbox text); "
                                       "`render --in-place` finds the line by it.", max_length=MAX_TEXT)


@dataclass(frozen=True, slots=True)
class StepDoc:
    """A step of a phase: a unit of work with its quality gates."""

    id: str = opt(required=True, doc="Unique in its phase; the `step` label.", check=check_id, max_length=MAX_ID)
    title: str | None = opt(None, doc="Human name (default: the id).", max_length=MAX_TITLE)
    team: str | None = opt(None, doc="Owning team, shown on dashboards (gate_info).", max_length=MAX_TITLE)
    gates: list[Any] = opt(default_factory=tuple, doc="The step's gates.")


@dataclass(frozen=True, slots=True)
class PhaseDoc:
    """A phase of the plan."""

    id: str = opt(required=True, doc="Unique in the tracker; the `phase` label.", check=check_id, max_length=MAX_ID)
    title: str | None = opt(None, doc="Human name (default: the id).", max_length=MAX_TITLE)
    steps: list[StepDoc] = opt(default_factory=tuple, doc="The phase's steps.")


@dataclass(frozen=True, slots=True)
class TrackerDoc:
    """A tracker: one file, one plan of phases, steps and gates."""

    tracker: str = opt(required=True, doc="Tracker name; the `tracker` label.", check=check_id, max_length=MAX_ID)
    title: str | None = opt(None, doc="Human title of the plan.", max_length=MAX_TITLE)
    uptime_window: Duration = opt(30 * 86400.0, doc="Window of gate_uptime_ratio and default window of uptime gates.")
    defaults: DefaultsDoc = opt(default_factory=DefaultsDoc, doc="Defaults for every gate.")
    prometheus: PrometheusDoc | None = opt(None, doc="Prometheus server for promql gates.")
    phases: list[PhaseDoc] = opt(default_factory=tuple, doc="The plan's phases.")
    push_tokens_file: FilePath | None = opt(None, doc="Bearer tokens that may push evidence to this tracker's "
                                                      "gates: one a line, blank lines and # comments ignored.")


# --- the resolved, frozen config the rest of the program uses ---------------------------------


@dataclass(frozen=True, slots=True, weakref_slot=True)  # weakly referable: tests see a reload free them
class Gate:
    """One gate with every default applied."""

    id: str
    title: str
    tier: str
    interval: float
    timeout: float
    expect: tuple[Condition, ...]
    kind: str
    spec: Any
    phase: str
    step: str
    team: str
    tracker: str
    description: str = ""
    shard_key: str = ""
    source: str = ""
    line: int = field(default=0, compare=False)  # moving a gate in the file does not reschedule it

    @property
    def threshold(self) -> float | None:
        """The number of the first condition on `value`, exported as gate_threshold."""
        return next((c.threshold for c in self.expect if c.measurement == "value"), None)

    @property
    def expect_text(self) -> list[str]:
        """The conditions as written, for the API."""
        return [c.text for c in self.expect]


@dataclass(frozen=True, slots=True)
class Step:
    """A step with its resolved gates."""

    id: str
    title: str
    team: str
    phase: str
    gates: tuple[Gate, ...]


@dataclass(frozen=True, slots=True)
class Phase:
    """A phase with its resolved steps."""

    id: str
    title: str
    steps: tuple[Step, ...]

    @property
    def gates(self) -> tuple[Gate, ...]:
        """Every gate of the phase, in document order."""
        return tuple(g for s in self.steps for g in s.gates)


@dataclass(frozen=True, slots=True, weakref_slot=True)  # weakly referable: tests see a reload free them
class Config:
    """A loaded tracker config."""

    tracker: str
    title: str
    uptime_window: float
    prometheus_url: str | None
    phases: tuple[Phase, ...]
    source: str
    tracker_line: int = field(default=1, compare=False)
    push_tokens_file: str | None = None  # read by serve (exporter.engine.pushes), never by validate or check
    push_tokens_line: int = field(default=0, compare=False)
    # Derived from `phases`, so that a restricted copy (check --tier, a shard) cannot disagree.
    gates: tuple[Gate, ...] = field(init=False, repr=False, compare=False)
    by_id: dict[str, Gate] = field(init=False, repr=False, compare=False)
    base_dir: str = field(init=False, repr=False, compare=False)  # relative probe paths start here

    def __post_init__(self) -> None:
        gates = tuple(g for p in self.phases for s in p.steps for g in s.gates)
        object.__setattr__(self, "gates", gates)
        object.__setattr__(self, "by_id", {g.id: g for g in gates})
        object.__setattr__(self, "base_dir", os.path.dirname(os.path.abspath(self.source)))

    def restrict(self, keep: Callable[[Gate], bool]) -> Config:
        """This config with only the gates `keep` accepts; steps and phases left empty are dropped."""
        phases = []
        for p in self.phases:
            steps = tuple(dataclasses.replace(s, gates=tuple(g for g in s.gates if keep(g))) for s in p.steps)
            steps = tuple(s for s in steps if s.gates)
            if steps:
                phases.append(dataclasses.replace(p, steps=steps))
        return dataclasses.replace(self, phases=tuple(phases))

    def gate(self, gate_id: str) -> Gate | None:
        """A gate by id, or None."""
        return self.by_id.get(gate_id)

    @property
    def steps(self) -> tuple[Step, ...]:
        """Every step, in document order."""
        return tuple(s for p in self.phases for s in p.steps)

    def objectives(self) -> dict[str, float]:
        """gate id -> the X of an `uptime` gate's `> X` / `>= X` that observes it (SLO target)."""
        out: dict[str, float] = {}
        for g in self.gates:
            if g.kind == "uptime":
                for c in g.expect:
                    if c.measurement == "value" and c.op in (">", ">="):
                        out.setdefault(g.spec.gate, c.threshold)
                        break
        return out


# --- loading ----------------------------------------------------------------------------------

def load_config(path: str, env: dict[str, str] | None = None) -> Config:
    """Load and check one tracker file; raise ConfigError listing every issue with FILE:LINE."""
    try:
        # O_NONBLOCK: opening a FIFO given as the config must not wait forever for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with open(fd, encoding="utf-8") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise ConfigError([Issue(path, 1, "", "cannot read config: not a regular file")])
            text = fh.read()
    except OSError as exc:
        raise ConfigError([Issue(path, 1, "", f"cannot read config: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([Issue(path, 1, "", f"config is not UTF-8: {exc.reason}")]) from None
    return parse_config(text, path, env)


def parse_config(text: str, path: str = "<config>", env: dict[str, str] | None = None) -> Config:
    """Parse a tracker config from text (see load_config)."""
    with yamlload.gc_paused():  # looked up here, so that bench/p4_startup.py can swap it
        try:
            return _parse_config(text, path, env)
        except ConfigError:
            raise
        except RecursionError:
            raise ConfigError([Issue(path, 1, "", "config is nested too deeply")]) from None
        except Exception as exc:
            # A defect of ours, or memory running out, must not be a traceback from `validate` or a reload
            # that neither fails nor succeeds: it is a config that cannot be used. The cause stays chained.
            raise ConfigError([Issue(path, 1, "", f"cannot load config: {type(exc).__name__}: "
                                                  f"{str(exc)[:200]}")]) from exc


def _parse_config(text: str, path: str, env: dict[str, str] | None) -> Config:
    reader = Reader(path, os.path.dirname(os.path.abspath(path)) if path != "<config>" else os.getcwd())
    if env is not None:
        reader.env = env
    root = yamlload.compose(text, path)
    if root is None:
        raise ConfigError([Issue(path, 1, "", "config is empty")])
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError([Issue(path, root.start_mark.line + 1, "", "config must be a mapping")])

    doc = reader.dataclass(root, TrackerDoc, "")
    gate_nodes = _gate_nodes(root)
    if doc is MISSING:
        # Still read every gate, so that one bad key elsewhere does not hide the gates' errors.
        fallback = TrackerDoc(tracker="invalid")
        for key, node in gate_nodes:
            _read_gate(node, key, reader, fallback, "", "", "")
        raise ConfigError(reader.issues)
    config = _resolve(doc, root, gate_nodes, reader)
    if reader.issues:
        raise ConfigError(reader.issues)
    assert config is not None
    return config


def _gate_nodes(root: yaml.MappingNode) -> list[tuple[str, yaml.Node]]:
    """The raw gate nodes with their key paths (gates are read by hand: one probe key each)."""
    out = []
    for pi, phase in enumerate(_seq(child(root, "phases"))):
        for si, step in enumerate(_seq(child(phase, "steps"))):
            for gi, gate in enumerate(_seq(child(step, "gates"))):
                out.append((f"phases[{pi}].steps[{si}].gates[{gi}]", gate))
    return out


def _seq(node: yaml.Node | None) -> list[yaml.Node]:
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _resolve(doc: TrackerDoc, root: yaml.MappingNode, gate_nodes: list[tuple[str, yaml.Node]],
             reader: Reader) -> Config:
    defaults = doc.defaults
    if defaults.timeout > defaults.interval:
        reader.error(key_node(child(root, "defaults"), "timeout"), "defaults.timeout",
                     "timeout must not exceed interval")
    phase_nodes = _seq(child(root, "phases"))
    nodes = iter(gate_nodes)
    phases: list[Phase] = []
    gates: list[Gate] = []
    seen_gates: dict[str, tuple[str, yaml.Node]] = {}  # gate id -> its key and node, for later errors
    seen_phases: set[str] = set()
    for pi, p in enumerate(doc.phases):
        if p.id in seen_phases:
            reader.error(key_node(phase_nodes[pi], "id"), f"phases[{pi}].id", f"duplicate phase id {p.id!r}")
        seen_phases.add(p.id)
        steps = []
        seen_steps: set[str] = set()
        for si, s in enumerate(p.steps):
            if s.id in seen_steps:
                step_node = _seq(child(phase_nodes[pi], "steps"))[si]
                reader.error(key_node(step_node, "id"), f"phases[{pi}].steps[{si}].id",
                             f"duplicate step id {s.id!r} in phase {p.id!r}")
            seen_steps.add(s.id)
            step_gates = []
            for _ in s.gates:
                key, node = next(nodes)
                gate = _read_gate(node, key, reader, doc, p.id, s.id, s.team or "")
                if gate is None:
                    continue
                if gate.id in seen_gates:
                    reader.error(key_node(node, "id"), f"{key}.id",
                                 f"duplicate gate id {gate.id!r} (first at {seen_gates[gate.id][0]})")
                    continue
                seen_gates[gate.id] = (key, node)
                step_gates.append(gate)
            steps.append(Step(s.id, s.title or s.id, s.team or "", p.id, tuple(step_gates)))
            gates.extend(step_gates)
        phases.append(Phase(p.id, p.title or p.id, tuple(steps)))

    by_id = {g.id: g for g in gates}
    for g in gates:
        key, node = seen_gates[g.id]
        if g.kind == "promql" and not g.spec.url and doc.prometheus is None:
            reader.error(node, key + ".promql.url", "no url, and the config has no prometheus.url")
        if g.kind == "uptime":
            target = by_id.get(g.spec.gate)
            if target is None:
                reader.error(node, key + ".uptime.gate", f"no gate with id {g.spec.gate!r}")
            elif target.kind == "uptime" or target.id == g.id:
                reader.error(node, key + ".uptime.gate", f"gate {g.spec.gate!r} is itself an uptime gate")
    return Config(
        tracker=doc.tracker,
        title=doc.title or doc.tracker,
        uptime_window=doc.uptime_window,
        prometheus_url=doc.prometheus.url if doc.prometheus else None,
        phases=tuple(phases),
        source=reader.file,
        tracker_line=key_node(root, "tracker").start_mark.line + 1,
        push_tokens_file=doc.push_tokens_file,
        push_tokens_line=key_node(root, "push_tokens_file").start_mark.line + 1 if doc.push_tokens_file else 0,
    )


def _read_gate(node: yaml.Node, key: str, reader: Reader, doc: TrackerDoc, phase: str, step: str,
               team: str) -> Gate | None:
    """Read one gate mapping: its common keys, then its one probe key."""
    if not isinstance(node, yaml.MappingNode):
        reader.error(node, key, "a gate must be a mapping")
        return None
    probe_keys = [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value in KINDS]
    common = reader.dataclass(node, GateDoc, key, skip=frozenset(KINDS))
    if not probe_keys:
        reader.error(node, key, f"a gate needs exactly one probe key, found none (one of: {', '.join(KINDS)})")
        return None
    if len(probe_keys) > 1:
        names = ", ".join(k.value for k, _ in probe_keys)
        reader.error(probe_keys[1][0], key, f"a gate needs exactly one probe key, found {len(probe_keys)}: {names}")
        return None
    k_node, v_node = probe_keys[0]
    kind = KINDS[k_node.value]
    spec = reader.dataclass(v_node, kind.spec, f"{key}.{kind.name}")
    if common is MISSING or spec is MISSING:
        return None

    defaults = doc.defaults
    interval = common.interval if common.interval is not None else defaults.interval
    timeout = common.timeout if common.timeout is not None else defaults.timeout
    if interval <= 0:
        reader.error(key_node(node, "interval"), f"{key}.interval", "interval must be positive")
    if timeout <= 0:
        reader.error(key_node(node, "timeout"), f"{key}.timeout", "timeout must be positive")
    elif timeout > interval:
        where = "timeout" if common.timeout is not None else "interval"
        reader.error(key_node(node, where), f"{key}.{where}", "timeout must not exceed interval")

    raw = common.expect
    texts = [raw] if isinstance(raw, str) else list(raw or ())
    conditions = []
    expect_node = child(node, "expect")
    for i, text in enumerate(texts):
        sub = f"{key}.expect" if isinstance(raw, str) else f"{key}.expect[{i}]"
        item_node = expect_node.value[i] if isinstance(expect_node, yaml.SequenceNode) else expect_node
        try:
            cond = parse_condition(text)
        except ValueError as exc:
            reader.error(item_node, sub, str(exc))
            continue
        # `delta` (the change of value against the latest push that counts) exists for pushed reports only.
        pushed = getattr(spec, "push", None) is not None and cond.measurement == "delta"
        if cond.measurement not in kind.measurements and not pushed:
            reader.error(item_node, sub, f"probe kind {kind.name} has no measurement {cond.measurement!r} "
                                         f"(it has: {', '.join(kind.measurements)})")
            continue
        conditions.append(cond)
    if kind.needs_expect and not texts:
        reader.error(k_node, f"{key}.expect", f"a {kind.name} gate needs an expect condition (it has no default pass)")
    return Gate(
        id=common.id,
        title=common.title or common.id,
        tier=common.tier or defaults.tier,
        interval=interval,
        timeout=timeout,
        expect=tuple(conditions),
        kind=kind.name,
        spec=spec,
        phase=phase,
        step=step,
        team=team,
        tracker=doc.tracker,
        description=common.description or "",
        shard_key=common.shard_key or "",
        source=common.source or "",
        line=node.start_mark.line + 1,
    )
