"""The benchmark suite still runs: its smoke size produces every row (no timing is asserted here)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROWS = ("P1", "P1b", "P1c", "P1d", "P2", "P2b", "P2c", "P2d", "P3", "P3b", "P3c", "P3e", "P3d", "P4", "P4b", "P5",
        "P7", "P7b")
TOOLS = ("nginx", "prometheus-blackbox-exporter")


def _have(tool: str) -> bool:
    return bool(shutil.which(tool) or Path("/usr/sbin", tool).exists())


@pytest.mark.slow
@pytest.mark.skipif(not all(_have(t) for t in TOOLS),
                    reason="nginx and blackbox_exporter come from scripts/system-deps.sh")
def test_smoke_run_produces_every_row(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "latest-smoke.json").read_text())
    rows = {r["id"]: r for r in doc["rows"]}
    assert [r for r in rows if r in ROWS] == list(ROWS)  # (other rows, e.g. P6's, are checked by their own tests)
    for rid, row in rows.items():
        assert row["error"] == "", f"{rid}: {row['error']}"
        assert isinstance(row["ours"], (int, float)), rid
    assert all(f"| {rid} |" in proc.stdout for rid in ROWS), proc.stdout
    assert doc["machine"]["cores"] and doc["args"]["smoke"] is True


def test_slow_clients_benchmark_reports_the_cut_off() -> None:
    proc = subprocess.run([sys.executable, "bench/slow_clients.py", "--connections", "20", "--seconds", "20",
                           "--", "--web.read-timeout", "1s"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "all closed by the server after " in proc.stdout and "not within" not in proc.stdout, proc.stdout
    assert 'qualitygate_http_read_timeouts_total{stage="head"} 10.0' in proc.stdout, proc.stdout
    assert 'qualitygate_http_read_timeouts_total{stage="body"} 10.0' in proc.stdout, proc.stdout
