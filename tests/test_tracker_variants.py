"""Hand-written trackers vary: heading levels, emoji, bold, unicode, CRLF, no gates, broken ones."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.config.fields import ConfigError
from exporter.config.model import parse_config
from exporter.tracker.importer import import_tracker, import_tracker_file, read_tracker
from exporter.tracker.mojibake import repair
from exporter.tracker.parse import TrackerParseError
from tracker_support import TRACKERS, shape

SEED_TEXT = (TRACKERS / "seed.md").read_text(encoding="utf-8")


def misdecode(data: bytes) -> str:
    """What a cp1252 reader makes of UTF-8 bytes (undefined bytes pass through as C1 controls)."""
    return "".join(bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in data)


def load(text: str, name: str = "t.md"):
    result = import_tracker(text, name)
    return result, parse_config(result.yaml_text, "t.yml")


@pytest.fixture(scope="module")
def seed_shape():
    return shape(load(SEED_TEXT, "seed.md")[1])


def test_crlf_gives_the_same_config(seed_shape):
    result, config = load(SEED_TEXT.replace("\n", "\r\n"), "seed.md")
    assert shape(config) == seed_shape
    assert result.yaml_text == import_tracker(SEED_TEXT, "seed.md").yaml_text


def test_correctly_encoded_and_triple_encoded_give_the_same_config(seed_shape):
    fixed = repair(SEED_TEXT)
    assert "✅" in fixed and "â" not in fixed
    assert shape(load(fixed)[1]) == seed_shape
    triple = misdecode(SEED_TEXT.encode("utf-8"))
    assert "\x9d" in triple  # a byte cp1252 leaves undefined, passed through as a C1 control
    assert shape(load(triple)[1]) == seed_shape


def test_other_heading_levels_no_emoji_no_bold(seed_shape):
    text = repair(SEED_TEXT)
    # One level deeper everywhere, emoji and bold gone: the same tracker.
    text = re.sub(r"^(#{1,5}) ", r"#\1 ", text, flags=re.M)
    text = re.sub("[✅🔄🔥📈🚀🎉]", "", text).replace("**", "")
    assert "**" not in text and "✅" not in text
    assert shape(load(text)[1]) == seed_shape


def test_nested_tracker(tmp_path):
    result = import_tracker_file(str(TRACKERS / "nested.md"))
    config = parse_config(result.yaml_text, str(tmp_path / "nested.yml"))
    assert config.title == "Release Plan"  # a setext heading
    assert [(p.id, [s.id for s in p.steps]) for p in config.phases] == [
        ("foundations", ["build-pipeline", "health-endpoint"]),  # steps nested under "## Phase 1"
        ("rollout", ["canary", "docs"]),  # "### Canary" holds gates without a "Step N" name
    ]
    gates = {g.id: g for g in config.gates}
    assert list(gates) == ["build-time", "unit-coverage", "artifact-signed", "build-pipeline-automated-check",
                           "build-pipeline-automated-check-2", "health", "availability", "latency-p95",
                           "canary-error-rate", "rollback-drill", "runbook"]
    assert gates["build-time"].expect_text == ["< 15m"]  # "under 15 minutes", a plain bullet
    assert gates["unit-coverage"].expect_text == [">= 85%"]  # "at least 85%"
    assert gates["build-pipeline-automated-check"].spec.argv == ("make", "build")
    assert gates["build-pipeline-automated-check-2"].spec.argv == ("./scripts/smoke.sh", "--quick")
    assert gates["health"].kind == "http" and gates["health"].spec.url == "https://status.example.test/health"
    assert gates["availability"].kind == "uptime" and gates["availability"].spec.gate == "health"
    assert gates["latency-p95"].expect_text == ["< 300ms"]  # "Latency p95 <300ms", no colon
    assert config.steps[0].team == "Platform" and config.steps[1].team == "SRE"  # "Team:" and "Owner:", not bold
    assert any("'Appendix'" in n.reason for n in result.model.ignored)


def test_unicode_tracker():
    _, config = load((TRACKERS / "unicode.md").read_text(encoding="utf-8"), "unicode.md")
    assert config.tracker == "qualitatsplan" and config.title == "Qualitätsplan"
    step = config.steps[0]
    assert (step.id, step.title, step.team) == ("uberwachung-alarme", "Überwachung & Alarme", "Équipe Ops (Zürich)")
    titles = [g.title for g in step.gates]
    assert titles == ["Verfügbarkeit", "Antwortzeit p95", "日本語のドキュメント", "Café menu"]
    assert [g.id for g in step.gates] == ["verfugbarkeit", "antwortzeit-p95", "gate-3", "cafe-menu"]
    assert [g.expect_text for g in step.gates] == [[">= 99.9%"], ["<= 200ms"], [">= 100%"], []]
    assert config.steps[1].id == "step-2" and config.steps[1].title == "日本語ステップ"
    tier_phase = config.phases[-1]
    assert (tier_phase.id, tier_phase.title) == ("quality-gate-status", "Quality Gate Status")
    assert [(g.id, g.tier) for g in tier_phase.gates] == [("securite", "important")]


def test_tracker_with_no_gates():
    result, config = load((TRACKERS / "no_gates.md").read_text(encoding="utf-8"))
    assert [(p.id, [s.id for s in p.steps]) for p in config.phases] == [
        ("discovery", ["interviews", "synthesis"]), ("delivery", [])]
    assert config.gates == ()
    assert "0 gates" in result.summary_lines()[0]


def test_gates_with_no_phase_or_step_go_to_unassigned():
    result, config = load((TRACKERS / "flat.md").read_text(encoding="utf-8"))
    assert [(p.id, [s.id for s in p.steps]) for p in config.phases] == [("unassigned", ["launch-checklist"])]
    assert [g.kind for g in config.gates] == ["http", "manual", "manual"]
    assert "added phase 'unassigned'" in "\n".join(result.summary_lines())


@pytest.mark.parametrize(("name", "line", "message"), [
    ("malformed_fence.md", 9, "code block opened here is never closed"),
    ("malformed_empty_gate.md", 6, "a quality-gate checkbox with no text"),
    ("malformed_duplicate_phase.md", 5, "phase 1 is defined twice (first on line 3)"),
    ("not_a_tracker.md", 1, "no phases, steps or quality gates found"),
])
def test_malformed_trackers_fail_with_a_clear_error(name, line, message):
    with pytest.raises(TrackerParseError) as info:
        import_tracker_file(str(TRACKERS / name))
    assert info.value.line == line
    assert message in info.value.message
    assert str(info.value).startswith(f"line {line}: ")


def test_binary_and_non_utf8_input(tmp_path):
    bad = tmp_path / "latin1.md"
    bad.write_bytes("# Plan\n\n### Step 1: Build\n\n- [ ] Caf\xe9: true\n".encode("latin-1"))
    with pytest.raises(TrackerParseError) as info:
        read_tracker(str(bad))
    assert info.value.line == 5 and "not UTF-8" in info.value.message
    with pytest.raises(TrackerParseError) as info:
        import_tracker("# Plan\n\n- [ ] a\x00b\n")
    assert info.value.line == 3 and "NUL" in info.value.message


def test_lines_not_understood_are_reported_with_their_numbers():
    text = "\n".join([
        "# Plan",                                      # 1
        "### Step 1: Build",                           # 2
        "**Team**: Core",                              # 3
        "**Budget**: 5k",                              # 4: an unknown bold field
        "- [ ] Compiles: true",                        # 5
        "Some stray remark.",                          # 6
        "| a | table |",                               # 7
        "**Completion Date**: Phase 9 completion",     # 8: no such phase
        "**Automated Checks**: curl -u admin:secret http://127.0.0.1:1/",  # 9: credentials
    ])
    result, config = load(text)
    assert [(n.line, n.reason) for n in result.model.not_understood] == [
        (4, "unknown field 'budget'"),
        (6, "not a gate, check or known field"),
        (7, "not a gate, check or known field"),
    ]
    summary = "\n".join(result.summary_lines())
    assert "line 4: unknown field 'budget': **Budget**: 5k" in summary
    assert "line 8: step 'Build' names 'Phase 9 completion', which is not a phase of the document" in summary
    assert "line 9: no probe for" in summary and "credentials" in summary
    assert config.phases[0].id == "unassigned"
    check = config.gate("build-automated-check")
    assert check.kind == "manual"  # never a password in the config in clear
    assert "secret" not in result.yaml_text.split("title:")[0]


def test_threshold_variants():
    text = "# T\n### Step 1: S\n" + "\n".join(f"- [ ] G{i}: {t}" for i, t in enumerate([
        ">99.9%", "<500ms", ">=15 active", "true", "203/203 passing", "99.9%+", "<= 3 s", "== 0",
        "none", "at most 2 hours", "1/4", "0", "2 weeks", ">=4.5/5", "response_time < 500ms, status == 200"]))
    _, config = load(text)
    assert [g.expect_text for g in config.gates] == [
        ["> 99.9%"], ["< 500ms"], [">= 15"], [], [">= 100%"], [">= 99.9%"], ["<= 3s"], ["== 0"],
        ["== 0"], ["<= 2h"], [">= 25%"], ["== 0"], ["<= 14d"], [">= 4.5"],
        []]  # a manual gate has no response_time or status: those conditions are dropped, with a comment
    assert "dropped ['response_time < 500ms', 'status == 200']" in import_tracker(text).yaml_text


_NAME = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_NAME, _NAME), min_size=1, max_size=5), _NAME)
def test_any_gate_text_gives_a_valid_config_or_a_clear_error(gates, title):
    text = f"# {title}\n\n### Step 1: {title}\n\n" + "\n".join(f"- [ ] {n}: {t}" for n, t in gates) + "\n"
    try:
        result = import_tracker(text)
    except TrackerParseError as exc:
        assert exc.line >= 1 and exc.message
        return
    try:
        parse_config(result.yaml_text, "fuzz.yml")
    except ConfigError as exc:  # pragma: no cover - the failure message is the point
        raise AssertionError(f"import produced an invalid config:\n{exc}\n---\n{result.yaml_text}") from None


_LINE = st.one_of(
    st.builds(lambda lvl, t: "#" * lvl + " " + t, st.integers(1, 6),
              st.one_of(_NAME, st.builds(lambda n, t: f"Phase {n}: {t}", st.integers(0, 12), _NAME),
                        st.builds(lambda n, t: f"Step {n}: {t}", st.integers(0, 12), _NAME),
                        st.sampled_from(["Critical Gates (Must Pass)", "Important Gates", "Nice to Have"]))),
    st.builds(lambda box, t: f"- [{box}] {t}", st.sampled_from(" xX"), _NAME),
    st.builds(lambda k, v: f"**{k}**: {v}", st.sampled_from(["Team", "Status", "Automated Checks", "Phase",
                                                              "Completion Date", "Quality Gates", "Other"]), _NAME),
    st.sampled_from(["", "---", "```", "text", "- bullet", "<!-- c -->", "Title", "====="]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_LINE, min_size=1, max_size=25))
def test_any_document_gives_a_valid_config_or_a_clear_error(lines):
    try:
        result = import_tracker("\n".join(lines))
    except TrackerParseError as exc:
        assert 1 <= exc.line <= len(lines) + 1 and exc.message
        return
    try:
        parse_config(result.yaml_text, "fuzz.yml")
    except ConfigError as exc:  # pragma: no cover - the failure message is the point
        raise AssertionError(f"import produced an invalid config:\n{exc}\n---\n{result.yaml_text}") from None
    assert len(result.summary_lines()) >= 5
