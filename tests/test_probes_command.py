"""`command` probe with real subprocesses: exit codes, values on stdout, hangs, held pipes, floods."""

from __future__ import annotations

import asyncio
import os
import resource
import secrets
import signal
import sys
import time
from pathlib import Path

import pytest

from conftest import one_step_tracker, parse_metrics, sample, wait_for
from exporter.engine.evaluate import evaluate
from exporter.probes import ProbeError
from exporter.probes.command import KIND, CommandSpec, _Capture
from probe_support import config_errors, make_ctx, parse_gate, run_probe

PY = sys.executable


def py(code: str, **kw) -> CommandSpec:
    """A command running a tiny Python script."""
    return CommandSpec(argv=(PY, "-c", code), **kw)


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def read_pids(path: Path) -> list[int]:
    return [int(p) for p in path.read_text().split()] if path.exists() else []


async def test_exit_zero_passes():
    m = await run_probe("command", py("print('hello')"))
    assert m.ok and m.message == ""
    assert m.values["exit_code"] == 0 and m.value == 0
    assert m.values["duration"] > 0


async def test_nonzero_exit_fails_with_last_stderr_line():
    m = await run_probe("command", py("import sys; print('noise', file=sys.stderr); sys.exit('boom: 2 failed')"))
    assert not m.ok
    assert m.message == "exit code 1: boom: 2 failed"
    assert m.values["exit_code"] == 1 and m.value == 1
    m = await run_probe("command", py("raise SystemExit(3)"))
    assert m.message == "exit code 3"


async def test_killed_by_a_signal_fails():
    m = await run_probe("command", py("import os, signal; os.kill(os.getpid(), signal.SIGTERM)"))
    assert not m.ok and m.message == "killed by SIGTERM"
    assert m.values["exit_code"] == -signal.SIGTERM


@pytest.mark.parametrize("output, regex, want", [
    ("coverage: 87.5%", r"coverage: (\S+)", 0.875),
    ("coverage: 87%", r"coverage: (\d+)%", 0.87),
    ("took 12 ms", r"took (\d+) ms", 12.0),
    ("p95=0.25", r"\d+\.\d+", 0.25),
])
async def test_value_regex(output: str, regex: str, want: float):
    m = await run_probe("command", py(f"print('line one'); print({output!r})", value_regex=regex))
    assert m.ok
    assert m.value == pytest.approx(want)
    assert m.values["exit_code"] == 0


async def test_value_regex_without_match_or_number_is_an_error():
    with pytest.raises(ProbeError, match=r"^value_regex 'coverage: \(\\d\+\)' did not match the output$"):
        await run_probe("command", py("print('nothing here')", value_regex=r"coverage: (\d+)"))
    with pytest.raises(ProbeError, match="captured 'abc', not a number"):
        await run_probe("command", py("print('v=abc')", value_regex=r"v=(\w+)"))


async def test_value_regex_on_failure_keeps_the_fail():
    m = await run_probe("command", py("print('failed=4'); raise SystemExit(2)", value_regex=r"failed=(\d+)"))
    assert not m.ok and m.value == 4 and m.values["exit_code"] == 2
    m = await run_probe("command", py("raise SystemExit(2)", value_regex=r"failed=(\d+)"))
    assert not m.ok and m.value == 2


async def test_command_not_found_is_an_error(tmp_path: Path):
    with pytest.raises(ProbeError, match=r"^command not found: qg-no-such-command$"):
        await run_probe("command", CommandSpec(argv=("qg-no-such-command",)))
    with pytest.raises(ProbeError, match=r"^command not found \(exit 127\): .*qg-no-such-command: .*not found"):
        await run_probe("command", CommandSpec(shell="qg-no-such-command --flag"))
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\nexit 0\n")  # not executable
    with pytest.raises(ProbeError, match="permission denied"):
        await run_probe("command", CommandSpec(argv=(str(script),)))


async def test_shell_env_and_a_minimal_inherited_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("QG_EXPORTER_SECRET", "do-not-leak")
    spec = CommandSpec(shell='echo "n=$N leaked=${QG_EXPORTER_SECRET:-no} path=${PATH:+yes}"',
                       env={"N": "5"}, value_regex=r"n=(\d+)")
    m = await run_probe("command", spec)
    assert m.ok and m.value == 5
    m = await run_probe("command", CommandSpec(shell='test -z "$QG_EXPORTER_SECRET" && test -n "$PATH"'))
    assert m.ok, m.message


