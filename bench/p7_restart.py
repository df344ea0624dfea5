"""P7: restart with a 30-day state file of 10,000 gates: launch until /-/ready, and until the histories are back.

The state file is written the way bench/storage_size.py writes it (the uptime buckets 30 days leave
after compaction, and each gate's last 50 evaluations, through the Store's own writer), then a real
`qualitygate serve` starts on it. Ready means outcomes, counters and uptime are restored and every
gate is scheduled; the histories load in a thread after that, and the bench also times when
/api/gates/{id} of the last gate shows all 50 entries again.

The exporter's modules are compiled to bytecode first, as an installed package has them (pip compiles
at install): this tree's environment sets PYTHONDONTWRITEBYTECODE=1, and without the .pyc every launch
compiled its ~120 modules again (import time 0.30 s vs 0.22 s with .pyc, measured at load 1.4; the
last session saw 0.25-0.5 s of compiling at load 3.5), which no deployment pays.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
import urllib.request
from pathlib import Path

from bench import storage_size
from bench.report import Row
from bench.support import PYTHON, ROOT, exporter, wait_for


def run(workdir: Path, smoke: bool) -> list[Row]:
    """Measure and return the P7 rows."""
    gates = 300 if smoke else 10_000
    days = 3 if smoke else 30
    runs = 1 if smoke else 2
    config = workdir / "restart.yml"
    config.write_text(storage_size.config_text(gates, days))
    seed = workdir / "seed.db"
    # compileall writes the .pyc whatever PYTHONDONTWRITEBYTECODE says; launches then read them
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(ROOT / "exporter")], check=True, timeout=300)
    t0 = time.perf_counter()
    storage_size.write(str(seed), gates, 15.0, days, time.time())
    written = time.perf_counter() - t0
    readies, fulls = [], []
    last = f"gate-{gates - 1:05d}"
    for i in range(runs):
        run_dir = workdir / f"run{i}"
        run_dir.mkdir()
        (run_dir / "state.db").write_bytes(seed.read_bytes())
        with exporter(config, run_dir) as exp:
            readies.append(exp.ready_after)

            def full() -> bool:
                with urllib.request.urlopen(f"{exp.url}/api/gates/{last}", timeout=10) as resp:
                    return len(json.load(resp)["history"]) >= 50

            wait_for(full, 120, "the restored histories", interval=0.1)
            fulls.append(time.monotonic() - exp.started)
    ready, whole = statistics.median(readies), statistics.median(fulls)
    details = {"bytecode": "compiled before the launches (as installed)", "gates": gates, "days": days,
               "state_bytes": seed.stat().st_size, "seed_written_s": written,
               "ready_runs_s": readies, "histories_back_runs_s": fulls}
    return [
        Row("P7", f"restart with a {days}-day state file of {gates:,} gates: launch until /-/ready "
                  f"(median of {runs})", ready, "s", target="< 2.5 s", ok=ready < 2.5, details=details),
        Row("P7b", "same: until /api/gates/{id} shows the whole restored history (loaded after ready)", whole,
            "s", target="(informational)", ok=None, details={"see": "P7"}),
    ]
