"""The `qualitygate` command: argument parsing and dispatch to each command's module.

Every failure a user can cause ends in one line on stderr and exit 2 (exit 1 means "gates failing");
anything unexpected too, with its traceback only at --log.level debug.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from exporter import __version__
from exporter.cli.common import EXIT_OK, EXIT_USAGE, UsageError, os_reason
from exporter.cli.serve import DEFAULT_LISTEN
from exporter.config.fields import ConfigError

__all__ = ["EXIT_OK", "EXIT_USAGE", "UsageError", "main"]

Command = Callable[[argparse.Namespace], int]


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
    serve.add_argument("--web.max-evidence-bytes", dest="max_evidence", default="32MiB", metavar="SIZE",
                       help="largest report POST /api/gates/ID/evidence accepts (default 32MiB; other "
                            "requests stay limited to 64KiB)")
    serve.add_argument("--web.external-url", dest="external_url", default=None, metavar="URL",
                       help="the URL people reach the exporter at (behind a proxy), for the alerts' links to gate "
                            "pages; exported as qualitygate_web_info{external_url}")
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
    serve.add_argument("--shard.peers", dest="shard_peers", default=None, metavar="URL_TEMPLATE",
                       help="every shard's URL, {index} standing for its index (e.g. "
                            "http://qualitygate-{index}.qualitygate:9916): any shard then takes writes for any gate "
                            "and answers reads for whole trackers")
    serve.add_argument("--shard.secret-file", dest="shard_secret_file", default=None, metavar="FILE",
                       help="a secret shared by every shard (at least 16 bytes), keying the signature of requests "
                            "between shards; required with --shard.peers")
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
    check.add_argument("--from", dest="from_url", metavar="URL",
                       help="judge manual, uptime and push-sourced gates as the running exporter at URL does")
    check.add_argument("--concurrency", type=int, default=32, metavar="N")
    _log_flags(check)

    from exporter.cli.attest import add_arguments as attest_arguments

    attest_arguments(sub.add_parser("attest", help="record an attestation for a manual gate"))

    from exporter.cli.push import add_arguments as push_arguments

    push_arguments(sub.add_parser("push", help="push a CI report to a running exporter; exit 0 pass, 1 not, 2 error"))

    from exporter.cli.report import add_arguments as report_arguments

    report_arguments(sub.add_parser("report", help="what changed over a period (--since 7d), from the state file"))

    validate = sub.add_parser("validate", help="check config files and exit 0 or 2")
    validate.add_argument("files", nargs="+", metavar="FILE")

    sub.add_parser("schema", help="print the config's JSON Schema (draft 2020-12)")

    imp = sub.add_parser("import", help="markdown tracker -> config")
    imp.add_argument("tracker_md", metavar="TRACKER.md")
    imp.add_argument("-o", dest="out", metavar="OUT.yml", help="write the config here (default: stdout)")

    render = sub.add_parser("render", help="live status -> markdown tracker")
    render.add_argument("--config.file", dest="config_files", action="append", required=True, metavar="FILE")
    where = render.add_mutually_exclusive_group(required=True)  # exactly one of -o, --in-place, --check
    where.add_argument("-o", dest="out", metavar="OUT.md")
    where.add_argument("--in-place", action="store_true",
                       help="rewrite only the claims of TRACKER.md (the document the config was imported from)")
    where.add_argument("--check", action="store_true",
                       help="write nothing; exit 1 naming each claim of TRACKER.md the evidence does not bear out")
    render.add_argument("document", nargs="?", metavar="TRACKER.md", help="the document of --in-place and --check")
    render.add_argument("--from", dest="from_url", metavar="URL",
                        help="read a running exporter's /api/progress/status instead of evaluating once")
    render.add_argument("--storage.path", dest="storage", metavar="FILE", default=None,
                        help="one-shot evaluation: read history and attestations from this state file")
    render.add_argument("--concurrency", type=int, default=32, metavar="N")
    return parser


def _log_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log.level", dest="log_level", default="info", choices=["debug", "info", "warn", "error"])
    p.add_argument("--log.format", dest="log_format", default="logfmt", choices=["logfmt", "json"])


def _commands() -> dict[str, Command]:
    """Each command's implementation, imported only when needed (`validate` never loads aiohttp)."""
    from exporter.cli.check import cmd_check
    from exporter.cli.serve import cmd_serve
    from exporter.cli.tracker import cmd_import, cmd_render
    from exporter.cli.validate import cmd_schema, cmd_validate

    return {"serve": cmd_serve, "check": cmd_check, "validate": cmd_validate, "schema": cmd_schema,
            "attest": _attest, "push": _push, "import": cmd_import, "render": cmd_render, "report": _report}


def _attest(args: argparse.Namespace) -> int:
    """Record an attestation for a manual gate (through a running exporter, or in the state file)."""
    from exporter.cli.attest import run

    return run(args)


def _report(args: argparse.Namespace) -> int:
    """What changed over a period, from the stored history."""
    from exporter.cli.report import run

    return run(args)


def _push(args: argparse.Namespace) -> int:
    """Push a CI report to a running exporter and print its judgement."""
    from exporter.cli.push import run

    return run(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = argparse.Namespace(command=None)
    try:
        args = _parser().parse_args(argv)
        return _commands()[args.command](args)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"qualitygate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # stdout's reader went away (`qualitygate schema | head -1`): nobody is left to tell
        _silence_stdout()
        return EXIT_USAGE
    except OSError as exc:
        # An input or output no command foresaw: the path and the system's reason, on one line.
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{_prog(args)}: {where}{os_reason(exc)}", file=sys.stderr)
        _debug_traceback(args)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - the last guard: one line and exit 2, never a traceback and exit 1
        print(f"{_prog(args)}: internal error: {type(exc).__name__}: {_one_line(exc)}"
              f"{'' if _debugging(args) else ' (--log.level debug shows the traceback)'}", file=sys.stderr)
        _debug_traceback(args)
        return EXIT_USAGE


def _prog(args: argparse.Namespace) -> str:
    return f"qualitygate {args.command}" if args.command else "qualitygate"


def _debugging(args: argparse.Namespace) -> bool:
    return getattr(args, "log_level", None) == "debug"


def _debug_traceback(args: argparse.Namespace) -> None:
    if _debugging(args):
        traceback.print_exc(file=sys.stderr)


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
