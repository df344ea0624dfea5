"""Hostile and careless config files: bounded, refused with FILE:LINE, never a traceback (issue 12)."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from exporter.config import yamlload
from exporter.config.durations import MAX_SECONDS, parse_duration
from exporter.config.expect import parse_condition
from exporter.config.fields import ConfigError, Reader
from exporter.config.model import load_config, parse_config
from tests.conftest import one_step_tracker, parse_metrics, sample

ROOT = Path(__file__).resolve().parent.parent
TESTDATA = Path(__file__).parent / "testdata"
FILE_GATE = "- id: g\n  file: {path: /etc/hostname}\n"


def billion_laughs(width: int = 100) -> str:
    """Phases of steps of gates, each level `width` aliases of the one below: width**3 gates if expanded."""
    return "\n".join([
        "tracker: t",
        "x:",
        "  g: &g {id: g, file: {path: x}}",
        "  s: &s {id: s, gates: [" + ",".join(["*g"] * width) + "]}",
        "  p: &p {id: p, steps: [" + ",".join(["*s"] * width) + "]}",
        "phases: [" + ",".join(["*p"] * width) + "]",
        "",
    ])


def test_billion_laughs_is_refused_at_the_alias_with_small_memory(tmp_path: Path):
    bomb = tmp_path / "bomb.yml"
    bomb.write_text(billion_laughs())
    assert bomb.stat().st_size < 1700
    # Measure the child's peak memory through a wrapper that reports its own VmHWM after validating. Not
    # ru_maxrss: Linux keeps that across exec, so a child of a large pytest process starts at pytest's peak.
    code = ("import sys\nfrom exporter.cli import main\ntry:\n    rc = main(['validate', sys.argv[1]])\n"
            "finally:\n    print(next(ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('VmHWM:')))\n"
            "sys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(bomb)], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        f"{bomb}:6: invalid YAML: aliases expand to more than 100,000 nodes (at alias *p)"]
    peak_kib = int(proc.stdout.split()[-1])
    assert peak_kib < 150 * 1024, f"validate of a 1.6 KB file peaked at {peak_kib} KiB"


def test_aliases_are_counted_at_their_expanded_size():
    # Just under the limit is fine (a config may share a block by alias), one alias more is not.
    text = one_step_tracker("- {id: g0, file: &f {path: /etc/hostname}}\n- {id: g1, file: *f}\n- {id: g2, file: *f}\n")
    assert [g.spec for g in parse_config(text).gates[1:]] == [parse_config(text).gates[0].spec] * 2
    leaf = "[" + ",".join(["x"] * 999) + "]"  # 1,000 nodes
    ok = "a: &a " + leaf + "\nb: [" + ",".join(["*a"] * 100) + "]\n"  # aliases: 100 x 1,000 nodes
    assert yamlload.compose(ok, "f.yml") is not None
    with pytest.raises(ConfigError) as info:
        yamlload.compose(ok.replace("*a]", "*a, *a]"), "f.yml")
    assert str(info.value) == "f.yml:2: invalid YAML: aliases expand to more than 100,000 nodes (at alias *a)"


def test_the_pure_python_path_bounds_aliases_too(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(yamlload, "_FastLoader", None)
    with pytest.raises(ConfigError, match=r"^f.yml:6: invalid YAML: aliases expand to more than 100,000 nodes"):
        yamlload.compose(billion_laughs(), "f.yml")
    with pytest.raises(yamlload.AliasLimitError):
        yaml.load(billion_laughs(), Loader=yamlload.BoundedSafeLoader)


def test_a_recursive_alias_is_refused():
    with pytest.raises(ConfigError) as info:
        parse_config("tracker: t\nphases: &p\n  - id: p\n    steps: *p\n", "f.yml")
    assert str(info.value) == "f.yml:4: invalid YAML: alias *p refers to a node that contains it"


def test_reloading_a_bomb_fails_the_reload_and_keeps_the_old_config(tmp_path: Path, serve):
    config = tmp_path / "gates.yml"
    config.write_text(one_step_tracker(FILE_GATE, tracker="good"))
    exp = serve(config, "--web.enable-lifecycle")
    config.write_text(billion_laughs())
    request = urllib.request.Request(exp.url + "/-/reload", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=30)
    assert info.value.code == 500
    assert "aliases expand to more than 100,000 nodes (at alias *p)" in info.value.read().decode()
    metrics = parse_metrics(exp.get("/metrics")[1])
    assert sample(metrics, "qualitygate_config_last_reload_successful") == 0
    assert sample(metrics, "gate_info", tracker="good", gate="g") == 1  # the old config is still the one served
    assert exp.get("/-/healthy")[0] == 200


def test_400_digit_duration_is_a_config_error(tmp_path: Path):
    path = tmp_path / "t.yml"
    path.write_text(one_step_tracker(FILE_GATE + "  interval: " + "9" * 400 + "s\n"))
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value) == (f"{path}:12: phases[0].steps[0].gates[0].interval: duration "
                               "'9999999999999999999999999999999999999...' is too long (at most 100y)")


@pytest.mark.parametrize("text", ["9" * 400 + "s", "9" * 5000 + "ms", "101y", "100y1ms", "99999999999999999w"])
def test_durations_are_bounded(text: str):
    with pytest.raises(ValueError, match="too long"):
        parse_duration(text)


def test_the_longest_duration_is_100_years():
    assert parse_duration("100y") == MAX_SECONDS == 100 * 365 * 86400


@pytest.mark.parametrize("text", ["\u0661s", "1\u0660s", "\uff11s", "15s\n", "1\u00b2s"])
def test_durations_take_ascii_digits_only(text: str):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["< \u0665", ">= \u0669\u0660%", "<\u00a05", "< 5\u2003"])
def test_expect_takes_ascii_digits_and_spaces_only(text: str):
    with pytest.raises(ValueError, match="invalid expect condition"):
        parse_condition(text)


@pytest.mark.parametrize(("want", "text"), [("integer", "\u0661"), ("integer", "1_000"), ("integer", "9" * 400),
                                            ("number", "\u0661.5"), ("number", "1_0"), ("number", "9" * 400),
                                            ("number", "infinity"), ("number", "1e999")])
def test_numbers_are_ascii_and_finite(want: str, text: str):
    reader = Reader("f.yml")
    node = yaml.compose(f"k: {text}").value[0][1]
    assert reader.scalar(node, "k", want) is not None
    assert len(reader.issues) == 1 and reader.issues[0].message.startswith(f"must be a{'n' if want[0] == 'i' else ''}")


def test_a_control_character_is_reported_on_its_own_line(tmp_path: Path):
    path = tmp_path / "t.yml"
    path.write_text("tracker: t\n\n\n# fine so far\ntitle: tab\there ok\ndescription: x\x1by\nphases: []\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value) == f"{path}:6: invalid YAML: control character U+001B ('\\x1b') is not allowed"


def test_a_100000_character_id_is_refused_with_its_line(tmp_path: Path):
    path = tmp_path / "t.yml"
    path.write_text(one_step_tracker("- id: " + "a" * 100_000 + "\n  file: {path: /etc/hostname}\n"))
    proc = subprocess.run([sys.executable, "-m", "exporter", "validate", str(path)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"{path}:10: phases[0].steps[0].gates[0].id: too long: 100,000 characters (at most 128)"]


@pytest.mark.parametrize("value", ["abc\n", "abc\n\n", "ab\u0441"])
def test_ids_match_whole(value: str):
    with pytest.raises(ConfigError, match="invalid id"):
        parse_config(f"tracker: {value!r}\n".replace("'", '"') if "\n" in value else f"tracker: {value}\n")


def test_dollar_dollar_is_a_literal_dollar(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("QG_SECRET", "s3cr3t")
    monkeypatch.delenv("QG_TEST_UNSET_VARIABLE", raising=False)
    config = parse_config(one_step_tracker(
        "- id: g\n  title: 'costs $$5, not ${QG_SECRET}'\n"
        "  description: '$${QG_SECRET:-x} and $$${QG_SECRET} and $${QG_TEST_UNSET_VARIABLE} and $x'\n"
        "  file: {path: /etc/hostname}\n"))
    gate = config.gates[0]
    assert gate.title == "costs $5, not s3cr3t"
    assert gate.description == "${QG_SECRET:-x} and $s3cr3t and ${QG_TEST_UNSET_VARIABLE} and $x"


def test_a_fifo_as_config_is_refused_without_waiting(tmp_path: Path):
    fifo = tmp_path / "fifo.yml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError) as info:
        load_config(str(fifo))
    assert str(info.value) == f"{fifo}:1: cannot read config: not a regular file"


def test_any_exception_while_loading_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    import exporter.config.model as model

    def broken(*args: object) -> None:
        raise RuntimeError("a defect of ours")

    monkeypatch.setattr(model, "_resolve", broken)
    path = tmp_path / "t.yml"
    path.write_text(one_step_tracker(FILE_GATE))
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value) == f"{path}:1: cannot load config: RuntimeError: a defect of ours"
    assert isinstance(info.value.__cause__, RuntimeError)  # kept for a log with the traceback


def test_validate_exits_2_on_any_exception_while_loading(tmp_path: Path):
    path = tmp_path / "t.yml"
    path.write_text(one_step_tracker(FILE_GATE))
    code = ("import sys\nimport exporter.config.model as m\n"
            "def broken(*a): raise MemoryError('out of memory')\n"
            "m._resolve = broken\nfrom exporter.cli import main\nsys.exit(main(['validate', sys.argv[1]]))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"{path}:1: cannot load config: MemoryError: out of memory"]
