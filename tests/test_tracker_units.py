"""`render` and `render --in-place` say values and thresholds as every other output does (issue 16).

A real `check` run measures a coverage report and a command; the rendered tracker, the team's own
document rewritten in place, and `check`'s own line all carry the one formatter's sentence.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys

import pytest

from exporter.cli.check import print_run, run_check
from exporter.config.model import parse_config
from exporter.tracker.importer import import_tracker
from exporter.tracker.inplace import rewrite
from exporter.tracker.render import render_markdown
from tracker_support import status_from_config

DOC = """# Service
## Phase 1: Quality
### Step 1: Tests
- [x] Line coverage: at least 85%
- [x] Fast start: under 1h
"""


def _config(tmp_path):
    (tmp_path / "cov.json").write_text(json.dumps({"totals": {"percent_covered": 71.4286, "covered_lines": 5,
                                                              "num_statements": 7}}))
    # The claims as `import` reads them, measured by what this machine has: the coverage file, a real subprocess.
    text = f"""tracker: service
title: Service
phases:
  - id: quality
    title: Quality
    steps:
      - id: tests
        title: Tests
        gates:
          - {{id: line-coverage, title: Line coverage, source: "Line coverage: at least 85%",
             coverage: {{path: "{tmp_path / 'cov.json'}"}}, expect: ">= 85%"}}
          - {{id: fast-start, title: Fast start, source: "Fast start: under 1h",
             command: {{argv: ["{sys.executable}", "-c", "pass"]}}, expect: "duration < 1h"}}
"""
    return parse_config(text, str(tmp_path / "t.yml"))


def test_render_and_in_place_say_what_check_says(tmp_path):
    config = _config(tmp_path)
    run = asyncio.run(run_check(config))
    printed = io.StringIO()
    print_run(run, printed)
    status = run.status()
    assert "coverage 71.4 % is below 85 %" in printed.getvalue()

    md = render_markdown(status, config=config)
    cov = next(line for line in md.splitlines() if line.startswith("- [ ] Line coverage"))
    assert cov.endswith(": coverage 71.4 % is below 85 %")  # said once, not again as the message
    fast = next(line for line in md.splitlines() if line.startswith("- [x] Fast start"))
    assert "✅ pass (duration " in fast and " ms is below 1 h)" in fast
    assert "- **Completion**: 50% (1 of 2 gates pass)" in md

    out = rewrite(DOC, config, status, "TRACKER.md")
    lines = out.text.splitlines()
    assert lines[3] == "- [ ] Line coverage: at least 85% — ❌ fail: coverage 71.4 % is below 85 %"
    assert lines[4].startswith("- [x] Fast start: under 1h — ✅ pass: duration ") and lines[4].endswith(" is below 1 h")
    assert (4, "'Line coverage: at least 85%' is ticked, but gate line-coverage is fail: "
               "❌ fail: coverage 71.4 % is below 85 %") in out.false_claims
    assert rewrite(out.text, config, status, "TRACKER.md").text == out.text  # idempotent


@pytest.mark.parametrize("said, false", [("67%", False), ("66.7%", False), ("66%", False), ("70%", True),
                                          ("100%", True)])
def test_a_rounded_figure_is_no_false_claim(said, false):
    """67% for 2 of 3 is the measured 66.7% at the document's precision; 70% or 100% is a false claim."""
    doc = ("# T\n## Phase 1: P\n### Step 1: S - IN PROGRESS (" + said + ")\n"
           "- [x] One: true\n- [x] Two: true\n- [ ] Three: true\n")
    config = parse_config(import_tracker(doc, "TRACKER.md").yaml_text, "t.yml")
    ids = [g.id for g in config.gates]
    status = status_from_config(config, {ids[0]: {"status": "pass", "value": 1}, ids[1]: {"status": "pass", "value": 1},
                                         ids[2]: {"status": "fail", "value": 0}})
    out = rewrite(doc, config, status, "TRACKER.md")
    assert out.text.splitlines()[2] == "### Step 1: S - IN PROGRESS (66.7%)"
    assert any(n == 3 and "66.7%" in text for n, text in out.false_claims) is false, out.false_claims
