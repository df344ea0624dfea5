"""Durable state through the real `qualitygate serve`: restart, kill -9, corrupt and read-only files."""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import ROOT, Served, one_step_tracker, parse_metrics, wait_for, wait_listening
from tests.test_storage_store import make_read_only, undo_read_only

GATE_FAMILIES = ("gate_passed", "gate_probe_error", "gate_value", "gate_last_evaluation_timestamp_seconds",
                 "gate_last_pass_timestamp_seconds", "gate_evaluations_total", "gate_uptime_ratio",
                 "gate_evaluation_duration_seconds")


def tracker(body: str) -> str:
    return one_step_tracker(body, tracker="durable", title="Durable", uptime_window="30d")


def restored_samples(served: Served) -> dict:
    m = parse_metrics(served.get("/metrics")[1])
    return {k: v for k, v in m.items() if k[0] in GATE_FAMILIES or k[0] == "gate_evaluations"}


def evaluations(served: Served) -> float:
    m = parse_metrics(served.get("/metrics")[1])
    return sum(v for (name, _), v in m.items() if name in ("gate_evaluations_total", "gate_evaluations"))


def test_restart_restores_metrics_and_history(tmp_path: Path, write_config, serve) -> None:
    db = tmp_path / "state.db"
    flip = tmp_path / "flip"
    # First life: fast gates. `flaky` alternates pass and fail, so uptime is strictly between 0 and 1.
    fast = write_config(tracker(f"""
          - {{id: steady, tier: critical, interval: 1s, timeout: 1s, command: {{shell: "exit 0"}}}}
          - id: flaky
            interval: 1s
            timeout: 1s
            command: {{shell: "if [ -f {flip} ]; then rm {flip}; exit 1; else touch {flip}; echo 0.25; fi",
                       value_regex: "([0-9.]+)"}}
          - {{id: broken, interval: 1s, timeout: 1s, file: {{path: {tmp_path}/missing}}}}
"""), "fast.yml")
    s = serve(fast, "--storage.path", str(db))
    wait_for(lambda: evaluations(s) >= 12, timeout=60, what="a few evaluations of every gate")
    s.stop()
    assert s.proc.returncode == 0
    # What the first life exported last, read from the file it left (every evaluation was committed).
    with sqlite3.connect(db) as c:
        stored = {g: (o, n) for g, o, n in c.execute("SELECT gate, outcome, n_pass + n_fail + n_error FROM gates")}
    assert set(stored) == {"steady", "flaky", "broken"}

    # Second life: the same gates, now so slow that no evaluation finishes while we compare.
    slow = write_config(tracker("""
          - {id: steady, tier: critical, interval: 60s, timeout: 50s, command: {shell: "sleep 45"}}
          - {id: flaky, interval: 60s, timeout: 50s, command: {shell: "sleep 45"}}
          - {id: broken, interval: 60s, timeout: 50s, command: {shell: "sleep 45"}}
"""), "slow.yml")
    s2 = serve(slow, "--storage.path", str(db))
    after = restored_samples(s2)
    m = {(name, dict(labels)["gate"]): v for (name, labels), v in after.items() if name != "gate_evaluations_total"}
    assert m[("gate_passed", "steady")] == 1.0
    assert m[("gate_passed", "broken")] == 0.0 and m[("gate_probe_error", "broken")] == 0.0
    assert m[("gate_uptime_ratio", "steady")] == 1.0
    assert m[("gate_uptime_ratio", "broken")] == 0.0
    assert 0.0 < m[("gate_uptime_ratio", "flaky")] < 1.0
    assert ("gate_last_pass_timestamp_seconds", "broken") not in m
    with sqlite3.connect(db) as c:
        for gate, started, last_pass in c.execute("SELECT gate, started, last_pass FROM gates"):
            assert m[("gate_last_evaluation_timestamp_seconds", gate)] == started
            if last_pass is not None:
                assert m[("gate_last_pass_timestamp_seconds", gate)] == last_pass
    totals = {}
    for (name, labels), v in after.items():
        if name == "gate_evaluations_total":
            totals[dict(labels)["gate"]] = totals.get(dict(labels)["gate"], 0) + v
    assert totals == {g: n for g, (_, n) in stored.items()}
    # Stored histories load in the background once /-/ready answers: wait for them (bounded).
    deadline = time.monotonic() + 20
    while True:
        detail = json.loads(s2.get("/api/gates/flaky")[1])
        if len(detail["history"]) >= min(stored["flaky"][1], 50) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert detail["status"] == stored["flaky"][0]
    assert len(detail["history"]) == min(stored["flaky"][1], 50)
    outcomes = [h["outcome"] for h in detail["history"]]
    assert all(a != b for a, b in itertools.pairwise(outcomes)), "history keeps the alternation, newest first"
    assert sum(detail["counts"].values()) == stored["flaky"][1]
    status = json.loads(s2.get("/api/progress/status")[1])
    assert {g["id"]: g["status"] for g in status["gates"]}["steady"] == "pass"
    s2.stop()


