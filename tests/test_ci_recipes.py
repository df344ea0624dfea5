"""The CI recipes in examples/ci: valid against the official workflow schemas, and every qualitygate command in
them is one our CLI accepts."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from exporter.cli.main import _parser
from exporter.cli.push import add_arguments as push_arguments

CI = Path(__file__).resolve().parent.parent / "examples" / "ci"
RECIPES = {"github-actions.yml": "vendor.github-workflows", "gitlab-ci.yml": "vendor.gitlab-ci"}
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_matches_the_official_schema(name):
    # The schemas are vendored in check-jsonschema's wheel: no network.
    proc = subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", RECIPES[name], str(CI / name)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def commands(name: str) -> list[str]:
    """Every `qualitygate ...` shell line of a recipe."""
    doc = yaml.safe_load((CI / name).read_text())
    scripts: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("run", "script", "after_script") and isinstance(value, (str, list)):
                    scripts.extend([value] if isinstance(value, str) else value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(doc)
    return [ln.strip() for s in scripts for ln in s.splitlines() if ln.strip().startswith("qualitygate ")]


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_commands_parse(name):
    seen = set()
    for line in commands(name):
        argv = shlex.split(re.sub(r"\$\{\{[^}]*\}\}|\$\{?[A-Z_]+\}?", "X", line))[1:]
        if argv[0] == "push":  # its own parser, so that this holds whatever main.py wires today
            push = argparse.ArgumentParser(exit_on_error=False)
            push_arguments(push)
            push.parse_args(argv[1:])
            seen.add(("push", False, False))
            continue
        args = _parser().parse_args(argv)  # argparse exits 2 on a flag we do not have
        seen.add((args.command, args.check, args.in_place))
    # Tests push their reports, pull requests are checked, the default branch is rewritten in place.
    assert {("push", False, False), ("render", True, False), ("render", False, True)} <= seen


def test_recipes_commit_only_a_changed_tracker():
    for name in RECIPES:
        text = (CI / name).read_text()
        assert "git diff --quiet -- TRACKER.md" in text and "-- TRACKER.md" in text
