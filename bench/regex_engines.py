"""Regex engines on target data: Python's backtracking `re` against google-re2 (linear time).

`python -m bench.regex_engines [--n 27]` prints, side by side, the time each engine takes for
  - the ReDoS case of issue 12: `(a+)+$` against n `a`s and a `!` (re backtracks 2^n paths),
  - a body_regex on a 4 MiB body (the http probe's body limit), for a plain pattern, a capture
    found at the very end, and a pattern whose DFA outgrows re2's memory budget so that re2 falls
    back to its slower NFA (the worst case re2 has, still linear),
  - how long the event loop's thread is held while re2 matches in a worker thread (re2 releases
    the GIL inside its matcher, so the loop keeps ticking).
Python `re` runs in a child process bounded by --limit seconds, so the script always ends.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time

import re2

CASES_4MIB = [
    ("plain word, no match", r"build passed", b"x" * (4 << 20)),
    ("capture at the end", r"coverage: (\d+)%", b"x" * (4 << 20) + b" coverage: 91%"),
    ("DFA blow-up: (a|b)*a(a|b){20}", r"(a|b)*a(a|b){20}c", b"ab" * (2 << 20)),
]

_RE_CHILD = """
import re, sys, time
pattern, text = sys.argv[1], sys.stdin.buffer.read()
t = time.perf_counter(); re.search(pattern.encode(), text); print(time.perf_counter() - t)
"""


def time_re(pattern: str, text: bytes, limit: float) -> str:
    """Seconds Python's `re` takes, measured in a child process killed after `limit` seconds."""
    try:
        out = subprocess.run([sys.executable, "-c", _RE_CHILD, pattern], input=text, capture_output=True,
                             timeout=limit, check=True)
    except subprocess.TimeoutExpired:
        return f"> {limit:.0f} s (killed)"
    return f"{float(out.stdout):.4f} s"


def time_re2(pattern: str, text: bytes) -> float:
    compiled = re2.compile(pattern.encode())
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        compiled.search(text)
        best = min(best, time.perf_counter() - t)
    return best


def loop_ticks_while_matching(pattern: str, text: bytes) -> tuple[float, int, float]:
    """Match in a thread while this thread ticks every 1 ms: (match seconds, ticks, longest gap)."""
    compiled = re2.compile(pattern.encode())
    done = threading.Event()
    spent = [0.0]

    def work() -> None:
        t = time.perf_counter()
        compiled.search(text)
        spent[0] = time.perf_counter() - t
        done.set()

    ticks, worst, last = 0, 0.0, time.perf_counter()
    thread = threading.Thread(target=work)
    thread.start()
    while not done.is_set():
        time.sleep(0.001)
        now = time.perf_counter()
        worst, last, ticks = max(worst, now - last), now, ticks + 1
    thread.join()
    return spent[0], ticks, worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=27, help="number of 'a's before the '!' (default 27)")
    parser.add_argument("--limit", type=float, default=60.0, help="seconds Python re may take per case")
    args = parser.parse_args()
    redos = b"a" * args.n + b"!"
    rows = [(f"(a+)+$ on {args.n} a's + '!'", r"(a+)+$", redos), *CASES_4MIB]
    print(f"{'case':<38} {'python re':>18} {'re2':>12}")
    for name, pattern, text in rows:
        print(f"{name:<38} {time_re(pattern, text, args.limit):>18} {time_re2(pattern, text):>10.4f} s")
    for name, pattern, text in CASES_4MIB[1:]:
        spent, ticks, worst = loop_ticks_while_matching(pattern, text)
        print(f"re2 in a thread, {name}: match {spent * 1000:.1f} ms, main thread ticked {ticks} times, "
              f"longest gap {worst * 1000:.1f} ms")


if __name__ == "__main__":
    main()