async def test_cwd_defaults_to_the_config_folder_and_can_be_set(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "marker.txt").write_text("11")
    (tmp_path / "sub" / "marker.txt").write_text("22")
    spec = py("print('marker', open('marker.txt').read())", value_regex=r"marker (\d+)")
    assert (await run_probe("command", spec, make_ctx(base_dir=str(tmp_path)))).value == 11
    gate = parse_gate(tmp_path, f"""
        - id: in-sub
          command:
            argv: [{PY}, -c, "print('marker', open('marker.txt').read())"]
            cwd: sub
            value_regex: 'marker (\\d+)'
    """)
    assert gate.spec.cwd == str(tmp_path / "sub")
    assert (await run_probe("command", gate.spec, make_ctx(base_dir=str(tmp_path)))).value == 22
    with pytest.raises(ProbeError, match="no such directory"):
        await run_probe("command", CommandSpec(argv=("true",), cwd=str(tmp_path / "missing")))


async def test_hang_is_killed_at_the_timeout_with_its_whole_process_group(tmp_path: Path):
    (tmp_path / "hang.py").write_text("""
import subprocess, sys, os, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
open("pids", "w").write(f"{os.getpid()} {child.pid}")
time.sleep(120)
""")
    gate = parse_gate(tmp_path, f"""
        - id: hang
          timeout: 2s
          command: {{argv: ["{PY}", hang.py]}}
    """)
    assert KIND.timeout_outcome == "fail"
    result = await evaluate(gate, make_ctx(timeout=gate.timeout, base_dir=str(tmp_path)))
    assert result.outcome == "fail" and result.message == "timed out after 2s"
    leader, child = read_pids(tmp_path / "pids")
    wait_for(lambda: not alive(leader) and not alive(child), timeout=15, what="the process group to be gone")


async def test_a_child_keeping_stdout_open_does_not_hang_the_probe(tmp_path: Path):
    pids = tmp_path / "pids"
    code = f"""
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
open({str(pids)!r}, "w").write(str(child.pid))
print("parent done 7")
"""
    m = await run_probe("command", py(code, value_regex=r"done (\d+)"), make_ctx(timeout=60))
    assert m.ok and m.value == 7
    (child,) = read_pids(pids)
    wait_for(lambda: not alive(child), timeout=15, what="the background child to be killed")


async def test_a_child_escaping_the_group_with_the_pipe_open_does_not_hang_the_probe(tmp_path: Path):
    pids = tmp_path / "pids"
    code = f"""
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
open({str(pids)!r}, "w").write(str(child.pid))
print("parent done 8")
"""
    m = await run_probe("command", py(code, value_regex=r"done (\d+)"), make_ctx(timeout=60))
    assert m.ok and m.value == 8
    (child,) = read_pids(pids)
    assert not os.path.exists(f"/proc/{child}")  # killed and reaped before the probe returned


def unique_arg() -> str:
    """A sleep duration no other process uses, to find the daemons a test started by their cmdline."""
    return f"4242.{secrets.randbelow(10**6):06d}"


def processes_with(arg: str) -> list[int]:
    """Pids whose command line holds `arg` (zombies have none: see zombies_of_ours)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as fh:
                    if arg.encode() in fh.read().split(b"\0"):
                        found.append(int(name))
            except OSError:
                continue
    return found


def zombies_of_ours() -> set[int]:
    out = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as fh:
                    fields = fh.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == b"Z" and int(fields[1]) == os.getpid():
                out.add(int(name))
    return out


DAEMONS = {
    "setsid": "setsid sleep {arg} &",
    "setsid holding stdout, then exit 0": "setsid sleep {arg} & echo started",
    "nohup": "nohup sleep {arg} >/dev/null 2>&1 &",
    "double fork": "(sleep {arg} &) ; (setsid sh -c 'sleep {arg} &' &)",
    "daemon with children": "setsid sh -c 'sleep {arg} & sleep {arg} & exec sleep {arg}' >/dev/null 2>&1 &",
}


@pytest.mark.parametrize("shell", DAEMONS.values(), ids=DAEMONS.keys())
async def test_daemons_a_command_starts_are_killed_and_reaped(shell: str):
    arg = unique_arg()
    zombies_before = zombies_of_ours()
    m = await run_probe("command", CommandSpec(shell=shell.format(arg=arg)), make_ctx(timeout=30))
    assert m.ok, m.message
    assert processes_with(arg) == []
    assert zombies_of_ours() - zombies_before == set()


async def test_a_python_double_fork_is_killed_and_reaped(tmp_path: Path):
    arg = unique_arg()
    code = f"""
