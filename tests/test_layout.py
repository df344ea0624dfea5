"""The tree tells the pipeline (issue 13): small modules, few top-level ones, and imports only downwards.

Stages, lowest first (docs/architecture.md draws the same order):

    0 exporter/{__init__,log,model}.py    shared words: outcomes, results, logging
    1 config.fields/durations/expect/yamlload   how config is written (typed fields, YAML with lines)
    2 probes                              one module per kind, their specs written with config.fields
    3 config.model, config.jsonschema     the frozen model, composing the probes' specs
    4 state  5 engine  6 exposition  7 report  8 tracker  9 web  10 cli

`config` is the one package on two stages: that is the sanctioned arrangement that lets the probes
declare their own specs while the config model composes them. Every import counts, also one inside
a function or under TYPE_CHECKING: a dependency deferred is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "exporter"
MAX_LINES = 450
MAX_TOP_LEVEL = 5

# A module's stage: the longest dotted prefix listed here wins.
STAGES: dict[str, int] = {
    "exporter": 0, "exporter.log": 0, "exporter.model": 0,
    "exporter.config": 1, "exporter.config.fields": 1, "exporter.config.durations": 1,
    "exporter.config.expect": 1, "exporter.config.yamlload": 1, "exporter.config.issues": 1,
    "exporter.probes": 2,
    "exporter.config.model": 3, "exporter.config.jsonschema": 3, "exporter.config.units": 3,
    "exporter.config.apart": 3, "exporter.config.wire": 3, "exporter.config.files": 3,
    "exporter.state": 4,
    "exporter.engine": 5,
    "exporter.exposition": 6,
    "exporter.report": 7,
    "exporter.tracker": 8,
    "exporter.web": 9,
    "exporter.cli": 10, "exporter.__main__": 10,
}
# Modules of the two-stage `config` package that are not named above must be placed deliberately.
CONFIG_LISTED = {name for name in STAGES if name.startswith("exporter.config.")}


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def stage(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in STAGES:
            return STAGES[prefix]
    raise KeyError(module)


def imports(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import of the exporter's own modules, wherever it stands."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    known = modules()
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "exporter"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "exporter":
                continue
            # `from exporter.probes import http` imports the module exporter.probes.http
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
            out += [(node.lineno, s) for s in subs] or [(node.lineno, target)]
    return out


def test_every_module_has_a_stage() -> None:
    unplaced = [m for m in modules() if m.startswith("exporter.config.") and m not in CONFIG_LISTED]
    assert not unplaced, f"config modules with no stage in STAGES (fields side or model side?): {unplaced}"
    for m in modules():
        stage(m)


def test_no_import_from_a_higher_stage() -> None:
    problems = []
    for module, path in modules().items():
        mine = stage(module)
        for line, target in imports(module, path):
            theirs = stage(target)
            if theirs > mine:
                problems.append(f"{path.relative_to(ROOT)}:{line}: {module} (stage {mine}) imports {target} "
                                f"(stage {theirs})")
    assert not problems, "imports against the stage order:\n" + "\n".join(problems)


def test_no_module_over_450_lines() -> None:
    big = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py")
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines (split by job): {big}"


def test_few_modules_directly_in_the_package() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL, f"{len(top)} modules directly in exporter/ (at most {MAX_TOP_LEVEL}): {top}"


@pytest.mark.parametrize(("source", "module", "want"), [
    ("from exporter.probes import http, tcp\n", "exporter.cli.x", ["exporter.probes.http", "exporter.probes.tcp"]),
    ("def f():\n    from exporter.web.app import make_app\n", "exporter.state.x", ["exporter.web.app"]),
    ("from ..engine import runtime\n", "exporter.state.x", ["exporter.engine.runtime"]),
    ("from . import base\n", "exporter.probes.x", ["exporter.probes.base"]),
    ("import exporter.cli.main\nimport os\n", "exporter.model", ["exporter.cli.main"]),
])
def test_imports_are_found_wherever_they_stand(tmp_path: Path, source: str, module: str, want: list[str]) -> None:
    path = tmp_path / "x.py"
    path.write_text(source)
    assert [t for _, t in imports(module, path)] == want
