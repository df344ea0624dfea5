"""The running exporter: current config, per-tracker state, scheduler, supervised tasks, and reloads.

What is shown of the gates (/metrics) is a view attached by a higher stage (exposition): the
runtime tells its views of every new config and every result, and knows nothing of formats.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry

from exporter.config import apart
from exporter.config.fields import ConfigError
from exporter.config.files import config_files, load_configs
from exporter.config.model import Config, Gate
from exporter.engine import pauses
from exporter.engine.foreground import Foreground
from exporter.engine.metrics import Collector, DefaultRegistry, RuntimeCollector
from exporter.engine.pushes import Evidence, read_tokens
from exporter.engine.scheduler import Scheduler
from exporter.engine.sharding import shard_config
from exporter.engine.supervise import Supervisor
from exporter.log import kv
from exporter.model import Result
from exporter.probes import ProbeContext
from exporter.probes.base import History
from exporter.probes.http import Sessions
from exporter.state.memory import GateState, State

if TYPE_CHECKING:
    from exporter.state.store import Store

log = logging.getLogger("qualitygate")

COMPACT_EVERY = 300.0  # seconds between coarsenings of in-memory uptime buckets
APPLY_BUDGET = 0.001  # seconds: a reload is applied in slices of this much, one per turn of the event loop
STEP_GATES = 100  # gates handled between two slices' time checks (freeing 100 full gate states: ~1 ms)
SCHEDULER, COMPACTION, WATCHER = "scheduler", "compact-uptime", "config-watch"  # supervised task names


class GateView(Protocol):
    """Something that shows the gates (the /metrics exposition): told of each config and each result."""

    def set_trackers(self, trackers: list[tuple[Config, State]]) -> None:
        """The configs now running, with their state (start and every reload)."""
        ...

    def update(self, gate: Gate, st: GateState, uptime_window: float) -> None:
        """A gate's state after an evaluation."""
        ...

    async def settled(self) -> None:
        """Return once the configs last given are the ones shown (a view may build them in slices)."""
        ...