import os
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp("sleep", ["sleep", {arg!r}])
    os._exit(0)
os.wait()
"""
    zombies_before = zombies_of_ours()
    m = await run_probe("command", py(code), make_ctx(timeout=30))
    assert m.ok, m.message
    assert processes_with(arg) == []
    assert zombies_of_ours() - zombies_before == set()


async def test_daemons_of_a_command_that_times_out_are_killed(tmp_path: Path):
    arg = unique_arg()
    gate = parse_gate(tmp_path, f"""
        - id: slow
          timeout: 1s
          command: {{shell: "setsid sleep {arg} & nohup sleep {arg} >/dev/null 2>&1 & sleep {arg}"}}
    """)
    result = await evaluate(gate, make_ctx(timeout=gate.timeout, base_dir=str(tmp_path)))
    assert result.outcome == "fail" and result.message == "timed out after 1s"
    assert processes_with(arg) == []


async def test_a_cancellation_anywhere_around_the_spawn_leaves_no_daemon():
    """Cancelled after 0..N loop iterations and under tiny timeouts: before, during and right after the
    fork, while the shell starts its daemons; every run's processes are still killed and reaped."""
    arg = unique_arg()
    # Runs on for 0.1 s after starting its daemons, so that each cancellation below falls before its end.
    spec = CommandSpec(shell=f"setsid sleep {arg} & (sleep {arg} &) & nohup sleep {arg} >/dev/null 2>&1 & "
                             "sleep 0.1; exit 0")
    zombies_before = zombies_of_ours()
    cancelled = 0
    for steps in range(40):
        task = asyncio.ensure_future(KIND.probe(spec, make_ctx(timeout=30)))
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            cancelled += 1
    for k in range(40):
        try:
            await asyncio.wait_for(KIND.probe(spec, make_ctx(timeout=30)), 0.0005 * k)
        except TimeoutError:
            cancelled += 1
    assert cancelled >= 60  # nearly every run was cut short (a stalled loop may let one finish)
    # The kill is synchronous on the way out; the reaps finish in the background (shielded): polled
    # without blocking the loop they run on.
    deadline = time.monotonic() + 10
    while (processes_with(arg) or zombies_of_ours() - zombies_before) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert processes_with(arg) == [], "a daemon of a cancelled run survived"
    assert zombies_of_ours() - zombies_before == set(), "a process of a cancelled run was not reaped"


def test_no_daemon_survives_a_serve_shutdown(serve, write_config):
    done, running = unique_arg(), unique_arg()
    config = write_config(one_step_tracker(f"""
        - id: daemonizes
          interval: 1s
          timeout: 900ms
          command: {{shell: "setsid sleep {done} & echo ok"}}
        - id: in-flight
          interval: 10m
          timeout: 10m
          command: {{shell: "setsid sleep {running} & sleep {running}"}}
    """))
    served = serve(config)

    def evaluations() -> float:
        metrics = parse_metrics(served.get("/metrics")[1])
        return sum(v for (name, labels), v in metrics.items()
                   if name == "gate_evaluations_total" and ("gate", "daemonizes") in labels)

    wait_for(lambda: evaluations() >= 3 and len(processes_with(running)) == 2, timeout=60,
             what="three evaluations and the in-flight command with its daemon")
    assert len(processes_with(done)) <= 1  # at most the run in flight: none left from earlier runs
    assert served.stop() == 0
    assert processes_with(done) == [] and processes_with(running) == []


async def test_a_flood_of_output_is_read_with_bounded_memory():
    size_mb = 300
    code = f"""
import sys
block = "x" * (1024 * 1024)
print("first line 1")
for _ in range({size_mb}):
    sys.stdout.write(block)
print()
print("result 42")
"""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    m = await run_probe("command", py(code, value_regex=r"result (\d+)"), make_ctx(timeout=120))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert m.ok and m.value == 42  # the summary at the end survives the cap
    assert grown_mb < 50, f"peak RSS grew by {grown_mb:.0f} MB reading {size_mb} MB of output"
    m = await run_probe("command", py(code, value_regex=r"first line (\d+)"), make_ctx(timeout=120))
    assert m.value == 1  # and so does the head


def test_capture_keeps_head_and_tail():
    cap = _Capture(4, 4)
    for chunk in (b"ab", b"cdef", b"0123456789", b"XY"):
        cap.feed(chunk)
    assert cap.text() == "abcd\n89XY"
    small = _Capture(10, 10)
    small.feed(b"hello")
    assert small.text() == "hello"


