"""`qualitygate render --in-place TRACKER.md` and `render --check TRACKER.md`: the team's own document."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from typing import Any

from exporter.cli.common import EXIT_FAILING, EXIT_OK, EXIT_USAGE, UsageError, open_store, os_reason


def cmd_render_document(args: argparse.Namespace) -> int:
    """Rewrite (--in-place) or check (--check) the claims of a tracker document against the evidence."""
    from exporter.engine.runtime import load_configs
    from exporter.tracker.claims import NotImported
    from exporter.tracker.evidencenote import page_base
    from exporter.tracker.importer import TrackerParseError, read_tracker
    from exporter.tracker.inplace import rewrite

    path = args.document
    flag = "--in-place" if args.in_place else "--check"
    if not (args.in_place or args.check):
        raise UsageError(f"{path}: a tracker document goes with --in-place or --check (-o writes a new document)")
    if not path:
        raise UsageError(f"{flag} needs the tracker document: qualitygate render {flag} TRACKER.md --config.file F")
    if len(args.config_files) != 1:
        raise UsageError(f"{flag} takes exactly one --config.file "
                         "(the config imported from this document)")
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    try:
        text = read_tracker(path)
    except OSError as exc:
        raise UsageError(f"{path}: {os_reason(exc)}") from None
    except TrackerParseError as exc:
        print(f"{path}:{exc.line}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    config = load_configs(args.config_files)[0]
    status = _status(args, config)
    try:
        out = rewrite(text, config, status, path, page_base(args.from_url))
    except TrackerParseError as exc:
        print(f"{path}:{exc.line}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except NotImported as exc:
        raise UsageError(f"{path}: {exc}") from None
    for file, line, message in out.warnings:
        print(f"{file}:{line}: {message}", file=sys.stderr)
    if args.check:
        for line, message in out.false_claims:
            print(f"{path}:{line}: {message}")
        if out.repaired:
            print(f"{path}: {len(out.repaired)} lines are mojibake (UTF-8 encoded twice); "
                  "`render --in-place` writes them repaired", file=sys.stderr)
        if out.false_claims:
            print(f"{path}: {len(out.false_claims)} claims the evidence does not bear out "
                  f"(`qualitygate render --in-place {path}` rewrites them)", file=sys.stderr)
            return EXIT_FAILING
        print(f"{path}: every claim is borne out by the evidence ({len(config.gates)} gates)", file=sys.stderr)
        return EXIT_OK
    if not out.changed:
        print(f"{path}: unchanged: every claim already matches the evidence")
        return EXIT_OK
    _write(path, out.text)
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(out.rewritten.items()))
    print(f"{path}: {len(out.changed)} lines rewritten" + (f" ({kinds})" if kinds else "")
          + f"; {len(out.false_claims)} claims were not borne out by the evidence")
    if out.repaired:
        print(f"{path}: repaired mojibake (text that was UTF-8 encoded twice) on {len(out.repaired)} lines")
    return EXIT_OK


def _status(args: argparse.Namespace, config: Any) -> dict[str, Any]:
    if args.from_url:
        from exporter.tracker.fetch import FetchError, fetch_status

        try:
            doc = fetch_status(args.from_url, tracker=config.tracker, timeout=10)
        except FetchError as exc:
            raise UsageError(str(exc)) from None
        if "gates" not in doc:
            raise UsageError(f"{args.from_url} serves no tracker {config.tracker!r}")
        return doc
    from exporter.cli.check import run_check

    store = open_store(args.storage, read_only=True) if args.storage else None
    history = store.history(config.tracker, None) if store else None
    return dict(asyncio.run(run_check(config, args.concurrency, history)).status())


def _write(path: str, text: str) -> None:
    """Replace the document atomically, keeping its permissions: a crash never leaves half a tracker."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        mode = os.stat(path).st_mode & 0o7777
        fd, tmp = tempfile.mkstemp(prefix=".qualitygate-", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        raise UsageError(f"--in-place {path}: cannot write: {os_reason(exc)}") from None
