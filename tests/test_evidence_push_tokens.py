"""push_tokens_file: read by serve at start and at reload (FILE:LINE errors), never by validate or check."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from exporter.cli.push import describe, human
from exporter.config.fields import ConfigError
from exporter.config.model import parse_config
from exporter.engine.pushes import Evidence, read_tokens
from tests.conftest import ROOT, one_step_tracker
from tests.test_evidence_push import cobertura, post

GATE = """
- id: cov
  coverage: {push: {max_age: 1d}}
  expect: ">= 85%"
"""


def test_a_bad_token_file_stops_serve_with_file_and_line(tmp_path, write_config):
    config = write_config(one_step_tracker(GATE, push_tokens_file="missing-tokens"))
    done = subprocess.run([sys.executable, "-m", "exporter", "serve", "--config.file", str(config),
                           "--web.listen-address", "127.0.0.1:0", "--storage.path", ""],
                          capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (f"{config}:3: push_tokens_file: cannot read {tmp_path / 'missing-tokens'}: "
                                   "No such file or directory"), done.stderr
    # validate and check do not need the secret (a CI runner has none)
    assert subprocess.run([sys.executable, "-m", "exporter", "validate", str(config)], capture_output=True,
                          timeout=60, cwd=str(ROOT)).returncode == 0


def test_token_file_rules(tmp_path):
    (tmp_path / "empty").write_text("# only a comment\n\n")
    (tmp_path / "spaced").write_text("good\nbad token\n")
    for name, message in (("empty", "no token in it"), ("spaced", "spaced:2: a token holds whitespace")):
        config = parse_config(one_step_tracker(GATE, push_tokens_file=name), str(tmp_path / "t.yml"))
        with pytest.raises(ConfigError) as caught:
            read_tokens([config])
        assert message in str(caught.value.issues[0]) and "bad token" not in str(caught.value.issues[0])
    (tmp_path / "ok").write_text("# CI\n  one \ntwo\n")
    config = parse_config(one_step_tracker(GATE, push_tokens_file="ok"), str(tmp_path / "t.yml"))
    book = Evidence()
    book.set_tokens(read_tokens([config]))
    assert book.token_ok("t", "one") and book.token_ok("t", "two")
    assert not book.token_ok("t", "three") and not book.token_ok("t", "") and not book.token_ok("other", "one")


def test_a_reload_reads_the_token_file_again_and_a_broken_one_keeps_the_old(serve, tmp_path, write_config):
    tokens = tmp_path / "tokens"
    tokens.write_text("old-token\n")
    config = write_config(one_step_tracker(GATE, push_tokens_file="tokens"))
    s = serve(config, "--web.enable-lifecycle")
    url = f"{s.url}/api/gates/cov/evidence"
    assert post(url, cobertura(0.9), token="old-token")[0] == 202

    tokens.write_text("new-token\n")
    assert urllib.request.urlopen(urllib.request.Request(f"{s.url}/-/reload", method="POST"), timeout=20).status == 200
    assert post(url, cobertura(0.9), token="old-token")[0] == 401  # a rotated token is out at once
    assert post(url, cobertura(0.9), token="new-token")[0] == 202

    tokens.unlink()
    try:
        urllib.request.urlopen(urllib.request.Request(f"{s.url}/-/reload", method="POST"), timeout=20)
        raise AssertionError("reload with a missing token file succeeded")
    except urllib.error.HTTPError as exc:
        assert exc.code == 500 and b"push_tokens_file" in exc.read()
    assert post(url, cobertura(0.9), token="new-token")[0] == 202  # the running tokens stay


def test_push_prints_values_in_the_units_of_expect():
    assert human("value", 0.8734, [">= 85%"]) == "87.3 %"  # the one formatter (exporter.config.units)
    assert human("delta", -0.005, ["value >= 85%", "delta >= -0.5%"]) == "-0.5 %"
    assert human("delta", 0.01, ["delta >= -0.5%"]) == "+1 %"
    assert human("value", 0.35, ["value < 500ms"]) == "350 ms"
    assert human("tests", 12.0, ["failures == 0"]) == "12"
    text = describe("cov", {"tracker": "t", "kind": "coverage", "status": "fail",
                            "measurements": {"value": 0.88, "delta": -0.02},
                            "expect": ["value >= 85%", "delta >= -0.5%"], "counts": False,
                            "message": "delta -2 % is below -0.5 %",
                            "why_not_counted": "branch 'pr' does not decide this gate (only 'main' does)"})
    assert text.splitlines()[0] == "FAIL t/cov: coverage 88 % is at least 85 %; delta -2 % is below -0.5 %"
    assert text.splitlines()[1].startswith("  not recorded")  # the message is the sentence: said once
    assert "not recorded: branch 'pr'" in text
