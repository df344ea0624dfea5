"""Sharding: every gate in exactly one shard, minimal movement, uptime gates beside their target."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config.fields import ConfigError
from exporter.config.model import parse_config
from exporter.engine.runtime import load_configs
from exporter.engine.sharding import gate_key, shard_config, shard_of


def big_config(steps: int = 60, gates_per_step: int = 5, uptime: bool = True):
    lines = ["tracker: big", "phases:", "  - id: p", "    steps:"]
    for s in range(steps):
        lines += [f"      - id: s{s}", "        gates:"]
        for g in range(gates_per_step):
            lines += [f"          - id: g{s}-{g}", "            file: {path: /etc/hostname}"]
    if uptime:
        # An uptime gate in another step, observing g0-0: it must land beside g0-0 whatever N is.
        lines += ["      - id: slo", "        gates:", "          - id: slo-g0",
                  "            uptime: {gate: g0-0}", '            expect: "> 99%"']
    return parse_config("\n".join(lines) + "\n")


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7])
def test_every_gate_in_exactly_one_shard(count: int):
    config = big_config()
    seen: dict[str, int] = {}
    for i in range(count):
        for g in shard_config(config, i, count).gates:
            assert g.id not in seen
            seen[g.id] = i
    assert set(seen) == {g.id for g in config.gates}


def test_steps_stay_together_and_uptime_follows_its_target():
    config = big_config()
    for count in (2, 3, 5, 8):
        shards = {g.id: shard_of(gate_key(config, g), count) for g in config.gates}
        assert shards["slo-g0"] == shards["g0-0"]
        for s in range(60):
            assert len({shards[f"g{s}-{k}"] for k in range(5)}) == 1


def test_growing_three_to_four_moves_about_a_quarter_and_only_to_the_new_shard():
    config = big_config(steps=400, gates_per_step=1, uptime=False)
    before = {g.id: shard_of(gate_key(config, g), 3) for g in config.gates}
    after = {g.id: shard_of(gate_key(config, g), 4) for g in config.gates}
    moved = [gid for gid in before if before[gid] != after[gid]]
    assert all(after[gid] == 3 for gid in moved), "keys only move to the new shard"
    assert 0.15 < len(moved) / len(before) < 0.35, len(moved)
    sizes = [sum(1 for v in after.values() if v == i) for i in range(4)]
    assert min(sizes) > 60, sizes  # reasonably even: 100 expected each


def test_explicit_shard_key_groups_gates_across_steps():
    text = """
tracker: t
phases:
  - id: p
    steps:
      - id: a
        gates:
          - {id: x, shard_key: db, file: {path: /etc/hostname}}
      - id: b
        gates:
          - {id: y, shard_key: db, file: {path: /etc/hostname}}
"""
    config = parse_config(text)
    for count in range(2, 9):
        assert shard_of(gate_key(config, config.gates[0]), count) == shard_of(gate_key(config, config.gates[1]), count)


def test_directory_of_trackers_and_duplicate_names(tmp_path: Path):
    d = tmp_path / "trackers"
    d.mkdir()
    body = ("phases:\n  - id: p\n    steps:\n      - id: s\n        gates:\n"
            "          - {id: g, file: {path: /etc/hostname}}\n")
    (d / "a.yml").write_text("tracker: alpha\n" + body)
    (d / "b.yaml").write_text("tracker: beta\n" + body)
    (d / "notes.txt").write_text("not a tracker")
    configs = load_configs([str(d)])
    assert [c.tracker for c in configs] == ["alpha", "beta"]
    (d / "c.yml").write_text("# copy\ntracker: alpha\n" + body)
    with pytest.raises(ConfigError) as info:
        load_configs([str(d)])
    assert [str(i) for i in info.value.issues] == [
        f"{d / 'c.yml'}:2: tracker: duplicate tracker name 'alpha' (also in {d / 'a.yml'}:1)"]


def test_empty_directory_is_an_error(tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        load_configs([str(tmp_path)])
    assert "no *.yml or *.yaml config files found" in str(info.value)
