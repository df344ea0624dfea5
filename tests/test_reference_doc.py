"""docs/reference.md names every probe kind, config key, emitted metric and route of the code."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.cli.main import _parser as cli_parser
from exporter.config.jsonschema import config_schema
from exporter.engine.runtime import Runtime
from exporter.exposition.gates import CONTRACT_METRICS
from exporter.probes import KINDS
from exporter.web.app import make_app

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference.md"


def named(text: str) -> set[str]:
    """Every name the reference writes as code (`name`, `GET /path`, `key: {...}`), split into words too."""
    spans = re.findall(r"`([^`\n]+)`", text)
    words = {w for span in spans for w in re.findall(r"[A-Za-z0-9_./{}-]+", span)}
    return set(spans) | words


def missing(names: set[str], text: str) -> list[str]:
    """The names the reference does not name."""
    known = named(text)
    return sorted(n for n in names if n not in known)


def schema_keys(node: Any) -> Iterator[str]:
    """Every property name of a JSON Schema, walking properties, items, $defs and combinators."""
    if isinstance(node, dict):
        for key, value in node.get("properties", {}).items():
            yield key
            yield from schema_keys(value)
        for name, value in node.items():
            if name != "properties":
                yield from schema_keys(value)
    elif isinstance(node, list):
        for item in node:
            yield from schema_keys(item)


def routes() -> set[str]:
    """`METHOD /path` of every route the web app serves."""
    app = make_app(Runtime([]), lifecycle=True)
    out = set()
    for route in app.router.routes():
        if route.method == "HEAD":  # aiohttp adds HEAD beside every GET
            continue
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix")
        out.add(f"{route.method} {path}")
    return out


@pytest.fixture(scope="module")
def reference() -> str:
    return REFERENCE.read_text(encoding="utf-8")


def test_every_probe_kind_is_named(reference: str):
    assert len(KINDS) >= 10
    assert missing(set(KINDS), reference) == []


def test_every_measurement_of_every_kind_is_named(reference: str):
    assert missing({m for kind in KINDS.values() for m in kind.measurements}, reference) == []


def test_every_config_key_of_the_schema_is_named(reference: str):
    keys = set(schema_keys(config_schema()))
    assert {"tracker", "phases", "valid_status_codes", "value_regex", "max_age"} <= keys  # the walk reaches down
    assert missing(keys, reference) == []


def test_every_contract_metric_is_named(reference: str):
    assert missing(set(CONTRACT_METRICS), reference) == []


def test_every_metric_of_a_real_scrape_is_named(reference: str, serve):
    exp = serve(ROOT / "examples" / "tracker.yml")
    status, text = exp.get("/metrics")
    assert status == 200
    names = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    assert {"gate_passed", "qualitygate_build_info", "qualitygate_storage_up"} <= names
    assert missing(names, reference) == []


def test_every_route_is_named(reference: str):
    found = routes()
    assert {"GET /metrics", "POST /-/reload", "GET /badge/gate/{id}.svg"} <= found
    paths = {r.split(" ", 1)[1] for r in found}
    assert missing(paths, reference) == []
    # Every method a path takes is named on a line that names the path (`POST /-/reload` (also `PUT`...).
    for route in sorted(found):
        method, path = route.split(" ", 1)
        lines = [line for line in reference.splitlines() if path in named(line)]
        assert any(method in line for line in lines), f"{route} is not documented"


def test_the_peer_routes_are_named(reference: str):
    # Installed only with --shard.peers, so the app above does not have them: read them off the code.
    source = (ROOT / "exporter" / "web" / "peers.py").read_text(encoding="utf-8")
    found = set(re.findall(r'add_get\("([^"]+)"', source))
    assert {"/-/shard/state", "/-/shard/handover"} <= found
    for path in sorted(found):
        lines = [line for line in reference.splitlines() if f"`GET {path}`" in line]
        assert lines and all("signature" in line for line in lines), path


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = cli_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_flag_of_every_command_is_in_its_section(reference: str):
    commands = _commands()
    assert {"serve", "check", "attest", "push", "report", "render", "import"} <= set(commands)
    for name, sub in commands.items():
        section = re.search(rf"^### `qualitygate {name}\b[^\n]*\n(.*?)(?=^##)", reference, re.S | re.M)
        assert section, f"no section for qualitygate {name}"
        flags = [o for a in sub._actions for o in a.option_strings if o not in ("-h", "--help")]
        assert [f for f in flags if not re.search(rf"`{re.escape(f)}[` =]", section[1])] == [], name


def test_the_check_fails_when_a_name_is_missing(reference: str):
    # The same checks against a reference with one probe kind, one key, one metric and one route cut out.
    cut = reference
    for name in ("json_file", "valid_status_codes", "gate_uptime_ratio", "/badge/phase/{id}.svg"):
        cut = re.sub(rf"`[^`\n]*{re.escape(name)}[^`\n]*`", "`cut`", cut)
        assert name in missing({name}, cut), name


def test_the_examples_it_links_exist(reference: str):
    links = re.findall(r"\]\((\.\./[^)#]+)\)", reference)
    assert any("examples/probes/" in link for link in links)
    for link in links:
        assert (REFERENCE.parent / link).exists(), link
    linked = {Path(link).name for link in links}
    assert sorted(p.name for p in (ROOT / "examples" / "probes").glob("*.yml") if p.name not in linked) == []
