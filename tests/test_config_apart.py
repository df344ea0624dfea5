"""serve's config loading in a child (exporter.config.apart: forked at start, a fresh process on reloads):
the same configs and errors as in-process, a child that dies is a clear error (and a failed reload keeps
the running config), no child is ever left a zombie, a reload's process has nothing but the config paths
on its command line, and a real `serve` reloads through it on SIGHUP."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ROOT, one_step_tracker, start_serve, wait_for
from exporter.config import apart, wire
from exporter.config.fields import ConfigError, Pattern
from exporter.engine import runtime as runtime_module
from exporter.engine.runtime import Runtime, load_configs
from exporter.probes import KINDS

EXAMPLES = ROOT / "examples"
EVERY_KIND = [EXAMPLES / "tracker.yml", *sorted((EXAMPLES / "probes").glob("*.yml"))]


@pytest.fixture
def in_child() -> Iterator[None]:
    """Loads go to a child, as in serve; afterwards in-process again, and no fallback remembered."""
    apart.enable()
    yield
    apart.enable(False)
    apart._in_process = None
    apart._no_fresh = None


def gone(pid: int) -> bool:
    """The child was reaped: it is no process of ours any more, not even a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def loaded_apart(paths: list[str], loader=load_configs) -> tuple[list, int]:
    pending = apart.start(paths, loader)
    pid = pending.pid
    assert pid > 0, "loaded in a child"
    try:
        return pending.result(), pid
    finally:
        assert gone(pid)
        assert apart._in_process is None or loader is _unpicklable, f"fell back: {apart._in_process}"


def _fields(spec: object) -> list[object]:
    """A probe spec's field values (specs have slots: no vars())."""
    return [getattr(spec, f.name) for f in dataclasses.fields(spec)]  # type: ignore[arg-type]


def test_every_probe_kind_arrives_as_loaded_in_process(in_child: None):
    paths = [str(p) for p in EVERY_KIND]
    here = load_configs(paths)
    there, _ = loaded_apart(paths)
    assert {g.kind for c in here for g in c.gates} == set(KINDS), "the examples use every probe kind"
    assert there == here
    for a, b in zip(there, here, strict=True):
        assert (a.base_dir, a.tracker_line, a.push_tokens_line) == (b.base_dir, b.tracker_line, b.push_tokens_line)
        assert [g.line for g in a.gates] == [g.line for g in b.gates]
        assert all(a.by_id[g.id] is g for g in a.gates), "by_id holds the very gates, not copies"
    patterns = [(g, v) for c in there for g in c.gates for v in _fields(g.spec) if isinstance(v, Pattern)]
    assert patterns, "the examples have RE2 patterns"
    for _, p in patterns:
        assert p.compiled.pattern == str(p).encode(), "compiled again on arrival"
    mappings = [v for c in there for g in c.gates for v in _fields(g.spec)
                if type(v).__name__ == "mappingproxy"]
    assert mappings, "the examples have mapping fields (headers, env)"
    with pytest.raises(TypeError):
        mappings[0]["x"] = "y"  # still read-only


BAD = {
    "yaml": "tracker: t\nphases: [\n  - id: p\n",
    "unknown-key": one_step_tracker("- {id: g, file: {path: /etc/hostname}}", bogus="1"),
}


