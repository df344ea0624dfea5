"""`qualitygate report --since DURATION`: what changed over a period, read from a state file."""

from __future__ import annotations

import argparse
import functools
import sys
import time
from typing import TYPE_CHECKING

from exporter.cli.common import EXIT_OK, UsageError, check_output, open_store, write_output
from exporter.config.durations import parse_duration
from exporter.model import ATTESTATION, PUSH, Evidence

if TYPE_CHECKING:
    from exporter.config.model import Config, Gate
    from exporter.state.store import Store

DEFAULT_PATH = "data/qualitygate.db"  # serve's default (exporter.state.store, not imported here: it is heavy)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The report command's flags."""
    p.add_argument("--since", required=True, metavar="DURATION", help="the period, e.g. 7d (at most the "
                   "tracker's uptime_window, 30d by default: the history kept)")
    p.add_argument("--format", default="markdown", choices=["markdown", "html"])
    p.add_argument("-o", dest="out", metavar="OUT", help="write the report here (default: stdout)")
    p.add_argument("--config.file", dest="config_files", action="append", required=True, metavar="FILE")
    p.add_argument("--storage.path", dest="storage", metavar="FILE", default=DEFAULT_PATH,
                   help=f"the state file serve writes (default {DEFAULT_PATH}); opened read-only")
    p.add_argument("--tracker", metavar="NAME", help="the tracker to report on, when several configs are given")


def run(args: argparse.Namespace) -> int:
    """Print (or write) the report of each tracker; exit 0, or 2 with one line on bad input."""
    from exporter.engine.runtime import load_configs
    from exporter.report.period import build
    from exporter.report.periodfmt import age, html, markdown
    from exporter.state.memory import State
    from exporter.state.store import RETENTION_MARGIN, retention

    try:
        since = parse_duration(args.since)
    except ValueError as exc:
        raise UsageError(f"--since: {exc}") from None
    if since <= 0:
        raise UsageError("--since must be longer than 0s")
    if args.out:
        check_output("-o", args.out)  # refused before any work when it can never be written
    configs = load_configs(args.config_files)
    if args.tracker is not None:
        configs = [c for c in configs if c.tracker == args.tracker]
        if not configs:
            raise UsageError(f"--tracker {args.tracker}: no such tracker in the config files")
    if args.format == "html" and len(configs) > 1:
        raise UsageError("--format html writes one tracker's report: add --tracker NAME")
    for config in configs:
        kept = retention(config) - RETENTION_MARGIN
        if since > kept:
            # Beyond the buckets kept, "then" would be guessed from nothing: refused rather than shown wrong.
            raise UsageError(f"--since {args.since}: tracker {config.tracker} keeps {age(kept)} of "
                             "history (its uptime_window): ask for at most that, or raise uptime_window")
    store = open_store(args.storage, read_only=True)
    now = time.time()
    texts = []
    try:
        for config in configs:
            state = State()
            store.restore(config.tracker, state, [g.id for g in config.gates])
            rep = build(config, state, since, now, functools.partial(stored_evidence, store, config))
            texts.append(html(rep) if args.format == "html" else markdown(rep))
    finally:
        store.close_sync()
    text = "\n---\n\n".join(texts)
    if args.out:
        write_output("-o", args.out, text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def stored_evidence(store: Store, config: Config, gate: Gate) -> Evidence | None:
    """The evidence a gate evidenced from outside stands on now, with when it lapses (None for probes)."""
    if gate.kind == "manual":
        atts = store.attestations(config.tracker, gate.id)
        if not atts:
            return None
        a = atts[0]
        return Evidence(ATTESTATION, a.at, by=a.by or None, note=a.note or None, expires_at=a.at + gate.spec.max_age)
    push = getattr(gate.spec, "push", None)
    if push is None:
        return None
    got = store.evidence(config.tracker, gate.id)
    if not got or (push.branch is not None and got[0].branch != push.branch):
        return None
    p = got[0]
    return Evidence(PUSH, p.received_at, commit=p.commit or None, branch=p.branch or None, run_url=p.run_url or None,
                    run_id=p.run_id or None, expires_at=p.received_at + push.max_age, digest=f"sha256:{p.sha256}")
