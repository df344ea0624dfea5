"""`qualitygate validate` (config files -> exit 0 or 2) and `qualitygate schema` (the config's JSON Schema)."""

from __future__ import annotations

import argparse
import json

from exporter.cli.common import EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    """Load each file; print every issue as FILE:LINE: key: message (ConfigError, exit 2)."""
    from exporter.engine.runtime import load_configs

    configs = load_configs(list(args.files))
    for c in configs:
        print(f"{c.source}: ok ({len(c.phases)} phases, {len(c.steps)} steps, {len(c.gates)} gates)")
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema generated from the loader's declarations."""
    from exporter.config.jsonschema import config_schema

    print(json.dumps(config_schema(), indent=2))
    return EXIT_OK
