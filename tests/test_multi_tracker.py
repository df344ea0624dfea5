"""Several trackers in one exporter: per-tracker API, and reloads that leave the others alone."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from conftest import parse_metrics, sample, wait_for

BODY = """
defaults: {interval: 1s, timeout: 500ms}
phases:
  - id: p
    steps:
      - id: s
        gates:
          - {id: host, file: {path: /etc/hostname}}
          - {id: gone, file: {path: /nonexistent/report}}
"""


def evaluations(served, tracker: str) -> float:
    m = parse_metrics(served.get("/metrics")[1])
    return sample(m, "gate_evaluations_total", tracker=tracker, gate="host", result="pass") or 0


def test_two_trackers_then_a_reload_that_removes_one(tmp_path: Path, serve):
    folder = tmp_path / "trackers"
    folder.mkdir()
    (folder / "alpha.yml").write_text("tracker: alpha\ntitle: Alpha plan\n" + BODY)
    (folder / "beta.yml").write_text("tracker: beta\ntitle: Beta plan\n" + BODY)
    s = serve(folder, "--web.enable-lifecycle")
    wait_for(lambda: evaluations(s, "alpha") >= 2 and evaluations(s, "beta") >= 2, timeout=30,
             what="both trackers evaluating")

    status, body = s.get("/api/progress/status")
    assert status == 200
    listing = json.loads(body)["trackers"]
    assert [(t["tracker"], t["title"], t["overall_completion"]) for t in listing] == [
        ("alpha", "Alpha plan", 0.5), ("beta", "Beta plan", 0.5)]
    alpha = json.loads(s.get("/api/progress/status?tracker=alpha")[1])
    assert alpha["tracker"] == "alpha" and [g["id"] for g in alpha["gates"]] == ["host", "gone"]
    assert s.get("/api/gates")[0] == 400, "several trackers: the gate list needs ?tracker="
    assert json.loads(s.get("/api/gates/host?tracker=beta")[1])["tracker"] == "beta"

    # Remove beta and change nothing in alpha: alpha keeps its counters (its state was not reset).
    before = evaluations(s, "alpha")
    (folder / "beta.yml").unlink()
    s.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: 'tracker="beta"' not in s.get("/metrics")[1], timeout=20, what="beta to be dropped")
    assert evaluations(s, "alpha") >= before
    listing = json.loads(s.get("/api/progress/status")[1])
    assert listing["tracker"] == "alpha", "one tracker left: the document itself, not a list"
    assert "config reloaded" in s.log()
