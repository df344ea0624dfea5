"""`qualitygate attest`: record an attestation through a running exporter (`--url`) or straight into its state file.

Every failure is one line on stderr and exit 2; the value is printed as it was understood.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import math
import os
import re
import stat
import sys
import time
from typing import Any

from exporter.cli.common import json_object
from exporter.state.attestation import (
    MAX_BY,
    MAX_NOTE,
    AttestationError,
    check_text,
    manual_gate,
    parse_value,
    understand,
    understood_text,
)

PASSWORD_ENV = "QUALITYGATE_PASSWORD"
_ID = re.compile(r"[a-z0-9][a-z0-9_.-]*", re.ASCII)  # config.ID_RE, copied: the HTTP client must not load the config
EXIT_OK, EXIT_USAGE = 0, 2
WRITE_WAIT = 30.0  # seconds to wait for the state file's writer


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The `attest` subcommand's flags."""
    p.add_argument("gate", metavar="GATE", help="id of a manual gate")
    p.add_argument("--value", required=True, metavar="V",
                   help="as expect writes numbers: 12, 95%%, 350ms, 2h, true or false")
    p.add_argument("--note", default="", metavar="TEXT", help="why, a link to the evidence")
    p.add_argument("--by", default=None, metavar="NAME",
                   help="who attests (a running exporter with basic auth records the authenticated user instead)")
    p.add_argument("--url", default=None, metavar="URL", help="a running exporter, e.g. http://localhost:9916")
    p.add_argument("--storage.path", dest="storage", default=None, metavar="FILE",
                   help="write this state file directly (with --config.file; not with --url)")
    p.add_argument("--config.file", dest="config_files", action="append", default=[], metavar="FILE",
                   help="tracker config, to check the gate is manual before writing the state file; repeatable")
    p.add_argument("--tracker", default=None, metavar="NAME", help="the gate's tracker, when several are loaded")
    p.add_argument("--web.basic-auth-user", dest="auth_user", default=None, metavar="USER",
                   help=f"basic auth user for --url; the password comes from --web.basic-auth-password-file "
                        f"or ${PASSWORD_ENV}")
    p.add_argument("--web.basic-auth-password-file", dest="auth_password_file", default=None, metavar="FILE")
    p.add_argument("--tls.ca-file", dest="ca_file", default=None, metavar="FILE",
                   help="CA bundle to verify an https --url (default: the system's)")
    p.add_argument("--timeout", default="10", metavar="SECONDS", help="HTTP timeout (default 10)")


