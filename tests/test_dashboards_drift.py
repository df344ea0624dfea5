"""The committed dashboard JSON is exactly what the generator produces (the kubernetes-mixin habit)."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATE = ROOT / "dashboards" / "generate.py"
HOW = "regenerate with `.venv/bin/python dashboards/generate.py` and commit the JSON"


def run_generator(*args: str) -> subprocess.CompletedProcess[str]:
    """Run dashboards/generate.py with this interpreter, bounded in time."""
    return subprocess.run(
        [sys.executable, str(GENERATE), *args], check=False, capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def test_committed_json_matches_the_generator(tmp_path):
    result = run_generator("--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    generated = sorted(p.name for p in tmp_path.glob("*.json"))
    assert generated == ["exporter.json", "gate-detail.json", "overview.json"]
    for name in generated:
        committed = (ROOT / "dashboards" / name).read_text(encoding="utf-8")
        fresh = (tmp_path / name).read_text(encoding="utf-8")
        assert committed == fresh, f"dashboards/{name} drifted from its generator: {HOW}"


def test_generator_output_is_stable(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    assert run_generator("--out", str(first)).returncode == 0
    assert run_generator("--out", str(second)).returncode == 0
    for path in first.iterdir():
        assert path.read_bytes() == (second / path.name).read_bytes()


def test_check_mode_passes_on_the_repo_and_reports_drift(tmp_path):
    clean = run_generator("--check")
    assert clean.returncode == 0, clean.stdout + clean.stderr

    assert run_generator("--out", str(tmp_path)).returncode == 0
    edited = tmp_path / "overview.json"
    edited.write_text(
        edited.read_text(encoding="utf-8").replace("Overall completion", "Overall progress"), encoding="utf-8"
    )
    drifted = run_generator("--check", "--out", str(tmp_path))
    assert drifted.returncode == 1
    assert '-      "title": "Overall progress",' in drifted.stdout
    assert '+      "title": "Overall completion",' in drifted.stdout
    assert "dashboards/generate.py" in drifted.stderr


def test_sdk_version_is_pinned_exactly_and_installed():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    pins = re.findall(r'"grafana-foundation-sdk==([^"]+)"', pyproject)
    assert len(pins) == 1, "pin grafana-foundation-sdk with == in pyproject.toml"
    assert metadata.version("grafana-foundation-sdk") == pins[0]
