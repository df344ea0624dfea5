"""What every command shares: exit codes, the one-line usage error, the state file, output files."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import requests

    from exporter.state.opening import Precheck
    from exporter.state.store import Store

EXIT_OK, EXIT_FAILING, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad flags, arguments, inputs or outputs: exit 2 with a one-line message."""


def os_reason(exc: OSError) -> str:
    """The operating system's words for an OSError, without Python's '[Errno N]' and repeated path."""
    return exc.strerror or str(exc)


def json_object(resp: requests.Response) -> dict[str, Any]:
    """The exporter's JSON object answer, or {} when the body is not one (a proxy's page, an empty answer)."""
    try:
        doc = resp.json()
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def open_store(path: str, read_only: bool = False, early: Precheck | None = None) -> Store:
    """The SQLite state file, or a UsageError that says why it cannot be used; `early` is an
    integrity check started before the config load (serve), not repeated when it found the file healthy."""
    from exporter.state.store import StorageError
    from exporter.state.store import open_store as open_

    try:
        return open_(path, read_only=read_only, early=early)
    except StorageError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"--storage.path {path}: {os_reason(exc)}") from None


def check_output(flag: str, path: str) -> None:
    """Refuse an output path that can never be written, before any work is done for it."""
    if os.path.isdir(path) or path.endswith(os.sep):
        raise UsageError(f"{flag} {path}: is a directory (want a file name)")


def write_output(flag: str, path: str, text: str) -> None:
    """Write a command's output file; any failure is a UsageError naming the flag and the path."""
    check_output(flag, path)
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot write: {os_reason(exc)}") from None
    except UnicodeEncodeError as exc:
        raise UsageError(f"{flag} {path}: cannot write: {exc.reason}") from None
