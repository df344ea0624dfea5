"""The running exporter: current config, per-tracker state, scheduler and exposition, and reloads."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from exporter.config.fields import ConfigError, Issue
from exporter.config.model import Config, Gate, load_config
from exporter.engine.scheduler import Scheduler
from exporter.engine.sharding import shard_config
from exporter.exposition.gates import Exposition, Family, build_info_lines, simple
from exporter.log import kv
from exporter.model import Result
from exporter.probes import ProbeContext
from exporter.probes.http import Sessions
from exporter.state.memory import State

log = logging.getLogger("qualitygate")

COMPACT_EVERY = 300.0  # seconds between coarsenings of in-memory uptime buckets


def config_files(paths: list[str]) -> list[str]:
    """Expand --config.file arguments: a directory stands for every *.yml / *.yaml in it, sorted."""
    out: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            out += sorted(os.path.join(path, n) for n in os.listdir(path)
                          if n.endswith((".yml", ".yaml")) and not n.startswith("."))
        else:
            out.append(path)
    return out


def load_configs(paths: list[str]) -> list[Config]:
    """Load every config file (one tracker each); raise one ConfigError with all issues of all files."""
    configs, issues = [], []
    seen: dict[str, Config] = {}
    files = config_files(paths)
    if not files:
        raise ConfigError([Issue(paths[0] if paths else "<none>", 1, "", "no *.yml or *.yaml config files found")])
    for path in files:
        try:
            config = load_config(path)
        except ConfigError as exc:
            issues.extend(exc.issues)
            continue
        first = seen.get(config.tracker)
        if first is not None:
            also = f"{first.source}:{first.tracker_line}"
            issues.append(Issue(path, config.tracker_line, "tracker",
                                f"duplicate tracker name {config.tracker!r} (also in {also})"))
            continue
        seen[config.tracker] = config
        configs.append(config)
    if issues:
        raise ConfigError(issues)
    return configs


@dataclass
class Runtime:
    """Everything `serve` runs; the web app and signal handlers act on it."""

    config_paths: list[str]
    max_concurrency: int = 128
    trackers: dict[str, Config] = field(default_factory=dict)
    states: dict[str, State] = field(default_factory=dict)
    reload_ok: bool = True
    reload_ok_at: float = 0.0
    store: Any = None  # exporter.state.store.Store when --storage.path is in use
    shard: tuple[int, int] | None = None  # (index, count): this process evaluates and exports only its shard
    watch_interval: float = 0.0  # > 0: reload by itself when a config file changes (Kubernetes ConfigMaps)
    read_timeouts: Any = None  # exporter.web.listener.ReadTimeouts when serving HTTP

    def __post_init__(self) -> None:
        self.exposition = Exposition(extra=self._self_metrics)
        self.scheduler: Scheduler | None = None
        self._sessions = Sessions()
        self._task: asyncio.Task[None] | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._reload_lock = asyncio.Lock()

    # --- start / stop ---------------------------------------------------------------------

    def prepare(self, configs: list[Config]) -> None:
        """Apply the first config (restoring stored state) without evaluating anything yet."""
        self.scheduler = Scheduler(self._make_ctx, self._on_result, self.max_concurrency)
        self.apply(self._my_part(configs))
        self.reload_ok, self.reload_ok_at = True, time.time()

    async def start(self, configs: list[Config] | None = None) -> None:
        """Start evaluating (after prepare(), or preparing these configs first)."""
        if configs is not None:
            self.prepare(configs)
        assert self.scheduler is not None, "prepare() first"
        self._task = asyncio.create_task(self.scheduler.run(), name="scheduler")
        self._housekeeping = asyncio.create_task(self._compact_forever(), name="compact-uptime")
        if self.watch_interval > 0:
            self._watcher = asyncio.create_task(self._watch_forever(), name="config-watch")

    async def stop(self) -> None:
        """Cancel in-flight probes (their children are killed), close sessions and storage."""
        for task in (self._task, self._housekeeping, self._watcher):
            if task:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
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
    def ready(self) -> bool:
        """Config loaded and every gate dispatched once."""
        return self.scheduler is not None and self.scheduler.ready

    # --- config ---------------------------------------------------------------------------

    def apply(self, configs: list[Config], stored: dict[str, State] | None = None) -> None:
        """Switch to these configs (this shard's part of them), keeping the state of gates that remain.

        Gates not in memory get their stored state: from `stored` when the caller read it off the
        event loop (reload), else read here (start-up, before anything is served)."""
        if stored is None:
            stored = self._read_stored(configs)
        new = {c.tracker: c for c in configs}
        for name in list(self.states):
            if name not in new:
                del self.states[name]
        for name, config in new.items():
            state = self.states.get(name)
            if state is None:
                state = self.states[name] = State()
            # A gate back after a reload that dropped it (a typo) gets its stored history back.
            for gate_id, st in stored.get(name, State()).gates.items():
                state.gates.setdefault(gate_id, st)
            state.retain(g.id for g in config.gates)
        if self.store is not None:
            self.store.configured(configs)
        self.trackers = new
        self.exposition.set_trackers([(c, self.states[n]) for n, c in new.items()])
        assert self.scheduler is not None
        self.scheduler.set_gates(g for c in configs for g in c.gates)

    def _my_part(self, configs: list[Config]) -> list[Config]:
        """The configs as this process evaluates them: its shard's gates only, when sharded."""
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
        """Reload the config files; on error keep the old config and return the errors."""
        async with self._reload_lock:
            try:
                configs = await asyncio.to_thread(load_configs, self.config_paths)
            except ConfigError as exc:
                self.reload_ok = False
                errors = [str(i) for i in exc.issues]
                log.error("config reload failed; keeping the running config",
                          extra=kv(errors=len(errors), first=errors[0] if errors else ""))
                return errors
            configs = await asyncio.to_thread(self._my_part, configs)
            stored = await asyncio.to_thread(self._read_stored, configs)
            self.apply(configs, stored)
            self.reload_ok, self.reload_ok_at = True, time.time()
            log.info("config reloaded", extra=kv(trackers=len(configs), gates=sum(len(c.gates) for c in configs)))
            return []

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
                        await asyncio.sleep(0)  # 10,000 gates must not stall scrapes

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
        )

    def history(self, tracker: str) -> Any:
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
        self.exposition.update(gate, st, config.uptime_window)
        if self.store is not None:
            self.store.record(gate.tracker, result)
        if result.outcome != previous:
            level = logging.INFO if result.passed or previous == "pending" else logging.WARNING
            log.log(level, "gate status changed", extra=kv(tracker=gate.tracker, gate=gate.id, tier=gate.tier,
                                                           **{"from": previous, "to": result.outcome},
                                                           message=result.message))

    # --- self metrics ---------------------------------------------------------------------

    def _self_metrics(self, om: bool) -> list[str]:
        s = self.scheduler
        out = build_info_lines(om)
        out += simple("qualitygate_config_last_reload_successful", "gauge",
                      "1 if the last config (re)load succeeded.", 1.0 if self.reload_ok else 0.0, om)
        out += simple("qualitygate_config_last_reload_success_timestamp_seconds", "gauge",
                      "When the config was last loaded successfully (Unix time).", self.reload_ok_at, om)
        if s is not None:
            out += simple("qualitygate_scheduler_lag_seconds", "gauge",
                          "p99 of schedule lag (evaluation start minus due time) over the last minute.",
                          s.lag_quantile(0.99), om)
            out += simple("qualitygate_evaluations_skipped_total", "counter",
                          "Evaluations not started because the previous one was still running or the "
                          "scheduler fell behind.", s.skipped, om)
            out += simple("qualitygate_evaluations_in_flight", "gauge", "Evaluations running now.", s.in_flight, om)
        out += simple("qualitygate_scrape_duration_seconds", "gauge",
                      "How long rendering the previous /metrics answer took.", self.exposition.last_render_seconds, om)
        if self.shard is not None:
            index, count = self.shard
            info = Family("qualitygate_shard_info", "gauge", "The shard this exporter evaluates; always 1.")
            out += [info.header(om), f'qualitygate_shard_info{{index="{index}",count="{count}"}} 1.0\n']
        if self.read_timeouts is not None:
            out += self.read_timeouts.metric_lines(om)
        if self.store is not None:
            out += self.store.metric_lines(om)
        return out
