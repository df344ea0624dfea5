"""Long-lived tasks under one supervisor: one that dies is logged, counted and restarted with backoff.

A task that ends by itself, with an exception or without, has died: every supervised task is meant
to run until the supervisor stops it. The backoff doubles from `initial` up to `maximum` while the
task keeps dying soon after each start, and starts again from `initial` once it has run for
`stable` seconds, so a rare crash is retried quickly and a crash loop does not spin.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Iterable

from exporter.log import kv

log = logging.getLogger("qualitygate.supervisor")

INITIAL_BACKOFF = 0.1  # seconds before the first restart
MAX_BACKOFF = 30.0
STABLE = 60.0  # seconds a task must run for its backoff to start over


class Supervisor:
    """Runs named coroutine factories forever, restarting each one that dies."""

    def __init__(self, initial: float = INITIAL_BACKOFF, maximum: float = MAX_BACKOFF, stable: float = STABLE):
        self._initial, self._maximum, self._stable = initial, maximum, stable
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._running: set[str] = set()  # names whose coroutine runs now (not waiting to restart)
        self.restarts: collections.Counter[str] = collections.Counter()

    def start(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        """Run `factory()` under supervision as task `name` (restarted with a new `factory()` when it dies)."""
        if name in self._tasks:
            raise ValueError(f"task {name!r} is already supervised")
        self.restarts[name] += 0  # the series exists from the start
        self._tasks[name] = asyncio.create_task(self._keep(name, factory), name=f"supervised:{name}")

    def running(self, name: str) -> bool:
        """Whether task `name` runs now (False while it waits to be restarted, or if it was never started)."""
        return name in self._running

    def started(self, name: str) -> bool:
        """Whether task `name` was started (and not stopped)."""
        return name in self._tasks

    @property
    def names(self) -> Iterable[str]:
        """Every supervised task's name."""
        return list(self._tasks)

    async def _keep(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        loop = asyncio.get_running_loop()
        backoff = self._initial
        while True:
            began = loop.time()
            self._running.add(name)
            try:
                await factory()
            except asyncio.CancelledError:
                self._running.discard(name)
                raise
            except Exception:  # the point of a supervisor: log, count, restart
                self._running.discard(name)
                log.exception("task died; restarting", extra=kv(task=name, backoff=backoff))
            else:
                self._running.discard(name)
                log.error("task ended by itself; restarting", extra=kv(task=name, backoff=backoff))
            if loop.time() - began >= self._stable:
                backoff = self._initial
            await asyncio.sleep(backoff)
            backoff = min(self._maximum, backoff * 2)
            self.restarts[name] += 1

    async def stop(self) -> None:
        """Cancel every task and wait for it to end."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._running.clear()
