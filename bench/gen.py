"""Synthetic tracker configs for the benchmarks: N gates, spread over phases and steps."""

from __future__ import annotations

from pathlib import Path

GATES_PER_STEP = 20
STEPS_PER_PHASE = 25


def tracker_yaml(n: int, gate_yaml, *, interval: str = "15s", timeout: str = "5s", tracker: str = "bench") -> str:
    """A tracker of `n` gates; `gate_yaml(i)` returns the probe part of gate i (YAML flow lines)."""
    lines = [f"tracker: {tracker}", "title: Benchmark tracker", "defaults:",
             f"  interval: {interval}", f"  timeout: {timeout}", "  tier: important", "phases:"]
    per_phase = GATES_PER_STEP * STEPS_PER_PHASE
    for i in range(n):
        if i % per_phase == 0:
            lines += [f"  - id: phase-{i // per_phase:03d}", f"    title: Phase {i // per_phase}", "    steps:"]
        if i % GATES_PER_STEP == 0:
            s = i // GATES_PER_STEP
            lines += [f"      - id: step-{s:04d}", f"        title: Step {s}", f"        team: Team {s % 7}",
                      "        gates:"]
        lines.append(f"          - id: gate-{i:05d}")
        lines.append(f'            title: "Gate {i} of the benchmark"')
        lines.append(f"            tier: {('critical', 'important', 'enhancement')[i % 3]}")
        lines.extend("            " + part for part in gate_yaml(i))
    return "\n".join(lines) + "\n"


def all_series_config(n: int, file_path: str) -> str:
    """P1: file gates with a threshold; every 20th gate is an uptime gate observing its neighbour.

    Together they produce every per-gate family of the contract (gate_objective_ratio included).
    """
    def gate(i: int) -> list[str]:
        if i % GATES_PER_STEP == GATES_PER_STEP - 1:
            return [f"uptime: {{gate: gate-{i - 1:05d}}}", 'expect: "> 99%"']
        return [f"file: {{path: {file_path}}}", 'expect: "< 30d"']
    return tracker_yaml(n, gate)


def mixed_config(n: int, url: str, file_path: str, http_share: float = 0.5, interval: str = "15s",
                 timeout: str = "1s") -> str:
    """P3: http gates against `url` and file gates, interleaved."""
    every = max(1, round(1 / http_share)) if http_share > 0 else 0

    def gate(i: int) -> list[str]:
        if every and i % every == 0:
            return [f'http: {{url: "{url}"}}', 'expect: "response_time < 1s"']
        return [f"file: {{path: {file_path}}}"]
    return tracker_yaml(n, gate, interval=interval, timeout=timeout)


def write(path: Path, text: str) -> Path:
    """Write a config and return its path."""
    path.write_text(text)
    return path
