"""RSS after each of a few reloads that change every gate: where the soak's growth per reload comes from.

The soak's setup (10,000 gates at 15 s, half http against local nginx, half file; a reload alternates the
timeout, so every gate changes), but reloads `--gap` seconds apart and no waiting for histories to fill:
a few minutes instead of 30. With `--mallocstats`, CPython's own account of its arenas
(sys._debugmallocstats(), run inside the server through gdb, which must be installed) after the start
and each reload: live blocks, free blocks and unused pools inside arenas, which RSS counts and a reload's
churn leaves behind. With `--trim`, one malloc_trim(0) through gdb at the end, and the RSS after it.

    .venv/bin/python bench/reload_rss.py [--gates 10000] [--reloads 3] [--gap 60] [--mallocstats] [--trim]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import gen
from bench.support import exporter, memory, nginx

KEYS = ("# arenas allocated current", "# bytes in allocated blocks", "# bytes in available blocks", "unused pools")


def gdb(pid: int, *commands: str) -> str:
    argv = ["gdb", "-p", str(pid), "-batch"]
    for c in commands:
        argv += ["-ex", c]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120).stdout


def mallocstats(pid: int, out: Path) -> list[str]:
    """sys._debugmallocstats() of the running server (it writes to fd 2: pointed at `out` meanwhile)."""
    code = (f"import os, sys; fd = os.open('{out}', os.O_WRONLY | os.O_CREAT | os.O_TRUNC); old = os.dup(2); "
            "os.dup2(fd, 2); sys._debugmallocstats(); os.dup2(old, 2); os.close(fd); os.close(old)")
    gdb(pid, "set $g = (int)PyGILState_Ensure()", f'call (int)PyRun_SimpleString("{code}")',
        "call (void)PyGILState_Release($g)")
    if not out.exists():
        return ["(gdb could not run it)"]
    return [" ".join(line.split()) for line in out.read_text().splitlines() if any(k in line for k in KEYS)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gates", type=int, default=10_000)
    parser.add_argument("--reloads", type=int, default=3)
    parser.add_argument("--gap", type=float, default=60.0, help="seconds between reloads")
    parser.add_argument("--mallocstats", action="store_true")
    parser.add_argument("--trim", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qg-reload-rss-") as tmp:
        work = Path(tmp)
        flip = work / "flip.txt"
        flip.write_text("x\n")
        with nginx(work) as target:
            def config(timeout: str) -> str:
                return gen.mixed_config(args.gates, target, str(flip), http_share=0.5, interval="15s", timeout=timeout)

            path = gen.write(work / "gates.yml", config("1s"))
            with exporter(path, work) as exp:
                pid = exp.proc.pid
                exp.wait_evaluated(300)
                time.sleep(20)

                def show(what: str, n: int) -> None:
                    print(f"{what}: RSS {memory(pid)['VmRSS'] / 2**20:.1f} MB", flush=True)
                    if args.mallocstats:
                        for line in mallocstats(pid, work / f"stats{n}.txt"):
                            print(f"    {line}", flush=True)

                show("start", 0)
                for k in range(args.reloads):
                    path.write_text(config("2s" if k % 2 == 0 else "1s"))
                    os.kill(pid, signal.SIGHUP)
                    time.sleep(args.gap)
                    show(f"after reload {k + 1}", k + 1)
                if args.trim:
                    gdb(pid, "call (int)malloc_trim(0)")
                    time.sleep(2)
                    show("after one malloc_trim(0)", args.reloads + 1)


if __name__ == "__main__":
    main()
