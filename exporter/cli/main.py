"""The `qualitygate` command: serve, check, validate (and the tracker, attest, schema commands)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from exporter import __version__
from exporter.config.durations import parse_duration
from exporter.config.fields import ConfigError
from exporter.log import kv
from exporter.log import setup as setup_logging

DEFAULT_PORT = 9916
DEFAULT_LISTEN = f":{DEFAULT_PORT}"
EXIT_OK, EXIT_FAILING, EXIT_USAGE = 0, 1, 2

log = logging.getLogger("qualitygate")


class UsageError(Exception):
    """Bad flags or arguments: exit 2 with a one-line message."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qualitygate", description="Quality gates as live Prometheus metrics.")
    parser.add_argument("--version", action="version", version=f"qualitygate-exporter {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    serve = sub.add_parser("serve", help="run the exporter")
    serve.add_argument("--config.file", dest="config_files", action="append", required=True, metavar="FILE",
                       help="tracker config (YAML); repeatable")
    serve.add_argument("--web.listen-address", dest="listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                       help=f"address to listen on (default {DEFAULT_LISTEN})")
    serve.add_argument("--web.config.file", dest="web_config", metavar="FILE",
                       help="exporter-toolkit web config: TLS and basic auth")
    serve.add_argument("--web.enable-lifecycle", dest="lifecycle", action="store_true",
                       help="enable POST /-/reload")
    serve.add_argument("--web.read-timeout", dest="read_timeout", default="10s", metavar="DURATION",
                       help="close a new connection whose request head, or a request whose body, has not "
                            "arrived within this (default 10s; 0s: no limit)")
    serve.add_argument("--web.idle-timeout", dest="idle_timeout", default="5m", metavar="DURATION",
                       help="close a kept-alive connection that sends no complete request for this long "
                            "(default 5m)")
    serve.add_argument("--storage.path", dest="storage", metavar="FILE", default=None,
                       help="SQLite state file (default ./data/qualitygate.db)")
    serve.add_argument("--scheduler.max-concurrency", dest="concurrency", type=int, default=128, metavar="N",
                       help="evaluations running at once (default 128)")
    serve.add_argument("--config.watch-interval", dest="watch_interval", default="0s", metavar="DURATION",
                       help="poll the config files this often and reload when they change (default 0s: off)")
    serve.add_argument("--shard.index", dest="shard_index", type=int, default=None, metavar="I",
                       help="evaluate only shard I of --shard.count (0-based)")
    serve.add_argument("--shard.count", dest="shard_count", type=int, default=None, metavar="N",
                       help="number of shards the gates are spread over")
    _log_flags(serve)

    check = sub.add_parser("check", help="evaluate gates once and exit 0 (all pass), 1 (some fail) or 2")
    check.add_argument("--config.file", dest="config_files", action="append", required=True, metavar="FILE")
    check.add_argument("--tier", dest="tiers", default=None, metavar="TIER[,TIER]",
                       help="tiers to check (default critical,important)")
    check.add_argument("--gate", dest="gates", action="append", default=[], metavar="ID", help="check only this gate")
    check.add_argument("--junit-xml", dest="junit", metavar="OUT")
    check.add_argument("--markdown", dest="markdown", metavar="OUT")
    check.add_argument("--json", dest="json", metavar="OUT")
    check.add_argument("--storage.path", dest="storage", metavar="FILE", default=None,
                       help="read history and attestations from this state file (uptime and manual gates)")
    check.add_argument("--concurrency", type=int, default=32, metavar="N")
    _log_flags(check)

    from exporter.cli.attest import add_arguments as attest_arguments

    attest_arguments(sub.add_parser("attest", help="record an attestation for a manual gate"))

    validate = sub.add_parser("validate", help="check config files and exit 0 or 2")
    validate.add_argument("files", nargs="+", metavar="FILE")

    sub.add_parser("schema", help="print the config's JSON Schema (draft 2020-12)")

    imp = sub.add_parser("import", help="markdown tracker -> config")
    imp.add_argument("tracker_md", metavar="TRACKER.md")
    imp.add_argument("-o", dest="out", metavar="OUT.yml", help="write the config here (default: stdout)")

    render = sub.add_parser("render", help="live status -> markdown tracker")
    render.add_argument("--config.file", dest="config_files", action="append", required=True, metavar="FILE")
    render.add_argument("-o", dest="out", required=True, metavar="OUT.md")
    render.add_argument("--from", dest="from_url", metavar="URL",
                        help="read a running exporter's /api/progress/status instead of evaluating once")
    render.add_argument("--storage.path", dest="storage", metavar="FILE", default=None,
                        help="one-shot evaluation: read history and attestations from this state file")
    render.add_argument("--concurrency", type=int, default=32, metavar="N")
    return parser


def _log_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log.level", dest="log_level", default="info", choices=["debug", "info", "warn", "error"])
    p.add_argument("--log.format", dest="log_format", default="logfmt", choices=["logfmt", "json"])


def parse_listen(address: str) -> tuple[str | None, int]:
    """HOST:PORT (HOST may be empty for every interface, or [v6])."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"invalid --web.listen-address {address!r} (want HOST:PORT)")
    host = host.strip("[]")
    return (host or None), int(port)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"qualitygate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def cmd_validate(args: argparse.Namespace) -> int:
    """Load each file; print every issue as FILE:LINE: key: message."""
    from exporter.engine.runtime import load_configs

    configs = load_configs(list(args.files))
    for c in configs:
        print(f"{c.source}: ok ({len(c.phases)} phases, {len(c.steps)} steps, {len(c.gates)} gates)")
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema generated from the loader's declarations."""
    import json

    from exporter.config.jsonschema import config_schema

    print(json.dumps(config_schema(), indent=2))
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    """Turn a markdown tracker into a config; print what was understood and what was not."""
    from exporter.tracker.importer import TrackerParseError, import_tracker_file

    try:
        result = import_tracker_file(args.tracker_md)
    except OSError as exc:
        raise UsageError(f"{args.tracker_md}: {exc.strerror or exc}") from None
    except TrackerParseError as exc:
        print(f"{args.tracker_md}:{exc.line}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(result.yaml_text)
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

    configs = load_configs(args.config_files)
    parts = []
    store = _open_store(args.storage, read_only=True) if args.storage and not args.from_url else None
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
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.write("\n---\n\n".join(parts))
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """Evaluate once and report."""
    from exporter.cli.check import DEFAULT_TIERS, print_run, run_check, select
    from exporter.config.model import TIERS
    from exporter.engine.runtime import load_configs

    setup_logging(args.log_level, args.log_format)
    tiers = tuple(t.strip() for t in args.tiers.split(",")) if args.tiers else DEFAULT_TIERS
    bad = [t for t in tiers if t not in TIERS]
    if bad:
        raise UsageError(f"unknown tier {bad[0]!r} (one of {', '.join(TIERS)})")
    configs = load_configs(args.config_files)
    known = {g.id for c in configs for g in c.gates}
    unknown = [g for g in args.gates if g not in known]
    if unknown:
        raise UsageError(f"unknown gate {unknown[0]!r}")
    store = _open_store(args.storage, read_only=True) if args.storage else None
    ok = True
    runs = []
    for config in configs:
        chosen = select(config, tiers, tuple(args.gates))
        history = store.history(config.tracker, None) if store else None
        run = asyncio.run(run_check(chosen, args.concurrency, history))
        print_run(run, sys.stdout, color=sys.stdout.isatty())
        ok &= run.ok
        runs.append(run)
    if args.junit or args.markdown or args.json:
        _write_reports(runs, args)
    return EXIT_OK if ok else EXIT_FAILING


def _write_reports(runs: list[Any], args: argparse.Namespace) -> None:
    from exporter.report.ci import write_reports

    status = runs[0].status() if len(runs) == 1 else {"trackers": [r.status() for r in runs]}
    write_reports(status, junit_path=args.junit, markdown_path=args.markdown, json_path=args.json)


def _open_store(path: str, read_only: bool = False) -> Any:
    from exporter.state.store import StorageError, open_store

    try:
        return open_store(path, read_only=read_only)
    except StorageError as exc:
        raise UsageError(str(exc)) from None


def cmd_attest(args: argparse.Namespace) -> int:
    """Record an attestation for a manual gate (through a running exporter, or in the state file)."""
    from exporter.cli.attest import run

    return run(args)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the exporter until SIGTERM/SIGINT; SIGHUP reloads."""
    from exporter.engine.runtime import load_configs

    setup_logging(args.log_level, args.log_format)
    host, port = parse_listen(args.listen)
    configs = load_configs(args.config_files)
    if args.concurrency < 1:
        raise UsageError("--scheduler.max-concurrency must be at least 1")
    try:
        args.watch_seconds = parse_duration(args.watch_interval)
    except ValueError as exc:
        raise UsageError(f"--config.watch-interval: {exc}") from None
    for flag, attr in (("--web.read-timeout", "read_timeout"), ("--web.idle-timeout", "idle_timeout")):
        try:
            setattr(args, attr + "_seconds", parse_duration(getattr(args, attr)))
        except ValueError as exc:
            raise UsageError(f"{flag}: {exc}") from None
    if args.idle_timeout_seconds <= 0:
        raise UsageError("--web.idle-timeout must be more than 0s")
    if (args.shard_index is None) != (args.shard_count is None):
        raise UsageError("--shard.index and --shard.count go together")
    if args.shard_count is not None and not (args.shard_count >= 1 and 0 <= args.shard_index < args.shard_count):
        raise UsageError(f"--shard.index must be in 0..{args.shard_count - 1} and --shard.count at least 1")
    web_options = _web_options(args)
    return asyncio.run(_serve(args, configs, host, port, web_options))


def _web_options(args: argparse.Namespace) -> dict[str, Any]:
    """TLS context and auth middleware from --web.config.file (exit 2 on a bad file)."""
    if not args.web_config:
        return {"ssl": None, "middlewares": []}
    from exporter.web.webconfig import load_web_config

    wc = load_web_config(args.web_config)
    return {"ssl": wc.ssl_context(), "middlewares": wc.middlewares()}


async def _serve(args: argparse.Namespace, configs: list[Any], host: str | None, port: int,
                 web_options: dict[str, Any]) -> int:
    from aiohttp import web

    from exporter.engine.runtime import Runtime
    from exporter.web.app import make_app
    from exporter.web.listener import LINGERING_SECONDS, ReadTimeouts, body_deadline, listen

    shard = (args.shard_index, args.shard_count) if args.shard_count is not None else None
    runtime = Runtime(list(args.config_files), max_concurrency=args.concurrency, shard=shard,
                      watch_interval=args.watch_seconds)
    runtime.store = _maybe_store(args)
    # Restore state first, listen next, evaluate last: gates that probe this exporter itself
    # (the example tracker's do) must find it listening on their first run.
    runtime.prepare(configs)
    timeouts = runtime.read_timeouts = ReadTimeouts()
    # The body deadline goes after the auth middleware: a stranger's body is never waited for.
    middlewares = [*web_options["middlewares"], body_deadline(args.read_timeout_seconds, timeouts)]
    app = make_app(runtime, lifecycle=args.lifecycle, middlewares=middlewares)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=args.idle_timeout_seconds,
                           lingering_time=LINGERING_SECONDS)
    await runner.setup()
    try:
        listener = await listen(runner, host, port, ssl_context=web_options["ssl"],
                                read_timeout=args.read_timeout_seconds, counts=timeouts)
    except OSError as exc:
        await runtime.stop()
        await runner.cleanup()
        raise UsageError(f"cannot listen on {args.listen}: {exc.strerror or exc}") from None
    await runtime.start()
    log.info("listening", extra=kv(address=args.listen, gates=sum(len(c.gates) for c in configs),
                                   tls=web_options["ssl"] is not None, version=__version__))

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reloads: set[asyncio.Task[Any]] = set()

    def on_hup() -> None:
        task = loop.create_task(runtime.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        log.info("shutting down")
    finally:
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        listener.close()  # stop accepting; runner.cleanup() then ends the open connections
        await runner.cleanup()
        await runtime.stop()
    return EXIT_OK


def _maybe_store(args: argparse.Namespace) -> Any:
    from exporter.state.store import DEFAULT_PATH

    if args.storage == "":
        log.info("state kept in memory only (--storage.path ''): restarts forget history, manual gates cannot pass")
        return None
    return _open_store(args.storage or DEFAULT_PATH)


COMMANDS = {"serve": cmd_serve, "check": cmd_check, "validate": cmd_validate, "schema": cmd_schema,
            "attest": cmd_attest, "import": cmd_import, "render": cmd_render}
