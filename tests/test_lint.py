"""The code stays ruff-clean under pyproject.toml's [tool.ruff] settings, as the style guide asks."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINTED = ["exporter", "tests", "bench", "dashboards", "deploy"]

# Being rewritten for performance work right now, so not linted yet; the lead clears this list
# once that work lands (each entry is a path relative to the repository root).
PENDING: list[str] = []  # paths still being reworked, excluded until they are done


def ruff(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the ruff that the test extra installs, from the repository root (so pyproject.toml applies)."""
    ruff_main = pytest.importorskip("ruff.__main__", reason="ruff comes with the test extra: pip install -e .[test]")
    return subprocess.run([ruff_main.find_ruff_bin(), *args], cwd=ROOT, input=stdin, capture_output=True,
                          text=True, timeout=120)


def test_ruff_check_is_clean():
    exclude = ["--force-exclude", "--extend-exclude", ",".join(PENDING)] if PENDING else []
    proc = ruff("check", "--no-cache", "--output-format", "concise", *exclude, *LINTED)
    assert proc.returncode == 0, f"fix these, or `# noqa: CODE - why`:\n{proc.stdout}{proc.stderr}"


def test_project_settings_apply():
    """The check above runs with our rules: an unsorted import and an unused name are both caught."""
    proc = ruff("check", "--no-cache", "--output-format", "concise", "--stdin-filename", "tests/probe.py", "-",
                stdin="import sys\nimport os\n\nprint(sys.argv)\n")
    assert proc.returncode == 1
    assert "I001" in proc.stdout and "F401" in proc.stdout, proc.stdout


def test_pending_paths_still_exist():
    """A renamed or removed file must leave PENDING too, or the list silently stops meaning anything."""
    assert [p for p in PENDING if not (ROOT / p).exists()] == []
