"""`qualitygate check --from URL` against a real exporter: remote evidence judged there, the rest locally."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.conftest import ROOT, free_port, one_step_tracker, wait_for
from tests.test_evidence_push import cobertura, post

GATES = """
- id: cov
  tier: critical
  coverage: {push: {max_age: 1d}}
  expect: ">= 85%"
- id: signoff
  manual: {max_age: 30d}
- id: local
  command: {argv: ["true"]}
"""


def check(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exporter", "check", "--config.file", str(config),
                           "--tier", "critical,important,enhancement", *extra],
                          capture_output=True, text=True, timeout=60, cwd=str(ROOT))


def lines(out: str) -> dict[str, str]:
    """gate id -> its check line."""
    return {line.split()[2]: line for line in out.splitlines() if line[:5].strip() in ("PASS", "FAIL", "ERROR")}


def test_check_from_judges_pushed_and_manual_gates_as_the_exporter_does(serve, tmp_path, write_config):
    (tmp_path / "tokens").write_text("tok-a\n")
    config = write_config(one_step_tracker(GATES, push_tokens_file="tokens"))
    s = serve(config)

    alone = check(config)
    assert alone.returncode == 1, alone.stdout + alone.stderr
    assert lines(alone.stdout)["cov"].startswith("FAIL") and lines(alone.stdout)["signoff"].startswith("FAIL")

    assert post(f"{s.url}/api/gates/cov/evidence", cobertura(0.9))[0] == 202
    req = urllib.request.Request(f"{s.url}/api/gates/signoff/attestations", method="POST",
                                 data=json.dumps({"value": True, "by": "dana"}).encode(),
                                 headers={"Content-Type": "application/json"})
    assert urllib.request.urlopen(req, timeout=10).status == 201
    wait_for(lambda: json.loads(s.get("/api/gates/signoff")[1])["status"] == "pass", what="attestation judged")
    wait_for(lambda: json.loads(s.get("/api/gates/cov")[1])["status"] == "pass", what="push judged")

    remote = check(config, "--from", s.url)
    assert remote.returncode == 0, remote.stdout + remote.stderr
    got = lines(remote.stdout)
    assert got["cov"].startswith("PASS") and "coverage 90 % is at least" in got["cov"], got
    assert got["signoff"].startswith("PASS") and got["local"].startswith("PASS"), got

    # The exporter judges by another expect than this config: an error, never its pass.
    stricter = write_config(one_step_tracker(GATES.replace('">= 85%"', '">= 95%"'), push_tokens_file="tokens"),
                            "stricter.yml")
    differs = check(stricter, "--from", s.url)
    assert differs.returncode == 1, differs.stdout
    assert lines(differs.stdout)["cov"].startswith("ERROR") and "reload it" in lines(differs.stdout)["cov"]

    down = check(config, "--from", f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 2 and len(down.stderr.strip().splitlines()) == 1, down.stderr
    assert down.stderr.startswith("qualitygate: --from: cannot read"), down.stderr