def run(args: argparse.Namespace) -> int:
    """Record the attestation; print what was recorded, or why not (exit 2)."""
    try:
        parse_value(args.value)  # the syntax, before anything is sent or opened
        check_text("note", args.note, MAX_NOTE)
        check_text("by", args.by, MAX_BY)
        if not _ID.fullmatch(args.gate) or len(args.gate) > 200:
            raise AttestationError(f"invalid gate id {args.gate[:100]!r}")
        if args.url:
            if args.storage:
                raise AttestationError("give --url or --storage.path, not both")
            return _post(args, _timeout(args.timeout))
        if args.storage:
            return _write(args)
        raise AttestationError("say where to record it: --url URL (a running exporter) "
                               "or --storage.path FILE --config.file FILE")
    except AttestationError as exc:
        print(f"qualitygate attest: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _timeout(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise AttestationError(f"--timeout must be a positive number of seconds (got {text[:40]!r})")
    return seconds


def _regular_file(flag: str, path: str) -> None:
    """Refuse what is not a readable regular file (a FIFO would block the read for ever)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise AttestationError(f"{flag}: {path}: {(exc.strerror or str(exc)).lower()}") from None
    if not stat.S_ISREG(mode):
        raise AttestationError(f"{flag}: {path}: not a regular file")


def _password(args: argparse.Namespace) -> str | None:
    if args.auth_password_file:
        _regular_file("--web.basic-auth-password-file", args.auth_password_file)
        try:
            with open(args.auth_password_file, encoding="utf-8") as fh:
                return fh.read().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
            raise AttestationError(f"cannot read --web.basic-auth-password-file: {reason or exc}") from None
    return os.environ.get(PASSWORD_ENV)


def _post(args: argparse.Namespace, timeout: float) -> int:
    import requests

    auth = None
    if args.auth_user:
        password = _password(args)
        if password is None:
            raise AttestationError(f"--web.basic-auth-user needs --web.basic-auth-password-file or ${PASSWORD_ENV}")
        auth = (args.auth_user, password)
    if args.ca_file:
        _regular_file("--tls.ca-file", args.ca_file)
    # The value goes as written: the exporter judges it against the gate's expect (units included).
    body: dict[str, Any] = {"value": args.value.strip(), "note": args.note}
    if args.by:
        body["by"] = args.by
    base = args.url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise AttestationError(f"--url must start with http:// or https:// (got {args.url[:100]!r})")
    params = {"tracker": args.tracker} if args.tracker else None
    try:
        resp = requests.post(f"{base}/api/gates/{args.gate}/attestations", json=body, params=params, auth=auth,
                             timeout=timeout, verify=args.ca_file or True, allow_redirects=False)
    except (requests.RequestException, OSError, ValueError) as exc:
        raise AttestationError(f"cannot reach {base}: {type(exc).__name__}: {exc}") from None
    doc = json_object(resp)
    if resp.status_code == 401:
        raise AttestationError("the exporter wants credentials: --web.basic-auth-user and "
                               f"--web.basic-auth-password-file (or ${PASSWORD_ENV})"
                               if not auth else "the exporter refused these credentials (401)")
    if resp.status_code != 201:
        reason = doc.get("error")
        raise AttestationError(f"refused ({resp.status_code}): {reason or resp.text.strip()[:200]}")
    raw_att = doc.get("attestation")
    att: dict[str, Any] = raw_att if isinstance(raw_att, dict) else {}
    note = "" if doc.get("persisted", True) else " (kept in memory: the exporter cannot write its state file)"
    shown = doc.get("understood") or att.get("value")
    print(f"recorded {shown} for {doc.get('tracker')}/{doc.get('gate')} by {att.get('by')} "
          f"at {att.get('at')}{note}")
    return EXIT_OK


def _check_storage_path(path: str) -> None:
    """The state file's folder must exist (an attestation creates no folders); the file, if any, must be a file."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise AttestationError(f"--storage.path: folder {folder} does not exist (is this the exporter's state file?)")
    if os.path.exists(path) and not os.path.isfile(path):
        raise AttestationError(f"--storage.path: {path} is not a regular file")


def _write(args: argparse.Namespace) -> int:
    from exporter.engine.runtime import load_configs
    from exporter.state.store import Attestation, StorageError, open_store

    if not args.config_files:
        raise AttestationError("--storage.path needs --config.file, to check the gate exists and is manual")
    _check_storage_path(args.storage)
    config, gate = manual_gate(load_configs(args.config_files), args.gate, args.tracker)
    reading = parse_value(args.value)
    value = understand(reading, gate.expect)
    try:
        store = open_store(args.storage, move_corrupt_aside=False)
    except StorageError as exc:
        raise AttestationError(str(exc)) from None
    try:
        att = Attestation(value, time.time(), (args.by or _login() or "anonymous").strip(), args.note.strip())
        done = store.attest(config.tracker, gate.id, att)
        # The future itself says when the row is committed; the writer's idle flag is not waited on.
        concurrent.futures.wait([done], timeout=WRITE_WAIT)
        if not done.done() or done.exception() is not None:
            error = done.exception() if done.done() else None
            raise AttestationError(f"cannot write {args.storage}: {error or store.last_error or 'timed out'}")
    finally:
        store.close_sync()
    print(f"recorded {understood_text(reading, gate.expect)} for {config.tracker}/{gate.id} by {att.by} "
          f"in {args.storage} (a running exporter picks it up within a second)")
    return EXIT_OK


def _login() -> str | None:
    try:
        return os.getlogin()
    except OSError:
        return os.environ.get("USER")
