"""Attestations of manual gates: the input rules, the HTTP endpoint, and the `qualitygate attest` client."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from exporter.log import kv

if TYPE_CHECKING:
    from aiohttp import web

    from exporter.config.model import Config, Gate
    from exporter.engine.runtime import Runtime

log = logging.getLogger("qualitygate.attest")

MAX_NOTE = 1000  # characters
MAX_BY = 100
PASSWORD_ENV = "QUALITYGATE_PASSWORD"
_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")  # config.ID_RE, copied: the HTTP client must not load the config code
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # tabs and newlines are fine in a note
EXIT_OK, EXIT_USAGE = 0, 2


class AttestationError(ValueError):
    """An attestation refused: the message says why, `status` is the HTTP answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# --- input rules (shared by the endpoint and the client) ---------------------------------------


def parse_value(text: str) -> float:
    """A value from the command line: a number, N% (divided by 100), true or false."""
    t = text.strip().lower()
    if t in ("true", "false"):
        return 1.0 if t == "true" else 0.0
    scale = 1.0
    if t.endswith("%"):
        t, scale = t[:-1], 0.01
    try:
        value = float(t) * scale
    except ValueError:
        raise AttestationError(f"invalid value {text!r}: want a number, N%, true or false") from None
    if not math.isfinite(value):
        raise AttestationError(f"invalid value {text!r}: must be finite")
    return value


def check_body(doc: Any) -> tuple[float, str, str | None]:
    """(value, note, by) from a JSON request body; AttestationError (400) on anything else."""
    if not isinstance(doc, dict):
        raise AttestationError('body must be a JSON object such as {"value": 1, "note": "..."}')
    unknown = sorted(set(doc) - {"value", "note", "by"})
    if unknown:
        raise AttestationError(f"unknown field {unknown[0]!r} (allowed: value, note, by)")
    if "value" not in doc:
        raise AttestationError("missing field 'value'")
    raw = doc["value"]
    if isinstance(raw, bool):
        value = 1.0 if raw else 0.0
    elif isinstance(raw, (int, float)):
        value = float(raw)
        if not math.isfinite(value):
            raise AttestationError("value must be finite")
    else:
        raise AttestationError("value must be a number, true or false")
    return value, _text(doc, "note", MAX_NOTE) or "", _text(doc, "by", MAX_BY)


def _text(doc: dict[str, Any], key: str, limit: int) -> str | None:
    raw = doc.get(key)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise AttestationError(f"{key} must be a string")
    if len(raw) > limit:
        raise AttestationError(f"{key} is longer than {limit} characters")
    if _CONTROL.search(raw) or (key == "by" and ("\n" in raw or "\t" in raw)):
        raise AttestationError(f"{key} contains control characters")
    return raw.strip()


def manual_gate(configs: list[Config], gate_id: str, tracker: str | None) -> tuple[Config, Gate]:
    """The tracker config and manual gate an attestation is for; AttestationError (404/409/400) otherwise."""
    if tracker is not None:
        configs = [c for c in configs if c.tracker == tracker]
        if not configs:
            raise AttestationError(f"unknown tracker {tracker[:100]!r}", 404)
    found = [(c, g) for c in configs for g in [c.gate(gate_id)] if g is not None]
    if not found:
        where = f" in tracker {configs[0].tracker!r}" if len(configs) == 1 else ""
        raise AttestationError(f"unknown gate {gate_id[:100]!r}{where}", 404)
    if len(found) > 1:
        raise AttestationError(f"gate {gate_id!r} exists in several trackers "
                               f"({', '.join(c.tracker for c, _ in found)}): name one with tracker")
    config, gate = found[0]
    if gate.kind != "manual":
        raise AttestationError(f"gate {gate_id!r} is a {gate.kind} gate; only manual gates take attestations", 409)
    return config, gate


# --- the endpoint: POST /api/gates/{id}/attestations -------------------------------------------


def attestation_handler(runtime: Runtime) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The aiohttp handler that records an attestation and re-evaluates the gate at once."""
    from aiohttp import web

    from exporter.state.store import Attestation

    def refuse(message: str, status: int) -> web.Response:
        return web.json_response({"error": message}, status=status)

    async def post(request: web.Request) -> web.Response:
        """Record an attestation: 201, or 4xx with {"error": ...} and nothing stored."""
        tracker = request.query.get("tracker")
        if tracker is None and len(runtime.trackers) > 1:
            return refuse("several trackers are loaded: add ?tracker=NAME", 400)
        try:
            config, gate = manual_gate(list(runtime.trackers.values()), request.match_info["id"], tracker)
            if request.content_type != "application/json":
                raise AttestationError("send the attestation as Content-Type: application/json", 415)
            try:
                doc = json.loads(await request.read())
            except (ValueError, UnicodeDecodeError) as exc:
                raise AttestationError(f"body is not valid JSON: {exc}") from None
            value, note, by = check_body(doc)
        except AttestationError as exc:
            return refuse(str(exc), exc.status)
        store = runtime.store
        if store is None:
            return refuse("attestations need a state file: start the exporter with --storage.path", 503)
        user = request.get("user")
        att = Attestation(value, time.time(), user or by or "anonymous", note)
        done = asyncio.wrap_future(store.attest(config.tracker, gate.id, att))
        # Answer once it is on disk; if the disk is failing, the attestation still counts from memory.
        done.add_done_callback(lambda f: f.exception())  # a late failure is counted by the store, not raised here
        finished, _ = await asyncio.wait({done}, timeout=5.0)
        persisted = bool(finished) and done.exception() is None
        scheduled = runtime.scheduler is not None and runtime.scheduler.trigger(config.tracker, gate.id)
        log.info("attestation recorded", extra=kv(tracker=config.tracker, gate=gate.id, value=value, by=att.by,
                                                  persisted=persisted))
        return web.json_response({"tracker": config.tracker, "gate": gate.id, "attestation": att.to_json(),
                                  "persisted": persisted, "reevaluating": scheduled}, status=201)

    return post


# --- the client: qualitygate attest ------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The `attest` subcommand's flags."""
    p.add_argument("gate", metavar="GATE", help="id of a manual gate")
    p.add_argument("--value", required=True, metavar="V", help="a number, N%%, true or false")
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
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS", help="HTTP timeout (default 10)")


