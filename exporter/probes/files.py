"""What the report-file probes (coverage, junit, json_file) share: reading files into errors, safe XML."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET

from exporter.probes.base import ProbeError

MAX_REPORT = 256 * 1024 * 1024  # a report bigger than this is not a report
# A DOCTYPE with an internal subset `[...]`, found in the prolog (before the root element).
_INTERNAL_SUBSET = re.compile(rb"^(?:\xef\xbb\xbf)?(?:\s|<\?.*?\?>|<!--.*?-->)*<!DOCTYPE[^>\[]*\[", re.DOTALL)


def display_path(path: str, base_dir: str | None) -> str:
    """A path for messages: relative to the config's folder when it lies inside it."""
    if base_dir:
        rel = os.path.relpath(path, base_dir)
        if not rel.startswith(".." + os.sep) and rel != "..":
            return rel
    return path


def read_bytes(path: str, shown: str | None = None) -> bytes:
    """A report file's bytes; ProbeError ("coverage.xml: no such file") if it cannot be read."""
    name = shown or path
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_REPORT + 1)
    except FileNotFoundError:
        raise ProbeError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ProbeError(f"{name}: is a directory") from None
    except OSError as exc:
        raise ProbeError(f"{name}: {exc.strerror or exc}") from None
    if len(data) > MAX_REPORT:
        raise ProbeError(f"{name}: larger than {MAX_REPORT // (1024 * 1024)} MiB")
    return data


def parse_xml(data: bytes, path: str) -> ET.Element:
    """Parse an XML report; a DOCTYPE declaring entities is refused (no entity expansion bombs).

    ElementTree never fetches external entities or DTDs, and a plain DOCTYPE (JaCoCo writes one)
    is harmless; entities can only be declared in a DOCTYPE's internal subset, which no report
    format uses, so that is what is rejected.
    """
    if _INTERNAL_SUBSET.match(data):
        raise ProbeError(f"{path}: XML with a DOCTYPE internal subset (entity declarations) is not accepted")
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise ProbeError(f"{path}: not valid XML ({exc})") from None
