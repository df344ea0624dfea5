"""Structured logs: logfmt (default) or JSON, one event per line with key-values."""

from __future__ import annotations

import datetime
import json
import logging
import re
import sys
import traceback
from typing import Any

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
_BARE = re.compile(r"^[A-Za-z0-9_.:/@+-]+$")


def _ts(record: logging.LogRecord) -> str:
    moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {"ts": _ts(record), "level": record.levelname.lower().replace("warning", "warn"),
                           "logger": record.name, "msg": record.getMessage()}
    out.update(getattr(record, "kv", {}) or {})
    if record.exc_info and record.exc_info[0] is not None:
        out["err"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
        # The traceback is what makes an unexpected exception fixable: it goes with the event, in
        # one field (logfmt escapes its newlines, so the event stays one line).
        out["traceback"] = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
    if record.stack_info:
        out["stack"] = record.stack_info
    return out


class LogfmtFormatter(logging.Formatter):
    """key=value pairs, values quoted when needed."""

    def format(self, record: logging.LogRecord) -> str:
        parts = []
        for k, v in _fields(record).items():
            s = "" if v is None else str(v)
            if not _BARE.match(s):
                s = '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
            parts.append(f"{k}={s}")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), default=str)


def setup(level: str = "info", fmt: str = "logfmt", stream: Any = None) -> None:
    """Configure the root logger once for the process."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def kv(**fields: Any) -> dict[str, Any]:
    """`extra=` for a log call: log.info("msg", extra=kv(gate="x"))."""
    return {"kv": fields}
