"""Table test: each tests/testdata/invalid-*.yml with the exact errors its `# error:` lines name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exporter.config.fields import ConfigError
from exporter.config.model import load_config

TESTDATA = Path(__file__).parent / "testdata"
CASES = sorted(TESTDATA.glob("invalid-*.yml"))


def expected(path: Path) -> list[str]:
    """`# error: LINE: KEY: MESSAGE` header lines -> the full `FILE:LINE: KEY: MESSAGE` lines."""
    prefix = "# error: "
    return [f"{path}:{line[len(prefix):]}" for line in path.read_text().splitlines() if line.startswith(prefix)]


def test_table_is_not_empty():
    assert len(CASES) >= 15
    assert all(expected(p) for p in CASES), "every invalid-*.yml names its errors"


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_invalid_config_exact_messages(path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("QG_TEST_UNSET_VARIABLE", raising=False)
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert [str(i) for i in info.value.issues] == expected(path)


@pytest.mark.parametrize("path", [*CASES[:4], TESTDATA / "invalid-many.yml"], ids=lambda p: p.stem)
def test_validate_cli_prints_all_errors_exit_2_no_traceback(path: Path):
    proc = subprocess.run([sys.executable, "-m", "exporter", "validate", str(path)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.splitlines() == expected(path)


def test_check_and_serve_reject_bad_config_with_exit_2():
    bad = TESTDATA / "invalid-many.yml"
    for cmd in (["check", "--config.file", str(bad)],
                ["serve", "--config.file", str(bad), "--web.listen-address", "127.0.0.1:1"]):
        proc = subprocess.run([sys.executable, "-m", "exporter", *cmd], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.splitlines() == expected(bad)


def test_missing_file_is_a_config_error(tmp_path: Path):
    proc = subprocess.run([sys.executable, "-m", "exporter", "validate", str(tmp_path / "nope.yml")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"{tmp_path / 'nope.yml'}:1: cannot read config: No such file or directory"