async def test_cancellation_kills_the_group_immediately(tmp_path: Path):
    pids = tmp_path / "pids"
    code = f"import os, time; open({str(pids)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    task = asyncio.ensure_future(run_probe("command", py(code), make_ctx(timeout=60)))
    wait_started = time.monotonic()
    while not read_pids(pids) and time.monotonic() - wait_started < 30:
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (pid,) = read_pids(pids)
    wait_for(lambda: not alive(pid), timeout=15, what="the cancelled command to be killed")


def test_config_checks(tmp_path: Path):
    key = "phases[0].steps[0].gates[0].command"
    assert config_errors(tmp_path, """
        - id: c
          command: {argv: [echo], shell: "echo"}
    """) == [f"{key}.shell: use either argv or shell, not both"]
    assert config_errors(tmp_path, """
        - id: c
          command: {cwd: .}
    """) == [f"{key}: needs argv (a list) or shell (a string)"]
    assert config_errors(tmp_path, """
        - id: c
          command: {argv: [], env: {"BAD-NAME": x}}
    """) == [f"{key}.argv: must name a program", f"{key}.env: invalid variable name 'BAD-NAME'"]
    assert config_errors(tmp_path, """
        - id: c
          command: {shell: "true", value_regex: "[", argv: "ls"}
    """) == [f"{key}.argv: must be a list, got a scalar",
             f"{key}.value_regex: invalid regular expression '[': unterminated character set at position 0"]


def test_a_redos_value_regex_does_not_hold_up_a_healthy_gate(serve, write_config):
    # (a+)+$ on 27 a's and a '!' took Python's re 7-14 s and froze the whole exporter with it;
    # on RE2 it is a plain non-match (an error: no value), and the healthy gate keeps its schedule.
    config = write_config(one_step_tracker(f"""
        - id: hostile
          interval: 1s
          timeout: 900ms
          command: {{shell: "printf '{"a" * 27}!'", value_regex: "(a+)+$"}}
        - id: healthy
          interval: 1s
          timeout: 900ms
          command: {{shell: "echo 1"}}
    """))
    served = serve(config)

    def counts() -> dict[tuple[str, str], float]:
        metrics = parse_metrics(served.get("/metrics")[1])
        return {(dict(labels)["gate"], dict(labels)["result"]): v for (name, labels), v in metrics.items()
                if name == "gate_evaluations_total"}

    wait_for(lambda: counts().get(("hostile", "error"), 0) >= 5, timeout=60, what="five hostile evaluations")
    seen = counts()
    assert seen.get(("healthy", "pass"), 0) >= 4 and seen.get(("hostile", "pass"), 0) == 0
    lag = sample(parse_metrics(served.get("/metrics")[1]), "qualitygate_scheduler_lag_seconds")
    assert lag is not None and lag < 1.0


@pytest.mark.parametrize(("pattern", "reason"), [
    (r"([0-9]+) passed, \1 total", r"backreferences (\1, (?P=name)) are not supported"),
    ("coverage: (?=[0-9])([0-9]+)", "lookahead and lookbehind ((?=...), (?<=...)) are not supported"),
    ("(?<!no )coverage ([0-9]+)", "negative lookahead and lookbehind ((?!...), (?<!...)) are not supported"),
    ("(?>a+)b", "atomic groups (?>...) are not supported"),
])
def test_a_pattern_re2_cannot_run_is_a_config_error_at_its_line(tmp_path: Path, pattern: str, reason: str):
    from exporter.config.fields import ConfigError

    with pytest.raises(ConfigError) as caught:
        parse_gate(tmp_path, f"""
            - id: c
              command:
                shell: "echo 1"
                value_regex: '{pattern}'
        """)
    (issue,) = caught.value.issues
    key = "phases[0].steps[0].gates[0].command.value_regex"
    assert str(issue) == (f"{tmp_path / 'gates.yml'}:10: {key}: invalid regular expression {pattern!r}: {reason} "
                          "(patterns run on RE2: linear time, no backtracking)")


def test_patterns_are_compiled_once_at_load(tmp_path: Path):
    gate = parse_gate(tmp_path, """
        - id: c
          command: {shell: "echo 1", value_regex: 'v=(\\d+)'}
    """)
    assert gate.spec.value_regex == r"v=(\d+)"
    assert gate.spec.value_regex.compiled.groups == 1  # the RE2 program, built by the loader
