"""The user-facing surface cannot shrink: metric names, types and labels, the status document's fields,
and every command's flags are compared with a snapshot taken before the package restructuring (issue 13).

New names may appear (later issues add metrics, fields and flags); none may disappear or change type.
Regenerate deliberately with QG_UPDATE_SURFACE=1 (a breaking change to the contract, never to make this pass).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, TESTDATA, wait_for

SNAPSHOT = TESTDATA / "surface" / "surface.json"
COMMANDS = ["serve", "check", "validate", "schema", "import", "render", "attest"]


def metric_surface(text: str) -> dict[str, dict[str, object]]:
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict[str, object]] = {}
    for fam in text_string_to_metric_families(text):
        labels: set[str] = set()
        for s in fam.samples:
            labels |= set(s.labels)
        labels.discard("le")
        out[fam.name] = {"type": fam.type, "labels": sorted(labels)}
    return out


def shape(value: object) -> object:
    """The JSON document's shape: keys and value types, lists by the union of their items' shapes."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        merged: dict[str, object] = {}
        for item in value:
            s = shape(item)
            if isinstance(s, dict):
                merged.update(s)
            else:
                return [s]
        return [merged] if merged else []
    if value is None:
        return "null"
    return type(value).__name__


def flags(command: str) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "exporter", command, "--help"], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    return sorted(set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w.-]*)", out.stdout)))


def capture(serve, tmp_path: Path) -> dict[str, object]:
    served = serve(ROOT / "examples" / "tracker.yml")
    wait_for(lambda: "gate_passed{" in served.get("/metrics")[1], timeout=30, what="a first evaluation")
    status = json.loads(served.get("/api/progress/status")[1])
    metrics = metric_surface(served.get("/metrics")[1])
    return {"metrics": metrics, "status": shape(status), "flags": {c: flags(c) for c in COMMANDS}}


def covers(old: object, new: object, where: str, problems: list[str]) -> None:
    """Every key and type of `old` is in `new` (which may hold more)."""
    if isinstance(old, dict):
        if not isinstance(new, dict):
            problems.append(f"{where}: was an object, now {new!r}")
            return
        for k, v in old.items():
            if k not in new:
                problems.append(f"{where}.{k}: gone")
            else:
                covers(v, new[k], f"{where}.{k}", problems)
    elif isinstance(old, list):
        if not isinstance(new, list):
            problems.append(f"{where}: was a list, now {new!r}")
        elif old and new:
            covers(old[0], new[0], f"{where}[]", problems)
    elif old != new and not (old == "null" or new == "null"):
        problems.append(f"{where}: was {old!r}, now {new!r}")


@pytest.mark.slow
def test_user_facing_surface_only_grows(serve, tmp_path: Path) -> None:
    now = capture(serve, tmp_path)
    if os.environ.get("QG_UPDATE_SURFACE") == "1":
        SNAPSHOT.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
    before = json.loads(SNAPSHOT.read_text())
    problems: list[str] = []
    for name, fam in before["metrics"].items():
        if name not in now["metrics"]:
            problems.append(f"metric {name}: gone")
            continue
        if fam["type"] != now["metrics"][name]["type"]:
            problems.append(f"metric {name}: type {fam['type']} -> {now['metrics'][name]['type']}")
        missing = set(fam["labels"]) - set(now["metrics"][name]["labels"])
        if missing:
            problems.append(f"metric {name}: labels {sorted(missing)} gone")
    covers(before["status"], now["status"], "status", problems)
    for command, old in before["flags"].items():
        gone = set(old) - set(now["flags"][command])
        if gone:
            problems.append(f"{command} --help: {sorted(gone)} gone")
    assert not problems, "\n".join(problems)
