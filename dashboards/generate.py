"""Write the Grafana dashboards as JSON: `python dashboards/generate.py [--out DIR] [--check]`.

The JSON files next to this script are generated: edit dashboards/src/qgdash/ and run this again.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "src"))

from qgdash import DASHBOARDS  # noqa: E402 - run as a script: importable only once src/ is on sys.path

REGENERATE = ".venv/bin/python dashboards/generate.py"


def render() -> dict[str, str]:
    """Every dashboard as JSON text with sorted keys, so that output is stable from run to run."""
    rendered = {}
    for name, build in DASHBOARDS.items():
        document = json.loads(json.dumps(build().build(), cls=JSONEncoder))
        rendered[name] = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return rendered


def drift(directory: Path) -> list[str]:
    """Unified diffs between the committed JSON in `directory` and freshly generated JSON."""
    diffs = []
    for name, text in render().items():
        path = directory / name
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            lines = difflib.unified_diff(
                current.splitlines(True), text.splitlines(True), f"committed/{name}", f"generated/{name}", n=2
            )
            diffs.append("".join(lines))
    return diffs


def main(argv: list[str] | None = None) -> int:
    """Generate the dashboards into --out (default: this directory), or with --check report drift."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="directory to write the JSON files to")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the JSON in --out is not up to date"
    )
    args = parser.parse_args(argv)
    if args.check:
        diffs = drift(args.out)
        if diffs:
            sys.stdout.write("".join(diffs))
            print(f"dashboards are out of date: run `{REGENERATE}` and commit the result", file=sys.stderr)
            return 1
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (args.out / name).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
