"""The generated JSON Schema: valid draft 2020-12, accepts every example, rejects the invalid fixtures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from exporter.config.jsonschema import config_schema
from exporter.config.yamlload import BoundedSafeLoader

ROOT = Path(__file__).resolve().parent.parent
TESTDATA = Path(__file__).parent / "testdata"
# What only the loader can check: cross-references, comparisons of two values, the environment.
LOADER_ONLY = {
    "invalid-duplicate-gate": "ids unique across steps: a cross-reference",
    "invalid-timeout": "timeout <= interval compares two durations",
    "invalid-uptime-target": "the observed gate must exist: a cross-reference",
    "invalid-env": "whether an environment variable is set is known only at load time",
}


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = config_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def test_committed_schema_matches_generator():
    committed = json.loads((ROOT / "schema" / "config.schema.json").read_text())
    assert committed == config_schema(), "regenerate: qualitygate schema > schema/config.schema.json"


def test_cli_prints_the_schema():
    proc = subprocess.run([sys.executable, "-m", "exporter", "schema"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("path", sorted(p for p in (ROOT / "examples").rglob("*.yml") if p.parent.name != "ci"),
                         ids=lambda p: str(p.relative_to(ROOT)))  # examples/ci: CI recipes, not trackers
def test_examples_validate(path: Path, validator):
    errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
    assert errors == []


@pytest.mark.parametrize("path", sorted(TESTDATA.glob("invalid-*.yml")), ids=lambda p: p.stem)
def test_invalid_fixtures_fail_the_schema(path: Path, validator):
    try:
        doc = yaml.load(path.read_text(), Loader=BoundedSafeLoader)  # SafeLoader, aliases bounded
    except yaml.YAMLError:
        return  # not even YAML: an editor flags it before any schema
    errors = list(validator.iter_errors(doc))
    if path.stem in LOADER_ONLY:
        assert errors == [], f"{path.stem} is listed as loader-only but the schema rejects it"
    else:
        assert errors, f"the schema accepts {path.name}"


def test_schema_knows_every_probe_kind_and_its_options():
    gate = config_schema()["$defs"]["gate"]
    assert set(gate["properties"]) >= {"http", "tcp", "command", "promql", "coverage", "junit", "json_file", "file",
                                       "uptime", "manual"}
    assert "valid_status_codes" in gate["properties"]["http"]["properties"]
    assert gate["properties"]["http"]["additionalProperties"] is False
