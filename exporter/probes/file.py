"""`file` gates: a file exists; measures its age (seconds since mtime) and size."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from exporter.config.fields import FilePath, opt
from exporter.probes.base import Measurement, ProbeContext, ProbeError, ProbeKind
from exporter.probes.files import display_path
from exporter.probes.reading import run_read


@dataclass(frozen=True, slots=True)
class FileSpec:
    """Options of a `file` gate."""

    path: FilePath = opt(required=True, doc="File whose existence, age and size are measured.")


async def probe(spec: FileSpec, ctx: ProbeContext) -> Measurement:
    """Stat the file; a missing file is a fail (the claim "the file exists" is false)."""
    shown = display_path(spec.path, ctx.base_dir)
    try:
        # In the report pool: stat on a hung mount blocks, and must not block the loop.
        st = await run_read((ctx.gate_id, spec.path), os.stat, spec.path)
    except FileNotFoundError:
        return Measurement({}, ok=False, message=f"{shown}: no such file")
    except OSError as exc:
        raise ProbeError(f"{shown}: {exc.strerror}") from None
    now = ctx.now() if ctx.now else time.time()
    age = max(0.0, now - st.st_mtime)
    return Measurement({"value": age, "age": age, "size": float(st.st_size)})


KIND = ProbeKind("file", FileSpec, probe, ("value", "age", "size"), doc="File freshness and size.")
