"""`qualitygate import` (markdown tracker -> config) and `qualitygate render` (live status -> markdown)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from exporter.cli.common import EXIT_OK, EXIT_USAGE, UsageError, check_output, open_store, os_reason, write_output


def cmd_import(args: argparse.Namespace) -> int:
    """Turn a markdown tracker into a config; print what was understood and what was not."""
    from exporter.tracker.importer import TrackerParseError, import_tracker_file

    if args.out:
        check_output("-o", args.out)
    try:
        result = import_tracker_file(args.tracker_md)
    except OSError as exc:
        raise UsageError(f"{args.tracker_md}: {os_reason(exc)}") from None
    except TrackerParseError as exc:
        print(f"{args.tracker_md}:{exc.line}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    if args.out:
        write_output("-o", args.out, result.yaml_text)
    else:
        sys.stdout.write(result.yaml_text)
    summary = sys.stderr if not args.out else sys.stdout
    for line in result.summary_lines():
        print(line, file=summary)
    return EXIT_OK


def cmd_render(args: argparse.Namespace) -> int:
    """Write a markdown tracker whose every checkbox comes from a real evaluation."""
    from exporter.cli.check import run_check
    from exporter.engine.runtime import load_configs
    from exporter.tracker.render import render_markdown

    if args.in_place or args.check or args.document:
        from exporter.cli.trackerdoc import cmd_render_document

        return cmd_render_document(args)
    check_output("-o", args.out)
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    configs = load_configs(args.config_files)
    parts = []
    store = open_store(args.storage, read_only=True) if args.storage and not args.from_url else None
    for config in configs:
        if args.from_url:
            from exporter.tracker.fetch import FetchError, fetch_status

            try:
                status = fetch_status(args.from_url, tracker=config.tracker, timeout=10)
            except FetchError as exc:
                raise UsageError(str(exc)) from None
            source = args.from_url
        else:
            history = store.history(config.tracker, None) if store else None
            status = asyncio.run(run_check(config, args.concurrency, history)).status()
            source = "a one-shot evaluation"
        parts.append(render_markdown(status, source=source, config=config))
    write_output("-o", args.out, "\n---\n\n".join(parts))
    return EXIT_OK
