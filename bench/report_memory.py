"""Peak memory of parsing a large report: the streaming parsers against the whole-tree parse they replaced.

Writes a JUnit file (default 200 MB: about 1.3 million test cases) and a Cobertura file of the
same size, then parses each in a fresh subprocess and prints that process's peak RSS (VmHWM):
`idle` is the interpreter with the exporter imported and nothing parsed, `tree` the old way
(read the bytes, ElementTree.fromstring, iterate), `stream` the probes as they are now.

    .venv/bin/python bench/report_memory.py [--mb 200] [--dir DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_CASE = '<testcase classname="pkg.module.TestClass{i}" name="test_something_{i}" time="0.001"/>\n'
_FAILED = ('<testcase classname="pkg.module.TestClass{i}" name="test_f_{i}" time="0.1">'
           '<failure message="x">trace</failure></testcase>\n')
_LINE = '<line number="{i}" hits="1"/>\n'

_CHILD = r"""
import resource, sys, time
sys.path.insert(0, {root!r})
from exporter.probes import junit, coverage
mode, kind, path = sys.argv[1:4]
t0 = time.perf_counter()
if mode == "stream":
    out = junit.read_reports(path, "r")[0].tests if kind == "junit" else coverage.read_coverage(path)
elif mode == "tree":
    import xml.etree.ElementTree as ET
    root = ET.fromstring(open(path, "rb").read())
    out = sum(1 for _ in root.iter("testcase")) if kind == "junit" else root.get("line-rate")
else:
    out = None
took = time.perf_counter() - t0
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]
print(int(hwm) // 1024, f"{{took:.1f}}", out)
"""


def write_junit(path: Path, size: int) -> None:
    """A JUnit report of about `size` bytes; every 1000th test case failed."""
    with open(path, "w") as fh:
        fh.write('<?xml version="1.0" encoding="utf-8"?>\n<testsuites><testsuite name="big">\n')
        i = written = 0
        while written < size:
            line = (_FAILED if i % 1000 == 999 else _CASE).format(i=i)
            fh.write(line)
            written += len(line)
            i += 1
        fh.write("</testsuite></testsuites>\n")


def write_cobertura(path: Path, size: int) -> None:
    """A Cobertura report of about `size` bytes (many <line> elements in one class)."""
    with open(path, "w") as fh:
        fh.write('<?xml version="1.0"?>\n<coverage lines-valid="100" lines-covered="87" line-rate="0.87">'
                 '<packages><package name="p"><classes><class name="c" filename="c.py"><lines>\n')
        i = written = 0
        while written < size:
            line = _LINE.format(i=i)
            fh.write(line)
            written += len(line)
            i += 1
        fh.write("</lines></class></classes></package></packages></coverage>\n")


def measure(mode: str, kind: str, path: Path) -> tuple[int, str, str]:
    """(peak RSS MiB, seconds, result) of one parse in a fresh interpreter."""
    code = _CHILD.format(root=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code, mode, kind, str(path)], capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[0]), out[1], out[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="report size in MB")
    parser.add_argument("--dir", help="where to write the reports (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        size = args.mb * 1000 * 1000
        files = {"junit": Path(tmp) / "junit.xml", "cobertura": Path(tmp) / "coverage.xml"}
        t0 = time.perf_counter()
        write_junit(files["junit"], size)
        write_cobertura(files["cobertura"], size)
        print(f"wrote 2 x {args.mb} MB in {time.perf_counter() - t0:.1f}s")
        print(f"{'report':<10} {'mode':<7} {'peak RSS MiB':>12} {'seconds':>8}  result")
        for kind, path in files.items():
            for mode in ("idle", "tree", "stream"):
                rss, took, out = measure(mode, "junit" if kind == "junit" else "coverage", path)
                print(f"{kind:<10} {mode:<7} {rss:>12} {took:>8}  {out}")


if __name__ == "__main__":
    main()