def test_restart_with_the_same_config_compares_every_restored_sample(tmp_path: Path, write_config, serve) -> None:
    db = tmp_path / "state.db"
    hang = tmp_path / "hang"
    # Each gate hangs (until its timeout) once the `hang` file exists: the restarted exporter has
    # nothing new to say for 40 s, so /metrics shows exactly the restored state.
    config = write_config(tracker(f"""
          - id: a
            interval: 45s
            timeout: 40s
            command: {{shell: "if [ -f {hang} ]; then sleep 39; fi; echo 7", value_regex: "([0-9]+)"}}
          - id: b
            tier: critical
            interval: 45s
            timeout: 40s
            command: {{shell: "if [ -f {hang} ]; then sleep 39; fi; exit 3"}}
"""))
    s = serve(config, "--storage.path", str(db))
    wait_for(lambda: evaluations(s) >= 2, timeout=60, what="first evaluations")
    first = restored_samples(s)  # the next evaluation is 45 s away: this is the last thing it exports
    first_detail = {g: json.loads(s.get(f"/api/gates/{g}")[1]) for g in ("a", "b")}
    s.stop()
    names = {k[0] for k in first}
    assert {"gate_passed", "gate_value", "gate_last_evaluation_timestamp_seconds", "gate_uptime_ratio",
            "gate_evaluations_total", "gate_last_pass_timestamp_seconds", "gate_evaluation_duration_seconds"} <= names
    hang.touch()
    s2 = serve(config, "--storage.path", str(db))
    assert restored_samples(s2) == first
    for g, before in first_detail.items():
        after = json.loads(s2.get(f"/api/gates/{g}")[1])
        assert after["history"] == before["history"] and after["history"]
        for key in ("status", "value", "measurements", "last_evaluation", "last_pass", "counts", "message"):
            assert after[key] == before[key], key
    s2.stop()  # cancels the hanging evaluations: nothing is recorded
    s3 = serve(config, "--storage.path", str(db))
    assert restored_samples(s3) == first, "a second restart changes nothing"
    s3.stop()


def test_kill_9_while_writing_leaves_a_sound_file_with_every_commit(tmp_path: Path, write_config, serve) -> None:
    db = tmp_path / "state.db"
    (tmp_path / "present").write_text("x")
    gates = "".join(
        f"          - {{id: g{i:03d}, interval: 500ms, timeout: 400ms, "
        f"file: {{path: {tmp_path}/{'present' if i % 3 else 'absent'}}}}}\n" for i in range(150))
    config = write_config(tracker(gates))
    rng = random.Random(7)
    committed = 0
    for round_ in range(3):
        s = serve(config, "--storage.path", str(db))
        wait_for(lambda s=s, seen=committed: evaluations(s) > seen + 300, timeout=60, what="evaluations to pile up")
        time.sleep(rng.uniform(0.0, 0.7))  # land the kill anywhere in the writer's cycle
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
            committed = c.execute("SELECT sum(n_pass + n_fail + n_error) FROM gates").fetchone()[0]
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait(10)
        with sqlite3.connect(db) as c:
            assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",), f"round {round_}"
            after = c.execute("SELECT sum(n_pass + n_fail + n_error) FROM gates").fetchone()[0]
            buckets = c.execute("SELECT sum(total) FROM buckets").fetchone()[0]
            history_off = c.execute("SELECT count(*) FROM gates g WHERE (SELECT count(*) FROM history h "
                                    "WHERE h.gid = g.gid) != min(50, n_pass + n_fail + n_error)").fetchone()[0]
        assert after >= committed, "a commit seen before the kill was lost"
        assert buckets == after, "uptime counts and evaluation counts agree"
        assert history_off == 0, "every gate's history holds its last min(50, n) evaluations"
        committed = after
    s = serve(config, "--storage.path", str(db))
    assert evaluations(s) >= committed
    assert not [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]


def test_corrupt_file_at_start_is_moved_aside(tmp_path: Path, write_config, serve) -> None:
    db = tmp_path / "state.db"
    db.write_bytes(b"\x00not a database\xff" * 4096)
    config = write_config(tracker("          - {id: a, interval: 1s, timeout: 1s, file: {path: /etc/hostname}}\n"))
    s = serve(config, "--storage.path", str(db))
    log = s.log()
    line = next(line for line in log.splitlines() if "corrupt" in line)
    assert "level=error" in line and "moved_to=" in line
    aside = [p for p in tmp_path.iterdir()
             if p.name.startswith("state.db.corrupt-") and p.name[-4:] not in ("-wal", "-shm")]
    assert len(aside) == 1 and aside[0].read_bytes() == b"\x00not a database\xff" * 4096
    wait_for(lambda: "qualitygate_storage_writes_total 0.0" not in s.get("/metrics")[1], timeout=30, what="writes")
    assert "qualitygate_storage_up 1.0" in s.get("/metrics")[1]


