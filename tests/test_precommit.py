"""The pre-commit hook, for real: `pre-commit try-repo` and an installed hook in a scratch git repository, where a
box ticked by hand makes the commit fail and the honest document passes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tracker_support import TRACKERS

ROOT = Path(__file__).resolve().parent.parent
PRE_COMMIT = Path(sys.executable).with_name("pre-commit")
HOOK = "qualitygate-render-check"
# pre-commit pip-installs the hook's repository (and its dependencies) into an environment of its own: minutes
# on a cold cache.
INSTALL_TIMEOUT = 900

pytestmark = pytest.mark.skipif(not PRE_COMMIT.exists() or not shutil.which("git"), reason="needs pre-commit, git")


def git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=True)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A clone of this repository's committed tree, and a project repository with an imported, rendered tracker."""
    base = tmp_path_factory.mktemp("precommit")
    hooks = base / "hookrepo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(hooks)], check=True, timeout=120)
    proj = base / "proj"
    proj.mkdir()
    git(proj, "init", "-q")
    git(proj, "config", "user.email", "dev@example.invalid")
    git(proj, "config", "user.name", "dev")
    shutil.copy(TRACKERS / "seed.md", proj / "TRACKER.md")
    env = {**os.environ, "PRE_COMMIT_HOME": str(base / "cache")}
    qg = [sys.executable, "-m", "exporter"]
    subprocess.run([*qg, "import", "TRACKER.md", "-o", "qualitygate.yml"], cwd=proj, check=True, timeout=60,
                   capture_output=True)
    subprocess.run([*qg, "render", "--in-place", "TRACKER.md", "--config.file", "qualitygate.yml"], cwd=proj,
                   check=True, timeout=120, capture_output=True)
    git(proj, "add", "TRACKER.md", "qualitygate.yml")
    git(proj, "commit", "-q", "-m", "tracker, rendered")
    return hooks, proj, env


def try_repo(hooks: Path, proj: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PRE_COMMIT), "try-repo", str(hooks), HOOK, "--files", "TRACKER.md", "--verbose"],
                          cwd=proj, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)


def test_try_repo_fails_a_box_ticked_by_hand_and_passes_the_honest_document(scratch):
    hooks, proj, env = scratch
    honest = try_repo(hooks, proj, env)
    assert honest.returncode == 0, honest.stdout + honest.stderr
    assert "every claim is borne out by the evidence (81 gates)" in honest.stdout

    doc = proj / "TRACKER.md"
    text = doc.read_text(encoding="utf-8")
    line = next(i for i, ln in enumerate(text.split("\n"), start=1) if ln.startswith("- [ ] Zero critical bugs"))
    doc.write_text(text.replace("- [ ] Zero critical bugs", "- [x] Zero critical bugs", 1), encoding="utf-8")
    git(proj, "add", "TRACKER.md")
    lying = try_repo(hooks, proj, env)
    assert lying.returncode == 1, lying.stdout + lying.stderr
    assert f"TRACKER.md:{line}: 'Zero critical bugs: true' is ticked, but gate zero-critical-bugs is fail" \
        in lying.stdout
    git(proj, "reset", "-q")
    git(proj, "checkout", "--", "TRACKER.md")


def test_installed_hook_refuses_the_commit(scratch):
    hooks, proj, env = scratch
    rev = git(hooks, "rev-parse", "HEAD").stdout.strip()
    (proj / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {hooks}\n    rev: {rev}\n    hooks:\n      - id: {HOOK}\n", encoding="utf-8")
    git(proj, "add", ".pre-commit-config.yaml")
    subprocess.run([str(PRE_COMMIT), "install"], cwd=proj, env=env, check=True, timeout=60, capture_output=True)
    doc = proj / "TRACKER.md"
    text = doc.read_text(encoding="utf-8")
    doc.write_text(text.replace("- [ ] Unit coverage: >=85%", "- [x] Unit coverage: >=85%", 1), encoding="utf-8")
    git(proj, "add", "TRACKER.md")
    refused = subprocess.run(["git", "commit", "-m", "tick it"], cwd=proj, env=env, capture_output=True, text=True,
                             timeout=INSTALL_TIMEOUT)
    assert refused.returncode != 0 and "'Unit coverage: >=85%' is ticked" in refused.stdout + refused.stderr
    doc.write_text(text, encoding="utf-8")
    git(proj, "add", "TRACKER.md")
    accepted = subprocess.run(["git", "commit", "-m", "hook config"], cwd=proj, env=env, capture_output=True,
                              text=True, timeout=INSTALL_TIMEOUT)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
