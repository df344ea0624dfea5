"""P5: command gates: evaluations per second against a plain fork/exec loop of the same command.

Both run one command at a time (the exporter with --scheduler.max-concurrency 1, more gates due
than it can run, so it runs flat out): the cost per evaluation of ours (pipes, its own process
group, output capture, result recording) against the bare minimum of os.fork + os.execv +
os.waitpid in a loop in a fresh Python process.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from bench import gen
from bench.report import Row
from bench.support import PYTHON, BenchError, exporter

COMMAND = "/bin/true"
FORK_EXEC_LOOP = """
import json, os, sys, time
cmd, seconds = sys.argv[1], float(sys.argv[2])
n, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < seconds:
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(cmd, [cmd])
        finally:
            os._exit(127)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        sys.exit(f"{cmd} exited {status}")
    n += 1
print(json.dumps({"runs": n, "seconds": time.perf_counter() - t0}))
"""


def fork_exec(seconds: float) -> float:
    """Runs per second of the plain loop."""
    out = subprocess.run([PYTHON, "-c", FORK_EXEC_LOOP, COMMAND, str(seconds)], capture_output=True, text=True,
                         timeout=seconds + 60, check=True)
    doc = json.loads(out.stdout)
    return doc["runs"] / doc["seconds"]


def ours(workdir: Path, seconds: float, gates: int) -> dict[str, float]:
    """Evaluations per second of command gates, one at a time."""
    def gate(i: int) -> list[str]:
        return [f'command: {{argv: ["{COMMAND}"]}}']

    config = gen.write(workdir / "p5.yml", gen.tracker_yaml(gates, gate, interval="200ms", timeout="200ms"))
    with exporter(config, workdir, "--scheduler.max-concurrency", "1") as exp:
        exp.wait_evaluated(60, interval=0.2)
        before = exp.samples("gate_evaluations_total")
        t0 = time.monotonic()
        time.sleep(seconds)
        after = exp.samples("gate_evaluations_total", "gate_passed")
        elapsed = time.monotonic() - t0
    if after["gate_passed"] < gates * 0.99:
        raise BenchError(f"only {after['gate_passed']:g} of {gates} command gates passed")
    evaluations = after["gate_evaluations_total"] - before["gate_evaluations_total"]
    return {"evaluations": evaluations, "seconds": elapsed, "rate": evaluations / elapsed}


def run(workdir: Path, smoke: bool) -> list[Row]:
    """Measure and return the P5 rows."""
    seconds = 2.0 if smoke else 15.0
    base = fork_exec(seconds)
    me = ours(workdir, seconds, 100 if smoke else 400)
    ratio = base / me["rate"]
    return [Row("P5", f"command gate evaluations/s, `{COMMAND}`, one at a time", me["rate"], "/s",
                peer=base, peer_what="os.fork + os.execv + waitpid loop", ratio=ratio, ratio_what="slower",
                target="within 1.5x", ok=ratio <= 1.5, details={"ours": me, "fork_exec_per_s": base})]