def run(args: argparse.Namespace) -> int:
    """Record the attestation; print what was recorded, or why not (exit 2)."""
    try:
        value = parse_value(args.value)
        by = args.by
        for key, text, limit in (("note", args.note, MAX_NOTE), ("by", by, MAX_BY)):
            _text({key: text}, key, limit)
        if not _ID.match(args.gate):
            raise AttestationError(f"invalid gate id {args.gate!r}")
        if args.url:
            if args.storage:
                raise AttestationError("give --url or --storage.path, not both")
            return _post(args, value)
        if args.storage:
            return _write(args, value)
        raise AttestationError("say where to record it: --url URL (a running exporter) "
                               "or --storage.path FILE --config.file FILE")
    except AttestationError as exc:
        print(f"qualitygate attest: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _password(args: argparse.Namespace) -> str | None:
    if args.auth_password_file:
        try:
            with open(args.auth_password_file, encoding="utf-8") as fh:
                return fh.read().rstrip("\r\n")
        except OSError as exc:
            raise AttestationError(f"cannot read --web.basic-auth-password-file: {exc.strerror or exc}") from None
    return os.environ.get(PASSWORD_ENV)


def _post(args: argparse.Namespace, value: float) -> int:
    import requests

    auth = None
    if args.auth_user:
        password = _password(args)
        if password is None:
            raise AttestationError(f"--web.basic-auth-user needs --web.basic-auth-password-file or ${PASSWORD_ENV}")
        auth = (args.auth_user, password)
    body: dict[str, Any] = {"value": value, "note": args.note}
    if args.by:
        body["by"] = args.by
    base = args.url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise AttestationError(f"--url must start with http:// or https:// (got {args.url!r})")
    params = {"tracker": args.tracker} if args.tracker else None
    try:
        resp = requests.post(f"{base}/api/gates/{args.gate}/attestations", json=body, params=params, auth=auth,
                             timeout=args.timeout, verify=args.ca_file or True, allow_redirects=False)
    except requests.RequestException as exc:
        raise AttestationError(f"cannot reach {base}: {type(exc).__name__}: {exc}") from None
    try:
        doc = resp.json()
    except ValueError:
        doc = {}
    if resp.status_code == 401:
        raise AttestationError("the exporter wants credentials: --web.basic-auth-user and "
                               f"--web.basic-auth-password-file (or ${PASSWORD_ENV})"
                               if not auth else "the exporter refused these credentials (401)")
    if resp.status_code != 201:
        reason = doc.get("error") if isinstance(doc, dict) else None
        raise AttestationError(f"refused ({resp.status_code}): {reason or resp.text.strip()[:200]}")
    att = doc.get("attestation", {})
    note = "" if doc.get("persisted", True) else " (kept in memory: the exporter cannot write its state file)"
    print(f"attested {doc.get('tracker')}/{doc.get('gate')} = {att.get('value')} by {att.get('by')} "
          f"at {att.get('at')}{note}")
    return EXIT_OK


def _write(args: argparse.Namespace, value: float) -> int:
    from exporter.engine.runtime import load_configs
    from exporter.state.store import Attestation, StorageError, open_store

    if not args.config_files:
        raise AttestationError("--storage.path needs --config.file, to check the gate exists and is manual")
    config, gate = manual_gate(load_configs(args.config_files), args.gate, args.tracker)
    try:
        store = open_store(args.storage, move_corrupt_aside=False)
    except StorageError as exc:
        raise AttestationError(str(exc)) from None
    try:
        att = Attestation(value, time.time(), args.by or _login() or "anonymous", args.note)
        done = store.attest(config.tracker, gate.id, att)
        store.flush(timeout=30)  # returns early when the writer fails
        if not done.done() or done.exception() is not None:
            raise AttestationError(f"cannot write {args.storage}: {store.last_error or 'timed out'}")
    finally:
        store.close_sync()
    print(f"attested {config.tracker}/{gate.id} = {value} by {att.by} in {args.storage} "
          "(a running exporter picks it up within a second)")
    return EXIT_OK


def _login() -> str | None:
    try:
        return os.getlogin()
    except OSError:
        return os.environ.get("USER")
