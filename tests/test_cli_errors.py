"""CLI errors are one line on stderr and exit 2, never a traceback with exit 1 (which means "gates failing").

Each case runs the real command (`python -m exporter ...`) in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, TESTDATA

TRACKER_MD = TESTDATA / "trackers" / "flat.md"
FILE_GATES = ROOT / "examples" / "probes" / "file.yml"


def run(*args: str, cwd: Path = ROOT, code: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "exporter", *args] if code is None else [sys.executable, "-c", code, *args]
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=timeout, stdin=subprocess.DEVNULL)


def message_lines(stderr: str) -> list[str]:
    """stderr without the exporter's own log events (serve logs before it fails)."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("ts=")]


def assert_one_line(out: subprocess.CompletedProcess[str], *words: str) -> str:
    assert "Traceback" not in out.stderr, out.stderr
    lines = message_lines(out.stderr)
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert len(lines) == 1, out.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# (id, argv with {tmp} for a scratch directory, words the one line must hold)
CASES = [
    ("check --json /", ["check", "--config.file", str(FILE_GATES), "--json", "/"], ["--json /", "directory"]),
    ("check --json DIR", ["check", "--config.file", str(FILE_GATES), "--json", "{tmp}"], ["--json", "directory"]),
    ("check --junit-xml in /proc", ["check", "--config.file", str(FILE_GATES), "--junit-xml", "/proc/x/y.xml"],
     ["--junit-xml /proc/x/y.xml", "cannot write"]),
    ("check --markdown in /proc", ["check", "--config.file", str(FILE_GATES), "--markdown", "/proc/x.md"],
     ["--markdown /proc/x.md", "cannot write"]),
    ("check --storage.path missing", ["check", "--config.file", str(FILE_GATES), "--storage.path", "{tmp}/no.db"],
     ["no.db"]),
    ("check --storage.path not a database", ["check", "--config.file", str(FILE_GATES), "--storage.path",
                                             str(FILE_GATES)], ["file.yml"]),
    ("check --concurrency 0", ["check", "--config.file", str(FILE_GATES), "--concurrency", "0"], ["--concurrency"]),
    ("check --config.file missing", ["check", "--config.file", "{tmp}/none.yml"], ["none.yml:1:"]),
    ("check --config.file empty dir", ["check", "--config.file", "{tmp}"], ["no *.yml"]),
    ("import -o DIR/", ["import", str(TRACKER_MD), "-o", "{tmp}/"], ["-o", "directory"]),
    ("import -o in /proc", ["import", str(TRACKER_MD), "-o", "/proc/x.yml"], ["-o /proc/x.yml", "cannot write"]),
    ("import missing input", ["import", "{tmp}/none.md"], ["none.md", "No such file"]),
    ("import a directory", ["import", "{tmp}"], ["Is a directory"]),
    ("render -o in /proc", ["render", "--config.file", str(FILE_GATES), "-o", "/proc/x.md"],
     ["-o /proc/x.md", "cannot write"]),
    ("render -o DIR", ["render", "--config.file", str(FILE_GATES), "-o", "{tmp}"], ["-o", "directory"]),
    ("render --storage.path missing", ["render", "--config.file", str(FILE_GATES), "-o", "{tmp}/out.md",
                                       "--storage.path", "{tmp}/no.db"], ["no.db"]),
    ("validate missing", ["validate", "{tmp}/none.yml"], ["none.yml:1:"]),
    ("serve --storage.path DIR", ["serve", "--config.file", str(FILE_GATES), "--web.listen-address", "127.0.0.1:0",
                                  "--storage.path", "{tmp}"], ["--storage.path", "directory"]),
    ("serve bad listen address", ["serve", "--config.file", str(FILE_GATES), "--web.listen-address", "localhost"],
     ["--web.listen-address"]),
    ("serve unassignable address", ["serve", "--config.file", str(FILE_GATES), "--storage.path", "",
                                    "--web.listen-address", "192.0.2.1:0"], ["cannot listen on 192.0.2.1:0"]),
    ("serve --web.config.file DIR", ["serve", "--config.file", str(FILE_GATES), "--web.listen-address",
                                     "127.0.0.1:0", "--web.config.file", "{tmp}"], ["cannot read web config"]),
    ("serve --web.read-timeout bad", ["serve", "--config.file", str(FILE_GATES), "--web.read-timeout", "soon"],
     ["--web.read-timeout"]),
]


@pytest.mark.parametrize(("argv", "words"), [(a, w) for _, a, w in CASES], ids=[c[0] for c in CASES])
def test_cli_error_is_one_line_and_exit_2(tmp_path: Path, argv: list[str], words: list[str]) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    out = run(*(a.replace("{tmp}", str(scratch)) for a in argv), cwd=tmp_path)
    assert_one_line(out, *words)
    # Nothing half-written is left behind where an output was refused.
    assert sorted(p.name for p in scratch.iterdir()) == [], list(scratch.iterdir())


def test_a_refused_report_is_refused_before_any_gate_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    config = tmp_path / "gates.yml"
    config.write_text(f"""
tracker: t
phases:
  - id: p
    steps:
      - id: s
        gates:
          - id: g
            command: {{argv: [touch, "{marker}"]}}
""")
    out = run("check", "--config.file", str(config), "--json", str(tmp_path))
    assert_one_line(out, "--json")
    assert not marker.exists()


# An unexpected exception anywhere in a command: the last guard in main() answers for it.
BOOM = ("import sys\n"
        "import exporter.cli.check as check\n"
        "async def boom(*a, **k):\n"
        "    raise RuntimeError('boom\\nsecond line')\n"
        "check.run_check = boom\n"
        "from exporter.cli.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n")


def test_an_unexpected_exception_is_one_line_and_exit_2() -> None:
    out = run("check", "--config.file", str(FILE_GATES), code=BOOM)
    line = assert_one_line(out, "internal error", "RuntimeError", "boom second line", "--log.level debug")
    assert line.startswith("qualitygate check: ")


def test_the_traceback_is_shown_at_log_level_debug() -> None:
    out = run("check", "--config.file", str(FILE_GATES), "--log.level", "debug", code=BOOM)
    assert out.returncode == 2
    assert "Traceback (most recent call last)" in out.stderr
    assert "RuntimeError: boom" in out.stderr
    assert "qualitygate check: internal error: RuntimeError: boom second line" in out.stderr


def test_a_closed_stdout_is_not_a_traceback() -> None:
    # `qualitygate schema | head -0`: the reader is gone before the first write.
    proc = subprocess.Popen([sys.executable, "-m", "exporter", "schema"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(60) == 2
    assert "Traceback" not in err and "Exception ignored" not in err, err


def test_usage_errors_of_argparse_stay_exit_2() -> None:
    out = run("check")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "--config.file" in out.stderr