def test_read_only_file_keeps_serving_and_counts_errors(tmp_path: Path, write_config, serve) -> None:
    db = tmp_path / "state.db"
    config = write_config(tracker("          - {id: a, interval: 1s, timeout: 1s, file: {path: /etc/hostname}}\n"))
    s = serve(config, "--storage.path", str(db))
    wait_for(lambda: evaluations(s) >= 2, timeout=30, what="evaluations")
    s.stop()
    make_read_only(db)
    try:
        s2 = serve(config, "--storage.path", str(db))
        assert parse_metrics(s2.get("/metrics")[1])[("gate_passed", frozenset(
            {"tracker": "durable", "phase": "p", "step": "s", "gate": "a", "tier": "important"}.items()))] == 1.0

        def errors() -> float:
            m = parse_metrics(s2.get("/metrics")[1])
            return m[("qualitygate_storage_errors_total", frozenset())]

        wait_for(lambda: errors() > 0, timeout=30, what="storage errors to be counted")
        text = s2.get("/metrics")[1]
        assert "qualitygate_storage_up 0.0" in text
        before = evaluations(s2)
        wait_for(lambda: evaluations(s2) > before + 2, timeout=30, what="evaluations to go on from memory")
        assert s2.get("/-/healthy")[0] == 200
        assert "storage write failed" in s2.log() or "cannot prepare the state file" in s2.log()
        assert s2.stop() == 0
    finally:
        undo_read_only(db)


def test_default_path_is_data_qualitygate_db_in_the_working_directory(tmp_path: Path, write_config) -> None:
    config = write_config(tracker("          - {id: a, interval: 1s, timeout: 1s, file: {path: /etc/hostname}}\n"))
    with open(tmp_path / "serve.log", "w") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "exporter", "serve", "--config.file", str(config),
                                 "--web.listen-address", "127.0.0.1:0"], cwd=tmp_path, stdout=log_file,
                                stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)}, text=True)
    s = Served(proc, wait_listening(proc, tmp_path / "serve.log"), tmp_path / "serve.log")
    try:
        wait_for(lambda: s.get("/-/ready", timeout=1)[0] == 200, timeout=30, what="ready")
        wait_for(lambda: evaluations(s) >= 1, timeout=30, what="an evaluation")
    finally:
        assert s.stop() == 0
    with sqlite3.connect(tmp_path / "data" / "qualitygate.db") as c:
        assert c.execute("SELECT count(*) FROM gates").fetchone()[0] == 1


def test_empty_storage_path_keeps_state_in_memory(tmp_path: Path, write_config, serve) -> None:
    config = write_config(tracker("          - {id: a, interval: 1s, timeout: 1s, file: {path: /etc/hostname}}\n"))
    s = serve(config, "--storage.path=")
    wait_for(lambda: evaluations(s) >= 1, timeout=30, what="an evaluation")
    assert "qualitygate_storage_up" not in s.get("/metrics")[1]
    assert "state kept in memory only" in s.log()


def test_a_gate_dropped_by_a_reload_and_restored_keeps_its_history(tmp_path: Path, write_config, serve) -> None:
    db = tmp_path / "state.db"
    both = tracker("""
          - {id: keep, interval: 1s, timeout: 1s, file: {path: /etc/hostname}}
          - {id: typo-victim, interval: 1s, timeout: 1s, file: {path: /etc/hostname}}
""")
    config = write_config(both)
    s = serve(config, "--storage.path", str(db), "--web.enable-lifecycle")

    def count(gate: str) -> float:
        m = parse_metrics(s.get("/metrics")[1])
        return sum(v for (n, ls), v in m.items() if n == "gate_evaluations_total" and dict(ls)["gate"] == gate)

    wait_for(lambda: count("typo-victim") >= 3, timeout=30, what="evaluations of the gate")
    config.write_text(both.replace("typo-victim", "typo-victm"))  # the typo
    req = urllib.request.Request(s.url + "/-/reload", method="POST")
    assert urllib.request.urlopen(req, timeout=30).status == 200
    assert count("typo-victim") == 0
    wait_for(lambda: "no longer configured" in s.log(), timeout=30, what="the writer to mark the gate unseen")
    with sqlite3.connect(db) as c:
        (before,) = c.execute("SELECT n_pass FROM gates WHERE gate = 'typo-victim'").fetchone()
    assert before >= 3, "the rows stay for the grace period"
    config.write_text(both)  # fixed
    assert urllib.request.urlopen(urllib.request.Request(s.url + "/-/reload", method="POST"), timeout=30).status == 200
    assert count("typo-victim") >= before, "memory got the stored history back at once"
    detail = json.loads(s.get("/api/gates/typo-victim")[1])
    assert len(detail["history"]) >= 3
    assert parse_metrics(s.get("/metrics")[1])[("gate_uptime_ratio", frozenset(
        {"tracker": "durable", "phase": "p", "step": "s", "gate": "typo-victim", "tier": "important"}.items()))] == 1.0