@pytest.mark.parametrize("fresh", [False, True], ids=["forked", "fresh"])
@pytest.mark.parametrize("case", [*BAD, "missing-file", "two-files"])
def test_config_errors_are_the_same_issues_and_words(tmp_path: Path, case: str, fresh: bool, in_child: None):
    paths = []
    if case == "missing-file":
        paths = [str(tmp_path / "nope.yml")]
    elif case == "two-files":  # every file's issues, and the duplicate tracker found across files
        for name, interval in (("a.yml", "1m"), ("b.yml", "1m"), ("c.yml", "0s")):
            gate = f"- {{id: g, file: {{path: /etc/hostname}}, interval: {interval}}}"
            (tmp_path / name).write_text(one_step_tracker(gate))
        paths = [str(tmp_path / n) for n in ("a.yml", "b.yml", "c.yml")]
    else:
        (tmp_path / "bad.yml").write_text(BAD[case])
        paths = [str(tmp_path / "bad.yml")]
    with pytest.raises(ConfigError) as here:
        load_configs(paths)
    pending = apart.start(paths, load_configs, fresh)
    assert (pending._proc is not None) == fresh, "a fresh process only when asked"
    with pytest.raises(ConfigError) as there:
        pending.result()
    assert gone(pending.pid)
    assert apart._no_fresh is None
    assert there.value.issues == here.value.issues
    assert str(there.value) == str(here.value)
    assert all(str(i).startswith(f"{i.file}:{i.line}: ") for i in there.value.issues)
    if case == "two-files":
        assert any("duplicate tracker name 't'" in str(i) for i in there.value.issues)
        assert any(i.file.endswith("c.yml") for i in there.value.issues)


def _exit_3(paths: list[str]) -> list:
    os._exit(3)


def _sigkill(paths: list[str]) -> list:
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("not reached")


def _overflow(paths: list[str]) -> list:
    raise OverflowError("int too large to convert to float")


def test_a_child_that_dies_is_a_clear_error_and_leaves_no_zombie(tmp_path: Path, in_child: None):
    path = tmp_path / "t.yml"
    path.write_text(one_step_tracker("- {id: g, file: {path: /etc/hostname}}"))
    for loader, words in ((_exit_3, "exited 3 without a result"), (_sigkill, "was killed by signal 9 (SIGKILL)")):
        pending = apart.start([str(path)], loader)
        with pytest.raises(apart.LoadChildError, match=r"the process loading the config \(pid \d+\) ") as exc:
            pending.result()
        assert words in str(exc.value)
        assert gone(pending.pid)
    # What else the loader raised is raised here, as in-process.
    pending = apart.start([str(path)], _overflow)
    with pytest.raises(OverflowError, match="int too large"):
        pending.result()
    assert gone(pending.pid)


def test_cancel_kills_and_reaps(tmp_path: Path, in_child: None):
    path = tmp_path / "t.yml"
    path.write_text(one_step_tracker("- {id: g, file: {path: /etc/hostname}}"))
    pending = apart.start([str(path)], _sleeps)
    assert not pending.ready()
    pending.cancel()
    assert gone(pending.pid)


def _sleeps(paths: list[str]) -> list:
    import time

    time.sleep(60)
    return []


def _sleeps_after_saying_so(paths: list[str]) -> list:
    import time

    Path(paths[0]).write_text("started")
    time.sleep(60)
    return []


