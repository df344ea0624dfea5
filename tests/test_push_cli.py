"""`qualitygate push` as CI runs it: a real exporter, the real CLI in a subprocess, CI variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, TESTDATA, free_port, one_step_tracker, parse_metrics, sample, wait_for
from tests.push_support import PUSH_GATES

CI_VARS = ("GITHUB_ACTIONS", "GITHUB_SHA", "GITHUB_REF_NAME", "GITHUB_HEAD_REF", "GITHUB_SERVER_URL",
           "GITHUB_REPOSITORY", "GITHUB_RUN_ID", "GITLAB_CI", "CI_COMMIT_SHA", "CI_COMMIT_REF_NAME",
           "CI_PIPELINE_URL", "CI_PIPELINE_ID", "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", "QUALITYGATE_URL",
           "QUALITYGATE_TOKEN", "QUALITYGATE_TOKEN_FILE")


def cobertura(path: Path, rate: float, size: int = 0) -> Path:
    text = f'<?xml version="1.0"?>\n<coverage line-rate="{rate}" version="1" timestamp="1"><packages/></coverage>\n'
    path.write_text(text + (f"<!--{'x' * size}-->\n" if size else ""))
    return path


def push(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in CI_VARS}
    return subprocess.run([sys.executable, "-m", "exporter", "push", *args], capture_output=True, text=True,
                          timeout=60, cwd=str(ROOT), env={**clean, **(env or {})})


@pytest.fixture
def exporter(serve, tmp_path, write_config):
    (tmp_path / "tokens").write_text("tok-ci\n")
    (tmp_path / "client-token").write_text("tok-ci\n")
    config = write_config(one_step_tracker(PUSH_GATES, push_tokens_file="tokens"))
    return serve(config, "--storage.path", str(tmp_path / "state.db"), "--web.max-evidence-bytes", "256KiB")


def base_env(served, tmp_path: Path) -> dict[str, str]:
    return {"QUALITYGATE_URL": served.url, "QUALITYGATE_TOKEN_FILE": str(tmp_path / "client-token")}


def gate(served, gate_id: str) -> dict:
    return json.loads(served.get(f"/api/gates/{gate_id}")[1])


def test_pass_fail_and_github_variables(exporter, tmp_path):
    env = {**base_env(exporter, tmp_path), "GITHUB_ACTIONS": "true", "GITHUB_SHA": "a" * 40,
           "GITHUB_REF_NAME": "main", "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "o/r",
           "GITHUB_RUN_ID": "991"}
    done = push("cov", str(cobertura(tmp_path / "c.xml", 0.9)), env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("PASS t/cov: coverage 90 % is at least 85 % (no earlier push to compare with: "
                                  "delta holds)\n") and "recorded" in done.stdout, done.stdout
    evidence = gate(exporter, "cov")["evidence"]
    assert evidence["commit"] == "a" * 40 and evidence["branch"] == "main", evidence
    assert evidence["run_url"] == "https://github.com/o/r/actions/runs/991", evidence

    # A pull request: GITHUB_HEAD_REF is its branch; coverage drops 2%: exit 1, the gate keeps main's push.
    pr = {**env, "GITHUB_REF_NAME": "42/merge", "GITHUB_HEAD_REF": "feature", "GITHUB_SHA": "b" * 40}
    done = push("cov", str(cobertura(tmp_path / "c.xml", 0.88)), env=pr)
    assert done.returncode == 1, done.stdout + done.stderr
    # The one formatter's sentences (exporter.config.units), as check, the logs and the page say them.
    assert done.stdout.startswith("FAIL t/cov: coverage 88 % is at least 85 %; delta -2 % is below -0.5 %\n"
                                  "  not recorded: branch 'feature'"), done.stdout
    assert gate(exporter, "cov")["evidence"]["commit"] == "a" * 40
    assert gate(exporter, "cov")["status"] == "pass"


def test_gitlab_variables_and_a_parallel_junit_run(exporter, tmp_path):
    env = {**base_env(exporter, tmp_path), "GITLAB_CI": "true", "CI_COMMIT_SHA": "c" * 40,
           "CI_COMMIT_REF_NAME": "main", "CI_PIPELINE_URL": "https://gitlab.example/g/p/-/pipelines/5",
           "CI_PIPELINE_ID": "5"}
    junit = TESTDATA / "reports" / "junit"
    jobs = [subprocess.Popen([sys.executable, "-m", "exporter", "push", "tests", str(junit / f)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT),
                             env={**{k: v for k, v in os.environ.items() if k not in CI_VARS}, **env})
            for f in ("unit.xml", "integration.xml")]
    for job in jobs:
        out, err = job.communicate(timeout=60)
        assert job.returncode == 1, out + err  # both reports hold failures
    wait_for(lambda: sample(parse_metrics(exporter.get("/metrics")[1]), "gate_value", gate="tests")
             == pytest.approx(5 / 7), what="the run's reports summed")
    got = gate(exporter, "tests")
    assert got["measurements"]["tests"] == 8, got
    assert got["evidence"]["commit"] == "c" * 40 and got["evidence"]["branch"] == "main", got
    assert got["evidence"]["run_url"] == "https://gitlab.example/g/p/-/pipelines/5", got


def test_failures_are_one_line_and_exit_2(exporter, tmp_path):
    env = base_env(exporter, tmp_path)
    report = str(cobertura(tmp_path / "c.xml", 0.9))
    (tmp_path / "wrong").write_text("tok-wrong\n")
    (tmp_path / "junk.xml").write_text("<html/>")
    cases = {
        "wrong token": (["cov", report, "--token-file", str(tmp_path / "wrong")], "401"),
        "unknown gate": (["nope", report], "unknown gate"),
        "bad report": (["cov", str(tmp_path / "junk.xml")], "report"),
        "huge report": (["cov", str(cobertura(tmp_path / "big.xml", 0.9, size=600_000))], "256KiB"),
        "no server": (["cov", report, "--url", f"http://127.0.0.1:{free_port()}"], "cannot reach"),
        "no token": (["cov", report], "no push token"),
    }
    for name, (args, needle) in cases.items():
        run_env = {"QUALITYGATE_URL": exporter.url} if name == "no token" else env
        done = push(*args, env=run_env)
        assert done.returncode == 2, (name, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("qualitygate push: ") and needle in lines[0], (name, lines)
        assert "Traceback" not in done.stderr and "tok-wrong" not in done.stderr
    assert gate(exporter, "cov")["awaiting_evidence"] is True  # nothing was stored


def test_kill_9_after_a_202_keeps_the_push(serve, exporter, tmp_path):
    import signal

    done = push("cov", str(cobertura(tmp_path / "c.xml", 0.93)), "--branch", "main", "--commit", "d" * 40,
                env=base_env(exporter, tmp_path))
    assert done.returncode == 0, done.stderr
    exporter.stop(signal.SIGKILL)
    again = serve(sorted(tmp_path.glob("gates.yml")), "--storage.path", str(tmp_path / "state.db"))
    got = gate(again, "cov")
    assert got["value"] == 0.93 and got["evidence"]["commit"] == "d" * 40, got
