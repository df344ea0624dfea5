"""Three real exporters sharing one tracker, one real Prometheus with the shipped recording rules."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import ROOT, free_port, parse_metrics, sample, wait_for
from stack_support import promql, start_prometheus

pytestmark = pytest.mark.skipif(not shutil.which("prometheus"),
                                reason="prometheus is installed by scripts/system-deps.sh")

STEPS, PER_STEP = 12, 3


def tracker(tmp_path: Path) -> Path:
    lines = ["tracker: sharded", "defaults: {interval: 1s, timeout: 500ms}", "phases:"]
    for p in range(3):
        lines += [f"  - id: phase{p}", "    steps:"]
        for s in range(STEPS // 3):
            lines += [f"      - id: step{p}-{s}", "        gates:"]
            for g in range(PER_STEP):
                # Steps pass 0..3 of their 3 gates (by position), so each shard has its own ratio.
                path = "/etc/hostname" if g < (p + s) % 4 else f"/nonexistent/{p}-{s}-{g}"
                lines += [f"          - {{id: g{p}-{s}-{g}, file: {{path: {path}}}}}"]
    path = tmp_path / "sharded.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def gate_ids(text: str) -> set[str]:
    return {dict(labels)["gate"] for (name, labels) in parse_metrics(text) if name == "gate_info"}


def all_evaluated(served) -> bool:
    m = parse_metrics(served.get("/metrics")[1])
    return sample(m, "tracker_gates", status="pending", tier="important") in (0, None)


def test_three_shards_aggregate_like_one_exporter_then_grow_to_four(tmp_path: Path, serve):
    config = tracker(tmp_path)
    single = serve(config)
    wait_for(lambda: all_evaluated(single), timeout=30, what="single exporter to evaluate everything")
    one = parse_metrics(single.get("/metrics")[1])
    total_ratio = sample(one, "tracker_completion_ratio", tracker="sharded")
    expected = sum(min(3, (p + s) % 4) for p in range(3) for s in range(STEPS // 3)) / (STEPS * PER_STEP)
    assert total_ratio == pytest.approx(expected)
    phase_ratio = {f"phase{p}": sample(one, "phase_completion_ratio", phase=f"phase{p}") for p in range(3)}
    single.stop()

    shards = [serve(config, "--shard.index", str(i), "--shard.count", "3") for i in range(3)]
    for s in shards:
        wait_for(lambda s=s: all_evaluated(s), timeout=30, what="each shard to evaluate its gates")
    placed = {i: gate_ids(s.get("/metrics")[1]) for i, s in enumerate(shards)}
    everything = set().union(*placed.values())
    assert len(everything) == STEPS * PER_STEP
    assert sum(len(v) for v in placed.values()) == STEPS * PER_STEP, "every gate in exactly one shard"
    for i, s in enumerate(shards):
        assert sample(parse_metrics(s.get("/metrics")[1]), "qualitygate_shard_info", index=str(i), count="3") == 1

    prom_port = free_port()
    (tmp_path / "prom").mkdir()
    prom = start_prometheus({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ROOT / "rules" / "qualitygate-recording.yml")],
        "scrape_configs": [{"job_name": "qualitygate",
                            "static_configs": [{"targets": [f"127.0.0.1:{s.port}" for s in shards]}]}],
    }, tmp_path / "prom", prom_port)
    try:
        def value(expr: str):
            res = promql(prom.url, expr)["data"]["result"]
            return float(res[0]["value"][1]) if len(res) == 1 else None

        wait_for(lambda: value('sum(tracker_gates{tracker="sharded"})') == STEPS * PER_STEP, timeout=60,
                 what="prometheus to scrape all three shards")
        ratios = [sample(parse_metrics(s.get("/metrics")[1]), "tracker_completion_ratio") for s in shards]
        assert len(set(ratios)) > 1, "the shards' own ratios differ"
        agg = wait_for(lambda: (v := value('tracker:tracker_gates:pass_ratio{tracker="sharded"}')) is not None
                       and abs(v - total_ratio) < 1e-9 and v, timeout=30, what="the recording rule over three shards")
        assert agg == pytest.approx(total_ratio)
        for phase, ratio in phase_ratio.items():
            got = wait_for(lambda phase=phase: value(f'tracker_phase:gate_passed:ratio{{phase="{phase}"}}'), timeout=30)
            assert got == pytest.approx(ratio), phase
    finally:
        prom.stop()
    for s in shards:
        s.stop()

    grown = [serve(config, "--shard.index", str(i), "--shard.count", "4") for i in range(4)]
    for s in grown:
        wait_for(lambda s=s: all_evaluated(s), timeout=30)
    after = {i: gate_ids(s.get("/metrics")[1]) for i, s in enumerate(grown)}
    assert set().union(*after.values()) == everything
    moved = {g for i in range(3) for g in placed[i] if g not in after[i]}
    # Only gates that now belong to the new shard 3 moved, a whole step at a time.
    assert moved == after[3]
    assert len(moved) % PER_STEP == 0
    print(f"3 -> 4 shards: {len(moved)} of {len(everything)} gates moved ({len(moved) / len(everything):.0%})")
