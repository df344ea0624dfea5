"""The evidence after each gate's status in the rendered document: stable across renders, escaped, linked."""

from __future__ import annotations

from exporter.config.model import parse_config
from exporter.tracker.evidencenote import page_base
from exporter.tracker.importer import import_tracker
from exporter.tracker.inplace import rewrite
from tracker_support import status_from_config

DOC = """# Release tracker

## Phase 1: Build

### Step 1: CI
**Status**: IN PROGRESS

- [ ] Unit coverage >= 80%
- [x] Security audit signed off
- [ ] API answers
"""


def _setup() -> tuple[object, dict]:
    config = parse_config(import_tracker(DOC, "TRACKER.md").yaml_text, "t.yml")
    ids = [g.id for g in config.gates]
    status = status_from_config(config, {i: {"status": "pass", "value": 1.0} for i in ids})
    by_id = {g["id"]: g for g in status["gates"]}
    cov, audit, api = (by_id[i] for i in ids)
    cov["evidence"] = {"kind": "push", "at": "2026-11-30T10:00:00Z", "commit": "0123456789abcdef0123",
                       "branch": "main", "run_url": "https://ci.example/run/9", "digest": "sha256:ab"}
    audit["evidence"] = {"kind": "attestation", "at": "2026-11-20T09:00:00Z", "by": "eve ] [x](javascript:1)",
                         "note": "n", "expires_at": "2027-02-18T09:00:00Z"}
    api["evidence"] = {"kind": "probe", "at": "2026-12-01T10:00:00Z"}
    return config, status


def test_each_gate_names_its_evidence_and_a_second_render_is_identical() -> None:
    config, status = _setup()
    once = rewrite(DOC, config, status, "TRACKER.md", link_base="http://qg.example:9916")
    lines = once.text.splitlines()
    cov = next(ln for ln in lines if "Unit coverage" in ln)
    page = f"http://qg.example:9916/gates/{config.gates[0].id}?tracker={config.tracker}"
    run = "[run](<https://ci.example/run/9>)"
    assert cov.endswith(f" · evidence: push 0123456789ab on main {run} · [details](<{page}>)")
    audit = next(ln for ln in lines if "Security audit" in ln)
    # The attester's name is data: a markdown link in it is escaped, never a link.
    assert " · evidence: attested by eve \\] \\[x\\](javascript:1) on 2026-11-20, expires 2027-02-18" in audit
    api = next(ln for ln in lines if "API answers" in ln)
    assert "evidence:" not in api and "[details](<http://qg.example:9916/gates/" in api  # a probe: the page tells
    # The probe is evaluated again (a new time): the document does not change.
    status["gates"][2]["evidence"] = {"kind": "probe", "at": "2026-12-01T10:05:00Z"}
    twice = rewrite(once.text, config, status, "TRACKER.md", link_base="http://qg.example:9916")
    assert twice.text == once.text and twice.changed == []
    # A new push is new evidence: only that line changes.
    status["gates"][0]["evidence"]["commit"] = "fedcba9876543210"
    third = rewrite(once.text, config, status, "TRACKER.md", link_base="http://qg.example:9916")
    assert [ln for ln in third.text.splitlines() if ln not in lines] == [
        cov.replace("0123456789ab", "fedcba987654")]


def test_without_an_exporter_url_no_link_and_no_credentials_in_one() -> None:
    config, status = _setup()
    out = rewrite(DOC, config, status, "TRACKER.md")
    assert "[details]" not in out.text and "evidence: push 0123456789ab on main" in out.text
    assert page_base("https://bot:s3cret@qg.example/prefix/api/progress/status") == "https://qg.example/prefix"
    assert page_base("ftp://x") == "" and page_base(None) == ""
