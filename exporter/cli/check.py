"""`qualitygate check`: evaluate the selected gates once, concurrently, and report for CI."""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from typing import Any, TextIO

from exporter.cli.common import EXIT_FAILING, EXIT_OK, UsageError, check_output, open_store, os_reason
from exporter.config import units
from exporter.config.durations import format_duration
from exporter.config.model import TIERS, Config, Gate
from exporter.engine.evaluate import evaluate
from exporter.log import setup as setup_logging
from exporter.model import PASS, Result
from exporter.probes import ProbeContext
from exporter.probes.base import History
from exporter.probes.http import Sessions
from exporter.report.status import BLOCKING_TIERS, progress_status
from exporter.state.memory import State

DEFAULT_TIERS = BLOCKING_TIERS  # what fails a build is what blocks a release
# Gates that read history are evaluated after the others, so they see this run's results too.
_SECOND_PASS = ("uptime", "manual")


@dataclass
class CheckRun:
    """The outcome of one check run over one tracker."""

    config: Config  # restricted to the selected gates
    state: State
    results: list[Result]

    @property
    def ok(self) -> bool:
        """Every selected gate passed."""
        return all(r.outcome == PASS for r in self.results)

    def status(self) -> dict[str, Any]:
        """The same document as /api/progress/status, for the selected gates."""
        return progress_status(self.config, self.state)


def select(config: Config, tiers: tuple[str, ...], gate_ids: tuple[str, ...]) -> Config:
    """The config restricted to gates of the tiers (or named by id); empty steps and phases dropped."""
    return config.restrict(lambda g: g.id in gate_ids if gate_ids else g.tier in tiers)


async def run_check(config: Config, concurrency: int = 32, history: History | None = None,
                    given: dict[str, Result] | None = None) -> CheckRun:
    """Evaluate every gate of the config once (those in `given` are not probed: check --from)."""
    state = State()
    sem = asyncio.Semaphore(concurrency)
    sessions = Sessions()

    async def one(gate: Gate) -> Result:
        if given and gate.id in given:
            state.record(given[gate.id])
            return given[gate.id]
        ctx = ProbeContext(gate_id=gate.id, timeout=gate.timeout, session=sessions,
                           prometheus_url=config.prometheus_url, history=history or None,
                           uptime_window=config.uptime_window, base_dir=config.base_dir)
        async with sem:
            result = await evaluate(gate, ctx)
        state.record(result)
        return result

    try:
        first = [g for g in config.gates if g.kind not in _SECOND_PASS]
        second = [g for g in config.gates if g.kind in _SECOND_PASS]
        results = list(await asyncio.gather(*(one(g) for g in first)))
        results += await asyncio.gather(*(one(g) for g in second))
    finally:
        await sessions.close()
    order = {g.id: i for i, g in enumerate(config.gates)}
    results.sort(key=lambda r: order[r.gate])
    return CheckRun(config, state, results)


def describe(gate: Gate, result: Result) -> str:
    """What was measured against the expectation, in the formatter's words (exporter.config.units).

    A failure's message already is that sentence (`coverage 71.4 % is below 85 %`); a pass says
    each condition in its pass form; a gate judged by its kind's default shows its value.
    """
    if result.outcome != PASS and result.message:
        return result.message
    said = units.verdict(gate, result.measurements) if result.outcome == PASS else ""
    if said:
        return said
    if result.value is not None:
        return f"{units.name_of(gate.kind, 'value')} {units.value_text(gate, result.value)}"
    return "expect " + " and ".join(gate.expect_text) if gate.expect else ""


def print_run(run: CheckRun, out: TextIO, color: bool = False) -> None:
    """One line per gate (status, id, value vs expectation, duration), then a summary."""
    paint = {"pass": "\033[32m", "fail": "\033[31m", "error": "\033[33m"} if color else {}
    reset = "\033[0m" if color else ""
    width = max((len(g.id) for g in run.config.gates), default=10)
    for result in run.results:
        gate = run.config.gate(result.gate)
        assert gate is not None
        word = f"{paint.get(result.outcome, '')}{result.outcome.upper():<5}{reset}"
        ms = f"{result.duration * 1000:.0f}ms" if result.duration < 10 else format_duration(round(result.duration))
        out.write(f"{word} {gate.tier:<11} {gate.id:<{width}}  {describe(gate, result)}  [{ms}]\n")
    counts = {o: sum(r.outcome == o for r in run.results) for o in ("pass", "fail", "error")}
    total = len(run.results)
    out.write(f"\n{run.config.tracker}: {counts['pass']}/{total} gates passed, {counts['fail']} failed, "
              f"{counts['error']} errors\n")


REPORT_FLAGS = (("--junit-xml", "junit"), ("--markdown", "markdown"), ("--json", "json"))


def cmd_check(args: argparse.Namespace) -> int:
    """Evaluate once and report: exit 0 every selected gate passed, 1 some did not, 2 usage."""
    from exporter.engine.runtime import load_configs

    setup_logging(args.log_level, args.log_format)
    tiers = tuple(t.strip() for t in args.tiers.split(",")) if args.tiers else DEFAULT_TIERS
    bad = [t for t in tiers if t not in TIERS]
    if bad:
        raise UsageError(f"unknown tier {bad[0]!r} (one of {', '.join(TIERS)})")
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    # Refused before evaluating: a report that cannot be written must not cost a whole run first.
    for flag, attr in REPORT_FLAGS:
        if getattr(args, attr):
            check_output(flag, getattr(args, attr))
    configs = load_configs(args.config_files)
    known = {g.id for c in configs for g in c.gates}
    unknown = [g for g in args.gates if g not in known]
    if unknown:
        raise UsageError(f"unknown gate {unknown[0]!r}")
    store = open_store(args.storage, read_only=True) if args.storage else None
    ok = True
    runs = []
    for config in configs:
        chosen = select(config, tiers, tuple(args.gates))
        history = store.history(config.tracker, None) if store else None
        given = _remote(chosen, args.from_url) if getattr(args, "from_url", None) else None
        run = asyncio.run(run_check(chosen, args.concurrency, history, given))
        print_run(run, sys.stdout, color=sys.stdout.isatty())
        ok &= run.ok
        runs.append(run)
    if args.junit or args.markdown or args.json:
        write_check_reports(runs, args)
    return EXIT_OK if ok else EXIT_FAILING


def _remote(config: Config, url: str) -> dict[str, Result]:
    """check --from: manual, uptime and pushed gates as the exporter at `url` judges them."""
    from exporter.cli.checkfrom import remote_results
    from exporter.tracker.fetch import FetchError

    try:
        return remote_results(config, url)
    except FetchError as exc:
        raise UsageError(f"--from: {exc}") from None


def write_check_reports(runs: list[CheckRun], args: argparse.Namespace) -> None:
    """The requested CI reports of the runs (one tracker's document, or every tracker's)."""
    from exporter.report.ci import ReportWriteError, write_reports

    status = runs[0].status() if len(runs) == 1 else {"trackers": [r.status() for r in runs]}
    try:
        write_reports(status, junit_path=args.junit, markdown_path=args.markdown, json_path=args.json)
    except ReportWriteError as exc:
        flag = next((f for f, attr in REPORT_FLAGS if getattr(args, attr) == exc.path), "report")
        raise UsageError(f"{flag} {exc.path}: cannot write: {os_reason(exc.error)}") from None