@dataclass
class Runtime:
    """Everything `serve` runs; the web app and signal handlers act on it."""

    config_paths: list[str]
    max_concurrency: int = 128
    trackers: dict[str, Config] = field(default_factory=dict)
    states: dict[str, State] = field(default_factory=dict)
    reload_ok: bool = True
    reload_ok_at: float = 0.0
    store: Store | None = None  # when --storage.path is in use
    shard: tuple[int, int] | None = None  # (index, count): this process evaluates and exports only its shard
    watch_interval: float = 0.0  # > 0: reload by itself when a config file changes (Kubernetes ConfigMaps)
    read_timeouts: Collector | None = None  # exporter.web.listener.ReadTimeouts when serving HTTP
    max_evidence_bytes: int = 32 * 1024 * 1024  # --web.max-evidence-bytes: the evidence endpoint's body limit
    freeze_gc: bool = False  # serve: freeze the cyclic GC's objects once started and after each reload (pauses.py)
    trim_heap: bool = False  # serve: the C heap's free pages go back to the system after a reload (pauses.py)
    switch_interval: float = 0.0  # > 0: the GIL's switch interval from start() on (serve: pauses.SERVE_SWITCH_INTERVAL)

    def __post_init__(self) -> None:
        self.scheduler: Scheduler | None = None
        self.supervisor = Supervisor()
        self.views: list[GateView] = []
        # The exporter's own metrics: what /metrics renders after the gate series.
        self.registry = CollectorRegistry()
        self.registry.register(RuntimeCollector(self))
        self.registry.register(DefaultRegistry())
        self._sessions = Sessions()
        self.foreground = Foreground()  # requests in flight hold the background slices (the listener tells it)
        self._reload_lock = asyncio.Lock()
        self.evidence = Evidence()  # pushed runs per gate: from the store at start, then from accepted pushes
        self._switch_before: float | None = None  # the switch interval start() replaced
        self.whole: dict[str, Config] = {}  # every tracker's whole config (all shards' gates): peers place by it

    def attach(self, view: GateView) -> None:
        """Show the gates in this view too, from now on (it gets the running configs at once)."""
        self.views.append(view)
        view.set_trackers(self._tracked())

    def _tracked(self) -> list[tuple[Config, State]]:
        return [(c, self.states[n]) for n, c in self.trackers.items()]

    # --- start / stop ---------------------------------------------------------------------

    def prepare(self, configs: list[Config]) -> None:
        """Apply the first config (restoring stored state) without evaluating anything yet."""
        self.scheduler = Scheduler(self._make_ctx, self._on_result, self.max_concurrency)
        self.evidence.set_tokens(read_tokens(configs))  # before anything listens: blocking is fine here
        if self.store is not None:  # at start, stored histories load in a thread: /-/ready does not wait
            self.store.defer_histories = True
        self.apply(self._my_part(configs))
        if self.store is not None:
            self.store.defer_histories = False
        self.reload_ok, self.reload_ok_at = True, time.time()
        if self.freeze_gc:  # the config and the restored state live until a reload; nothing listens yet
            pauses.freeze()

    async def start(self, configs: list[Config] | None = None) -> None:
        """Start evaluating (after prepare(), or preparing these configs first)."""
        if configs is not None:
            self.prepare(configs)
        scheduler = self.scheduler
        assert scheduler is not None, "prepare() first"
        self.supervisor.start(SCHEDULER, scheduler.run)
        self.supervisor.start(COMPACTION, self._compact_forever)
        if self.watch_interval > 0:
            self.supervisor.start(WATCHER, self._watch_forever)
        if self.switch_interval > 0:
            self._switch_before = sys.getswitchinterval()
            sys.setswitchinterval(self.switch_interval)
        if self.freeze_gc:  # what came since prepare() (the app, the tasks): a young pass, not a full one
            pauses.freeze(1)

    async def stop(self) -> None:
        """Cancel in-flight probes (their children are killed), close sessions and storage."""
        await self.supervisor.stop()
        if self._switch_before is not None:
            sys.setswitchinterval(self._switch_before)
            self._switch_before = None
        await self._sessions.close()
        if self.store is not None:
            await self.store.close()

    def _fingerprint(self) -> str:
        """A digest of every config file's name and content (a directory's file list included)."""
        digest = hashlib.sha256()
        for path in config_files(self.config_paths):
            digest.update(path.encode() + b"\0")
            try:
                with open(path, "rb") as fh:
                    digest.update(fh.read())
            except OSError as exc:
                digest.update(f"unreadable: {exc}".encode())
        return digest.hexdigest()

    async def _watch_forever(self) -> None:
        # Kubernetes updates a mounted ConfigMap by swapping a symlink: polling the content is
        # the one check that sees it on every filesystem, without inotify or a sidecar.
        seen = await asyncio.to_thread(self._fingerprint)
        while True:
            await asyncio.sleep(self.watch_interval)
            now = await asyncio.to_thread(self._fingerprint)
            if now != seen:
                seen = now
                log.info("config files changed; reloading")
                await self.reload()

    @property
    def healthy(self) -> bool:
        """False while the scheduler, once started, is not running (it died and awaits its restart)."""
        return not self.supervisor.started(SCHEDULER) or self.supervisor.running(SCHEDULER)

    @property
    def ready(self) -> bool:
        """Config loaded and every gate dispatched once."""
        return self.scheduler is not None and self.scheduler.ready

    # --- config ---------------------------------------------------------------------------

    def apply(self, configs: list[Config], stored: dict[str, State] | None = None) -> None:
        """Switch to these configs (this shard's part of them), keeping the state of gates that remain.

        Gates not in memory get their stored state: from `stored` when the caller read it off the
        event loop (reload), else read here (start-up, before anything is served)."""
        for _ in self._apply_steps(configs, stored):
            pass

    async def _apply_sliced(self, configs: list[Config], stored: dict[str, State]) -> None:
        """apply(), in slices of APPLY_BUDGET between which the event loop serves scrapes (a reload of
        10,000 changed gates held it for 50-190 ms at once); the state file is told in a thread."""
        if self.store is not None:
            await asyncio.to_thread(self.store.configured, configs)
        t0 = time.perf_counter()
        for _ in self._apply_steps(configs, stored, tell_store=False):
            if time.perf_counter() - t0 > APPLY_BUDGET:
                await self.foreground.turn()
                t0 = time.perf_counter()

    def _apply_steps(self, configs: list[Config], stored: dict[str, State] | None,
                     tell_store: bool = True) -> Iterator[None]:
        if stored is None:
            stored = self._read_stored(configs)
        new = {c.tracker: c for c in configs}
        for name in list(self.states):
            if name not in new:
                del self.states[name]
        for name in new:
            state = self.states.get(name)
            if state is None:
                state = self.states[name] = State()
            # A gate back after a reload that dropped it (a typo) gets its stored history back.
            for k, (gate_id, st) in enumerate(stored.get(name, State()).gates.items()):
                state.gates.setdefault(gate_id, st)
                if k % STEP_GATES == STEP_GATES - 1:
                    yield
        if tell_store and self.store is not None:
            self.store.configured(configs)
        self.evidence.configure(configs, self.store.evidence if self.store is not None else None)
        self.trackers = new
        yield
        for view in self.views:
            view.set_trackers(self._tracked())
        yield
        assert self.scheduler is not None
        yield from self.scheduler.set_gates_steps(g for c in configs for g in c.gates)
        # Gates no longer configured are forgotten last, once the scheduler has let go of them: a late
        # result of one would otherwise bring its state back (storage keeps them for a grace period).
        for name, config in new.items():
            gates = self.states[name].gates
            keep = {g.id for g in config.gates}
            for k, gate_id in enumerate([g for g in gates if g not in keep]):
                del gates[gate_id]
                if k % STEP_GATES == STEP_GATES - 1:
                    yield

    def _my_part(self, configs: list[Config]) -> list[Config]:
        """The configs as this process evaluates them: its shard's gates only, when sharded."""
        self.whole = {c.tracker: c for c in configs}
        return [shard_config(c, *self.shard) for c in configs] if self.shard is not None else configs

    def _read_stored(self, configs: list[Config]) -> dict[str, State]:
        """Stored state of the gates not in memory yet, per tracker. Reads the state file: on a
        reload this runs in a thread, so that 10,000 new gates do not stall scrapes."""
        out: dict[str, State] = {}
        if self.store is None:
            return out
        for config in configs:
            state = self.states.get(config.tracker)
            missing = [g.id for g in config.gates if state is None or g.id not in state.gates]
            if missing:
                out[config.tracker] = State()
                self.store.restore(config.tracker, out[config.tracker], missing)
        return out

    async def reload(self) -> list[str]:
        """Reload the config files; on any error keep the old config and return the errors."""
        async with self._reload_lock, pauses.reloading(self.freeze_gc) as pause:
            try:
                # serve: a fresh process (a fork would share the big heap)
                configs = await apart.load_sliced(self.config_paths, load_configs, True, APPLY_BUDGET,
                                                  turn=self.foreground.turn)
                tokens = await asyncio.to_thread(read_tokens, configs)
            except ConfigError as exc:
                return self._reload_failed([str(i) for i in exc.issues])
            except Exception as exc:  # whatever a reload meets, the running config stays
                log.exception("config reload raised", extra=kv(stage="load"))
                return self._reload_failed([f"internal error loading the config: {type(exc).__name__}: {exc}"])
            pause.loaded()
            old = list(self.trackers.values())
            try:
                configs = await asyncio.to_thread(self._my_part, configs)
                stored = await asyncio.to_thread(self._read_stored, configs)
                await self._apply_sliced(configs, stored)
                self.evidence.set_tokens(tokens)
            except Exception as exc:  # as above; the old config goes back in place
                log.exception("config reload raised", extra=kv(stage="apply"))
                try:
                    self.apply(old, {})
                except Exception:  # logged; the reload is failed either way
                    log.exception("restoring the running config after a failed reload raised")
                return self._reload_failed([f"internal error applying the config: {type(exc).__name__}: {exc}"])
            for view in self.views:  # "reloaded" once /metrics shows the new config
                await view.settled()
            self.reload_ok, self.reload_ok_at = True, time.time()
            log.info("config reloaded", extra=kv(trackers=len(configs), gates=sum(len(c.gates) for c in configs)))
            return []

    def _reload_failed(self, errors: list[str]) -> list[str]:
        self.reload_ok = False
        log.error("config reload failed; keeping the running config",
                  extra=kv(errors=len(errors), first=errors[0] if errors else ""))
        return errors

    async def _compact_forever(self) -> None:
        """Coarsen and prune in-memory uptime buckets (as the store does on disk), a slice at a time."""
        from exporter.state.store import retention

        while True:
            await asyncio.sleep(COMPACT_EVERY)
            now = time.time()
            for name, config in list(self.trackers.items()):
                state = self.states.get(name)
                if state is None:
                    continue
                keep = retention(config)
                for i, st in enumerate(list(state.gates.values())):
                    st.compact(now, keep)
                    if i % 1000 == 999:
                        await self.foreground.turn()  # 10,000 gates must not stall scrapes

    # --- evaluation -----------------------------------------------------------------------

    def _make_ctx(self, gate: Gate) -> ProbeContext:
        config = self.trackers[gate.tracker]
        return ProbeContext(
            gate_id=gate.id,
            timeout=gate.timeout,
            session=self._sessions,
            prometheus_url=config.prometheus_url,
            history=self.history(gate.tracker),
            uptime_window=config.uptime_window,
            base_dir=config.base_dir,
            evidence=self.evidence.lookup(gate.tracker),
        )

    def history(self, tracker: str) -> History:
        """What uptime and manual gates read: the store when there is one, else memory."""
        if self.store is not None:
            return self.store.history(tracker, self.states[tracker])
        return self.states[tracker]

    def _on_result(self, gate: Gate, result: Result) -> None:
        state = self.states.get(gate.tracker)
        config = self.trackers.get(gate.tracker)
        if state is None or config is None:
            return
        previous = state.get(gate.id).status
        st = state.record(result)
        for view in self.views:
            view.update(gate, st, config.uptime_window)
        if self.store is not None:
            self.store.record(gate.tracker, result)
        if result.outcome != previous:
            level = logging.INFO if result.passed or previous == "pending" else logging.WARNING
            log.log(level, "gate status changed", extra=kv(tracker=gate.tracker, gate=gate.id, tier=gate.tier,
                                                           **{"from": previous, "to": result.outcome},
                                                           message=result.message))
