"""`qualitygate import` and `render` as a user runs them: the seed tracker end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED = Path(__file__).parent / "testdata" / "trackers" / "seed.md"


def qg(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True, text=True, timeout=120,
                          cwd=str(cwd))


def test_import_validate_render_the_seed_honestly(tmp_path: Path):
    out = tmp_path / "gates.yml"
    imp = qg("import", str(SEED), "-o", str(out), cwd=tmp_path)
    assert imp.returncode == 0, imp.stderr
    assert "81 gates" in imp.stdout or "81" in imp.stdout
    assert qg("validate", str(out), cwd=tmp_path).returncode == 0
    md = tmp_path / "TRACKER.md"
    ren = qg("render", "--config.file", str(out), "-o", str(md), cwd=tmp_path)
    assert ren.returncode == 0, ren.stderr
    text = md.read_text()
    # The seed ticks 69 of 70 boxes; nothing on this machine can back those claims.
    assert "- [x]" not in text
    assert "COMPLETED" not in text.replace("is COMPLETED only", "")
    assert "42 awaiting an attestation" in text  # 69 claims, 27 of them now push gates or a promql probe


def test_import_errors_name_the_line(tmp_path: Path):
    bad = tmp_path / "bad.md"
    bad.write_bytes(b"# Tracker\n\n- [x] ok: true\n\xff\xfe broken\n")
    proc = qg("import", str(bad), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"{bad}:4: not UTF-8 text")
    missing = qg("import", str(tmp_path / "nope.md"), cwd=tmp_path)
    assert missing.returncode == 2 and "No such file" in missing.stderr and "Traceback" not in missing.stderr


def test_render_from_unreachable_exporter_is_usage_error(tmp_path: Path):
    config = ROOT / "examples" / "tracker.yml"
    proc = qg("render", "--config.file", str(config), "-o", str(tmp_path / "x.md"), "--from", "http://127.0.0.1:9",
              cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("qualitygate: ")