def test_a_child_past_the_deadline_is_killed(tmp_path: Path, in_child: None, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(apart, "DEADLINE", 0.5)
    pending = apart.start([str(tmp_path / "started")], _sleeps_after_saying_so)
    with pytest.raises(apart.LoadChildError, match=r"took more than 0.5 s \(the loading process was killed\)"):
        pending.result()
    assert gone(pending.pid)


def test_the_child_takes_default_signals_and_not_the_servers_wakeup_fd(tmp_path: Path, in_child: None):
    """As a reload forks inside serve: the loop's handlers and wakeup descriptor are installed. A SIGTERM
    (say, to the whole process group) ends the child, and tells the server nothing."""
    import socket

    got: list[int] = []
    r, w = socket.socketpair()
    r.setblocking(False)
    w.setblocking(False)
    old_fd = signal.set_wakeup_fd(w.fileno())
    old_handler = signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
    try:
        started = tmp_path / "started"
        pending = apart.start([str(started)], _sleeps_after_saying_so)
        wait_for(started.exists, timeout=10, what="the child to run its loader")
        os.kill(pending.pid, signal.SIGTERM)
        with pytest.raises(apart.LoadChildError, match=r"killed by signal 15 \(SIGTERM\)"):
            pending.result()
        assert gone(pending.pid)
        with pytest.raises(BlockingIOError):
            r.recv(16)  # no signal byte from the child
        assert got == []
    finally:
        signal.signal(signal.SIGTERM, old_handler)
        signal.set_wakeup_fd(old_fd)
        r.close()
        w.close()


def test_a_connection_the_server_closes_ends_while_the_child_runs(tmp_path: Path, in_child: None):
    import socket

    server_end, client_end = socket.socketpair()
    try:
        started = tmp_path / "started"
        pending = apart.start([str(started)], _sleeps_after_saying_so)
        wait_for(started.exists, timeout=10, what="the child to run its loader")
        server_end.close()  # the child must not hold a copy of it
        client_end.settimeout(5)
        assert client_end.recv(16) == b"", "EOF at once, not when the child ends"
        pending.cancel()
        assert gone(pending.pid)
    finally:
        client_end.close()


def _unpicklable(paths: list[str]) -> list:
    return [lambda: "made here"]


def test_a_result_that_does_not_pickle_loads_in_process_from_then_on(tmp_path: Path, in_child: None,
                                                                   caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING, "qualitygate"):
        first, _ = loaded_apart([], _unpicklable)
        assert first[0]() == "made here", "loaded again in-process"
        later = apart.start([], _unpicklable)
        assert later.pid == 0, "no child any more"
        assert later.result()[0]() == "made here"
    said = [r for r in caplog.records if "in-process from now on" in r.getMessage()]
    assert len(said) == 1 and "cannot be sent from a child" in said[0].__dict__["reason"]
    assert "pickle" in said[0].__dict__["reason"]


def test_loading_is_in_process_unless_enabled(tmp_path: Path):
    path = tmp_path / "t.yml"
    path.write_text(one_step_tracker("- {id: g, file: {path: /etc/hostname}}"))
    pending = apart.start([str(path)], load_configs)
    assert pending.pid == 0
    assert [c.tracker for c in pending.result()] == ["t"]


async def test_a_reload_whose_child_dies_keeps_the_running_config(tmp_path: Path, in_child: None,
                                                                  monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "t.yml"
    path.write_text(one_step_tracker("- {id: g, file: {path: /etc/hostname}, interval: 1h}"))
    runtime = Runtime([str(path)])
    try:
        await runtime.start(load_configs([str(path)]))
        path.write_text(one_step_tracker("- {id: h, file: {path: /etc/hostname}, interval: 1h}"))
        monkeypatch.setattr(runtime_module, "load_configs", _sigkill)  # the child runs it, and dies
        errors = await runtime.reload()
        assert len(errors) == 1 and "killed by signal 9 (SIGKILL)" in errors[0], errors
        assert not runtime.reload_ok
        assert [g.id for g in runtime.trackers["t"].gates] == ["g"], "the running config stays"
        monkeypatch.undo()
        assert await runtime.reload() == []
        assert runtime.reload_ok and [g.id for g in runtime.trackers["t"].gates] == ["h"]
        await asyncio.sleep(0)
    finally:
        await runtime.stop()


def _children(pid: int) -> list[str]:
    """pid's child processes with their state letter (Z: a zombie)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(f"{entry}:{fields[0]}")
    return out


def test_serve_reloads_through_a_child_on_sighup(tmp_path: Path, serve):
    path = tmp_path / "t.yml"
    path.write_text(one_step_tracker("- {id: first, file: {path: /etc/hostname}, interval: 1h}"))
    s = serve(path, "--storage.path", "")
    assert 'gate="first"' in s.get("/metrics")[1]
    path.write_text(one_step_tracker("- {id: second, file: {path: /etc/hostname}, interval: 1h}"))
    s.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: 'gate="second"' in s.get("/metrics")[1], timeout=20, what="the reloaded gate")
    assert 'gate="first"' not in s.get("/metrics")[1]
    # A bad file: the reload fails with FILE:LINE in the log, the running config stays.
    path.write_text("tracker: t\nphases: [\n")
    s.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "config reload failed" in s.log(), timeout=20, what="the failed reload")
    assert f"{path}:" in s.log()
    assert 'gate="second"' in s.get("/metrics")[1]
    assert "in-process" not in s.log(), "loaded in a child, not in the fallback"
    assert "fork from now on" not in s.log(), "reloaded in a fresh process"
    assert not _children(s.proc.pid), "every loading child was reaped"


CHILD_KILLED = ("import os, signal, sys; import exporter.cli.serve as serve; "
                "serve._load_configs = lambda paths: os.kill(os.getpid(), signal.SIGKILL); "
                "from exporter.cli import main; sys.exit(main(sys.argv[1:]))")


def test_serve_start_whose_child_dies_says_it_on_one_line_exit_2(tmp_path: Path):
    path = tmp_path / "t.yml"
    path.write_text(one_step_tracker("- {id: g, file: {path: /etc/hostname}}"))
    proc = subprocess.run([sys.executable, "-c", CHILD_KILLED, "serve", "--config.file", str(path),
                           "--web.listen-address", "127.0.0.1:0", "--storage.path", ""],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("qualitygate: cannot load the config: the process loading the config (pid ")
    assert lines[0].endswith("was killed by signal 9 (SIGKILL)")


def test_serve_start_serves_the_config_loaded_in_the_child(tmp_path: Path):
    path = tmp_path / "t.yml"
    path.write_text(one_step_tracker("- {id: g, file: {path: /etc/hostname}, interval: 1h}"))
    s = start_serve(path, tmp_path, "--storage.path", "")
    try:
        assert 'gate="g"' in s.get("/metrics")[1]
        assert not _children(s.proc.pid)
    finally:
        assert s.stop() == 0
    assert "in-process" not in s.log()


def test_the_answer_is_read_a_batch_of_gates_at_a_time(in_child: None, monkeypatch: pytest.MonkeyPatch):
    """The parent unpickles BATCH gates per call and offers the GIL in between (one pickle.loads of 10,000
    gates held it ~34 ms); the configs that arrive are still those loaded in-process, gates not copied."""
    monkeypatch.setattr(wire, "BATCH", 3)
    paths = [str(p) for p in EVERY_KIND]
    here = load_configs(paths)
    gates = sum(len(c.gates) for c in here)
    assert gates > 2 * 3, "several batches"
    offered: list[float] = []
    monkeypatch.setattr(wire.time, "sleep", offered.append)
    there, _ = loaded_apart(paths)
    assert offered == [0] * -(-gates // 3), "the GIL offered after each batch"
    assert there == here
    assert all(a.by_id[g.id] is g for a in there for g in a.gates)
    for a in there:
        assert {id(g) for p in a.phases for s in p.steps for g in s.gates} == {id(g) for g in a.gates}, \
            "steps hold the very gates of config.gates"
    assert wire.loads(wire.dumps(("raised", ValueError("x")))[8:])[0] == "raised", "other answers: no batches"


# --- reloads: a fresh process, not a fork of the (big) server ------------------------------------


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The argv of every fresh process started (the real one is started)."""
    out: list[list[str]] = []
    real = apart._spawn

    def record(argv: list[str], stdin: int, stdout: int) -> subprocess.Popen[bytes]:
        out.append(list(argv))
        return real(argv, stdin, stdout)

    monkeypatch.setattr(apart, "_spawn", record)
    return out


def fresh_argv(paths: list[str]) -> list[str]:
    return [sys.executable, "-I", "-X", f"utf8={sys.flags.utf8_mode}", "-c", apart.BOOT, "--", *paths]


ENV_GATE = "- {id: g, file: {path: '/etc/${QG_FRESH_A}/${PYTHONQG_FRESH_B:-x}'}, interval: 1h}"


def test_a_fresh_process_loads_as_in_process_and_its_argv_is_only_the_paths(
        tmp_path: Path, in_child: None, spawned: list[list[str]], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("QG_FRESH_A", "from-env")
    monkeypatch.setenv("PYTHONQG_FRESH_B", "python-prefixed")  # -I: Python ignores it, the config does not
    (tmp_path / "env.yml").write_text(one_step_tracker(ENV_GATE, tracker="e"))
    paths = [str(p) for p in EVERY_KIND] + [str(tmp_path / "env.yml")]
    here = load_configs(paths)
    pending = apart.start(paths, load_configs, fresh=True)
    assert pending._proc is not None and pending.pid == pending._proc.pid
    there = pending.result()
    assert gone(pending.pid)
    assert spawned == [fresh_argv(paths)], "nothing but the configured paths on its command line"
    assert there == here
    assert there[-1].gates[0].spec.path == "/etc/from-env/python-prefixed"
    assert all(a.by_id[g.id] is g for a in there for g in a.gates)
    assert apart._no_fresh is None and apart._in_process is None


def test_the_fresh_process_has_the_servers_sys_path_and_environment(
        tmp_path: Path, in_child: None, monkeypatch: pytest.MonkeyPatch):
    """What the child itself sees (it writes it down before loading): imports as the server's, the environment."""
    out = tmp_path / "seen.json"
    monkeypatch.setenv("QG_FRESH_OUT", str(out))
    monkeypatch.setattr(sys, "path", [*sys.path, str(tmp_path / "extra")])  # a path only this server has
    seen = ("import json, os; fds = sorted(int(n) for n in os.listdir('/proc/self/fd'));"
            "open(os.environ['QG_FRESH_OUT'], 'w').write(json.dumps("
            "{'path': sys.path, 'argv': sys.argv, 'env': dict(os.environ), 'fds': fds, 'nice': os.nice(0)}))\n")
    monkeypatch.setattr(apart, "BOOT", apart.BOOT.replace("fresh_main(", seen + "fresh_main("))
    path = tmp_path / "t.yml"
    path.write_text(one_step_tracker("- {id: g, file: {path: /etc/hostname}}"))
    import socket

    a, b = socket.socketpair()  # a connection of the server's, even one marked inheritable: not the child's
    a.set_inheritable(True)
    try:
        pending = apart.start([str(path)], load_configs, fresh=True)
        assert [c.tracker for c in pending.result()] == ["t"]
    finally:
        a.close()
        b.close()
    assert gone(pending.pid)
    child = json.loads(out.read_text())
    assert child["fds"][:3] == [0, 1, 2] and len(child["fds"]) <= 4, "stdin, stdout, stderr (+ listdir's own)"
    assert child["path"] == sys.path
    assert child["argv"] == ["-c", "--", str(path)]
    assert child["env"] == dict(os.environ)
    assert child["nice"] == min(19, os.nice(0) + apart.RELOAD_NICENESS), "its parse gives way to the server's work"


def test_a_killed_fresh_process_is_a_clear_error_and_leaves_no_zombie(tmp_path: Path, in_child: None):
    path = tmp_path / "t.yml"
    path.write_text(one_step_tracker("- {id: g, file: {path: /etc/hostname}}"))
    pending = apart.start([str(path)], load_configs, fresh=True)
    assert pending._proc is not None
    os.kill(pending.pid, signal.SIGKILL)
    with pytest.raises(apart.LoadChildError, match=r"\(pid \d+\) was killed by signal 9 \(SIGKILL\)"):
        pending.result()
    assert gone(pending.pid)
    pending = apart.start([str(path)], load_configs, fresh=True)
    pending.cancel()
    assert gone(pending.pid)


def test_only_the_files_loader_runs_fresh_and_start_up_forks(tmp_path: Path, in_child: None,
                                                            spawned: list[list[str]]):
    pending = apart.start([str(tmp_path / "started")], _sleeps_after_saying_so, fresh=True)
    assert pending.pid > 0 and pending._proc is None, "a loader of its own: forked"
    pending.cancel()
    pending = apart.start([str(p) for p in EVERY_KIND], load_configs)
    assert pending.pid > 0 and pending._proc is None, "fresh not asked (start-up): forked"
    pending.cancel()
    assert spawned == []


def _cannot_spawn(argv: list[str], stdin: int, stdout: int) -> subprocess.Popen[bytes]:
    raise OSError(7, "Argument list too long")


@pytest.mark.parametrize("how", ["spawn-fails", "cannot-import", "exits-1", "another-version", "spawn-raises"])
def test_a_fresh_process_that_cannot_start_forks_from_then_on_said_once(
        tmp_path: Path, in_child: None, how: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture):
    if how == "spawn-fails":
        monkeypatch.setattr(apart, "_spawn", _cannot_spawn)
    elif how == "cannot-import":
        monkeypatch.setattr(apart, "BOOT", apart.BOOT.replace("exporter.config.apart", "exporter.config.nowhere"))
    elif how == "exits-1":  # an interpreter that does not run our code (a frozen binary reads -I as its flag)
        monkeypatch.setattr(apart, "BOOT", "import sys; sys.exit(1)")
    elif how == "another-version":  # the code on disk is not the server's (upgraded since it started)
        monkeypatch.setattr(apart, "code_fingerprint", lambda: "the server's, before an upgrade")
    else:  # not an OSError: whatever stops the start must not leave every reload failing
        monkeypatch.setattr(apart, "_spawn", lambda *_: (_ for _ in ()).throw(TypeError("no executable")))
    monkeypatch.setattr(sys, "path", [*sys.path, Path("/not/a/str")])  # import skips it; so must the payload
    gc.collect()  # descriptors earlier tests left to the collector are closed now, not during this test
    fds = set(os.listdir("/proc/self/fd"))
    paths = [str(p) for p in EVERY_KIND]
    here = load_configs(paths)
    with caplog.at_level(logging.WARNING, "qualitygate"):
        first = apart.start(paths, load_configs, fresh=True)
        assert first.result() == here
        assert gone(first.pid)
        later = apart.start(paths, load_configs, fresh=True)
        assert later.pid > 0 and later._proc is None, "forked"
        assert later.result() == here
    said = [r for r in caplog.records if "fork from now on" in r.getMessage()]
    assert len(said) == 1, said
    reason = said[0].__dict__["reason"]
    assert {"spawn-fails": "Argument list too long",
            "cannot-import": "(exit 78): ModuleNotFoundError: No module named 'exporter.config.nowhere'",
            "exits-1": "could not run the loader (exit 1): ",
            "another-version": "(exit 78): ImportError: the exporter on disk is not the code this server runs",
            "spawn-raises": "no executable"}[how] in reason, reason
    assert apart._in_process is None
    assert set(os.listdir("/proc/self/fd")) <= fds, "no descriptor left open"


async def test_a_reload_runs_fresh_and_one_whose_process_dies_keeps_the_running_config(
        tmp_path: Path, in_child: None, spawned: list[list[str]], monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "t.yml"
    path.write_text(one_step_tracker("- {id: g, file: {path: /etc/hostname}, interval: 1h}"))
    runtime = Runtime([str(path)])
    real = apart._spawn  # the recording one (spawned)

    def spawn_and_kill(argv: list[str], stdin: int, stdout: int) -> subprocess.Popen[bytes]:
        proc = real(argv, stdin, stdout)
        os.kill(proc.pid, signal.SIGKILL)
        return proc

    try:
        await runtime.start(load_configs([str(path)]))
        path.write_text(one_step_tracker("- {id: h, file: {path: /etc/hostname}, interval: 1h}"))
        with monkeypatch.context() as m:
            m.setattr(apart, "_spawn", spawn_and_kill)
            errors = await runtime.reload()
        assert len(errors) == 1 and "killed by signal 9 (SIGKILL)" in errors[0], errors
        assert not runtime.reload_ok
        assert [g.id for g in runtime.trackers["t"].gates] == ["g"], "the running config stays"
        assert await runtime.reload() == []
        assert runtime.reload_ok and [g.id for g in runtime.trackers["t"].gates] == ["h"]
        assert spawned == [fresh_argv([str(path)])] * 2, "both reloads' loads ran in a fresh process"
    finally:
        await runtime.stop()


def test_a_reload_reads_the_answer_back_on_the_event_loop_in_slices(in_child: None, monkeypatch: pytest.MonkeyPatch):
    """load_sliced (Runtime.reload): the child's answer is read back a batch per step on the event loop, which
    runs other callbacks between every two steps (budget 0); the configs are those loaded in-process, and a
    failed load raises as load() does. Forked (fresh=False), so that the child pickles 3 gates a batch too."""
    monkeypatch.setattr(wire, "BATCH", 3)
    paths = [str(p) for p in EVERY_KIND]
    here = load_configs(paths)
    batches = -(-sum(len(c.gates) for c in here) // 3)
    monkeypatch.setattr(wire.time, "sleep", lambda _: pytest.fail("no GIL offered from a thread: on the loop"))
    turns = 0
    at_steps: list[int] = []
    steps = apart.Answer.steps

    def counted(self: apart.Answer):
        gen = steps(self)
        try:
            while True:
                next(gen)
                at_steps.append(turns)
                yield
        except StopIteration as done:
            return done.value

    monkeypatch.setattr(apart.Answer, "steps", counted)

    async def run() -> list:
        stop = False

        def tick() -> None:
            nonlocal turns
            turns += 1
            if not stop:
                asyncio.get_running_loop().call_soon(tick)

        asyncio.get_running_loop().call_soon(tick)
        try:
            return await apart.load_sliced(paths, load_configs, fresh=False, budget=0.0)
        finally:
            stop = True

    there = asyncio.run(run())
    assert there == here
    assert all(a.by_id[g.id] is g for a in there for g in a.gates)
    assert len(at_steps) == batches
    assert all(b > a for a, b in itertools.pairwise(at_steps)), "the loop turned between every two batches"
    bad = Path(paths[0]).parent / "no-such-tracker.yml"
    with pytest.raises(ConfigError):
        asyncio.run(apart.load_sliced([str(bad)], load_configs, fresh=True))


def test_a_sliced_load_whose_result_does_not_pickle_loads_in_process_in_a_thread(in_child: None):
    """The fallback of load_sliced: what the child could not send is loaded again in-process, off the loop."""
    import threading

    where: list[str] = []

    def unpicklable(paths: list[str]) -> list:
        where.append(threading.current_thread().name)
        return [lambda: "made here"]

    async def run() -> tuple[list, str]:
        return await apart.load_sliced([], unpicklable), threading.current_thread().name

    got, loop_thread = asyncio.run(run())
    assert got[0]() == "made here"
    assert apart._in_process is not None and "cannot be sent from a child" in apart._in_process
    assert where and where[-1] != loop_thread, "loaded again in a thread, not on the event loop"


def test_a_reload_that_forks_runs_as_nice_as_the_fresh_process_and_start_up_does_not(in_child: None):
    """The fork is a reload's fallback (and start-up's way): a reload's child gives way to scrapes as a
    fresh process does; start-up's, before anything listens, runs at the server's own niceness."""

    def niceness(paths: list[str]) -> list:
        raise RuntimeError(f"niceness {os.nice(0)}")  # sent back to the parent, which raises it

    ours = os.nice(0)
    for fresh, expected in ((True, min(19, ours + apart.RELOAD_NICENESS)), (False, ours)):
        pending = apart.start(["unused.yml"], niceness, fresh=fresh)  # not the files loader: it forks
        assert pending.pid > 0
        with pytest.raises(RuntimeError, match=f"^niceness {expected}$"):
            pending.result()
