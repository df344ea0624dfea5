"""`mypy exporter/` is clean (settings in mypy.ini): a type error fails the suite, as it would fail CI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def test_mypy_is_clean(tmp_path: Path) -> None:
    # Its own cache directory: the run checks today's tree, not what an earlier run remembered.
    out = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "mypy.ini"),
                          "--cache-dir", str(tmp_path / "mypy-cache"), "exporter/"],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, f"mypy found type errors:\n{out.stdout}{out.stderr}"
    assert "Success: no issues found" in out.stdout
