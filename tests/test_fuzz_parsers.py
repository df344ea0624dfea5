"""Property-based fuzzing: the config loader, the expect parser, the web config and the auth header parser.

Whatever the input, each parser returns a result or raises its own error type (ConfigError,
ValueError); any other exception is a bug. Examples are bounded so that the suite stays fast.
"""

from __future__ import annotations

import base64
import math
import string

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from exporter.config.expect import OPERATORS, Condition, parse_condition
from exporter.config.fields import ConfigError
from exporter.config.model import Config, parse_config
from exporter.probes import KINDS
from exporter.web.webconfig import WebConfig, parse_basic, parse_web_config

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ENV = {"QG_FUZZ": "value"}  # a fixed environment: ${VAR} expansion must not depend on the machine

# --- building blocks --------------------------------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["15s", "500ms", "1h30m", "30d", "0s", "-5s", "10x", "", "2xx", "${QG_FUZZ}", "${NOPE}",
                     "${NOPE:-1m}", "http://127.0.0.1:1/x", "not a url", ">= 85%", "status == 200", "true",
                     "a-b.c_d", "Bad Id", "critical", "important", "enhancement", "[", "(?P<", "/dev/null"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=20)

expect_texts = st.one_of(
    st.text(max_size=40),
    st.builds(lambda m, op, n, u: f"{m}{op}{n}{u}",
              st.sampled_from(["", "value ", "status ", "response_time", "exit_code ", "Value ", "x-y "]),
              st.sampled_from(["<", "<=", ">", ">=", "==", "!=", "=", "=>", "<>", ""]),
              st.one_of(st.sampled_from(["true", "false", "1e309", "-1e309", ".5", "5.", "+3", "1e", "nan", "inf"]),
                        st.floats(allow_nan=False, allow_infinity=False).map(repr)),
              st.sampled_from(["", "%", "ms", "s", "m", "h", "d", " %", "w", "ns"])),
)


def probe_spec(kind: str) -> st.SearchStrategy[object]:
    """A probe mapping whose keys are mostly the kind's real keys, with arbitrary values."""
    names = list(KINDS[kind].spec.__dataclass_fields__)
    keys = st.one_of(st.sampled_from(names), st.text(max_size=8)) if names else st.text(max_size=8)
    return st.one_of(st.dictionaries(keys, values, max_size=5), values)


gate_keys = ["id", "title", "description", "tier", "interval", "timeout", "expect"]
gates = st.builds(
    lambda common, kind, spec, extra: {**common, kind: spec, **extra},
    st.fixed_dictionaries({}, optional={k: (expect_texts | st.lists(expect_texts, max_size=3) if k == "expect"
                                            else values) for k in gate_keys}),
    st.sampled_from(sorted(KINDS)),
    st.sampled_from(sorted(KINDS)).flatmap(probe_spec),
    st.dictionaries(st.sampled_from([*sorted(KINDS), "bogus"]), values, max_size=1),
)
trackers = st.fixed_dictionaries(
    {"tracker": st.one_of(st.just("t"), values)},
    optional={
        "title": values,
        "uptime_window": values,
        "defaults": st.fixed_dictionaries({}, optional={"interval": values, "timeout": values, "tier": values})
        | values,
        "prometheus": st.fixed_dictionaries({}, optional={"url": values}) | values,
        "phases": st.lists(st.fixed_dictionaries(
            {"id": st.sampled_from(["p", "q", "Bad"]) | values},
            optional={"title": values, "steps": st.lists(st.fixed_dictionaries(
                {"id": st.sampled_from(["s", "t"]) | values},
                optional={"team": values, "gates": st.lists(gates | values, max_size=4)}), max_size=3) | values}),
            max_size=3) | values,
        "bogus": values,
    },
)


def dump(doc: object) -> str:
    """YAML text for a generated structure (safe_dump: plain data only)."""
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


# --- the config loader ------------------------------------------------------------------------


@FUZZ
@given(st.text(max_size=400))
@example("[" * 3000)  # deeper than Python's recursion limit inside PyYAML's composer
@example("tracker: x\nphases: &a [*a]")  # a recursive alias
@example("tracker: t\nphases: [{id: p, steps: [{id: s, gates: [{id: g, command: {shell: x}, expect: '>= 1e999'}]}]}]")
@example("\x00")
def test_config_loader_on_arbitrary_text(text: str):
    try:
        config = parse_config(text, env=ENV)
    except ConfigError as exc:
        assert exc.issues and all(str(i).startswith("<config>:") for i in exc.issues)
    else:
        assert isinstance(config, Config)


@FUZZ
@given(st.text(alphabet=string.printable, max_size=300).map(lambda t: "tracker: t\nphases:\n" + t))
def test_config_loader_on_yamlish_text(text: str):
    try:
        assert isinstance(parse_config(text, env=ENV), Config)
    except ConfigError as exc:
        assert exc.issues


@FUZZ
@given(trackers)
def test_config_loader_on_generated_structures(doc: dict[str, object]):
    text = dump(doc)
    try:
        config = parse_config(text, env=ENV)
    except ConfigError as exc:
        assert exc.issues
        for issue in exc.issues:
            # YAML counts NEL, LS and PS as line breaks too; splitlines() counts a superset.
            assert 1 <= issue.line <= len(text.splitlines()) + 1, issue
    else:
        assert isinstance(config, Config)
        for gate in config.gates:
            assert 0 < gate.timeout <= gate.interval
            assert all(math.isfinite(c.threshold) for c in gate.expect)


# --- the expect parser ------------------------------------------------------------------------


@FUZZ
@given(st.one_of(expect_texts, st.text(max_size=60), values))
@example("value >= 1e999")
@example("true %")
def test_expect_parser_result_or_value_error(text: object):
    try:
        cond = parse_condition(text)
    except ValueError as exc:
        assert str(exc)
        return
    assert isinstance(cond, Condition)
    assert cond.op in OPERATORS
    assert math.isfinite(cond.threshold)
    assert cond.holds(cond.threshold) in (True, False)
    assert cond.describe()


@FUZZ
@given(st.sampled_from(sorted(OPERATORS)), st.floats(-1e12, 1e12), st.sampled_from(["", "%", "ms", "s", "m", "h", "d"]))
def test_expect_parser_reads_what_it_is_given(op: str, number: float, unit: str):
    text = f"value {op} {number!r}{unit}"
    cond = parse_condition(text)
    scale = {"": 1, "%": 0.01, "ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    assert cond.op == op and cond.measurement == "value"
    assert math.isclose(cond.threshold, number * scale, rel_tol=1e-12, abs_tol=1e-300)


# --- the web config and the Authorization header ----------------------------------------------

web_docs = st.fixed_dictionaries({}, optional={
    "tls_server_config": st.fixed_dictionaries({}, optional={
        "cert_file": st.sampled_from(["/dev/zero", "/nonexistent.pem", "", "."]) | values,
        "key_file": st.sampled_from(["/dev/null", "/nonexistent.key"]) | values,
        "client_auth_type": st.sampled_from(["NoClientCert", "RequireAnyClientCert", "Bogus"]) | values,
        "client_ca_file": values, "min_version": st.sampled_from(["TLS10", "TLS13", "SSL3"]) | values,
        "max_version": values, "cipher_suites": values}) | values,
    "http_server_config": st.fixed_dictionaries({}, optional={
        "http2": values,
        "headers": st.dictionaries(st.sampled_from(["X-Frame-Options", "Server"]) | st.text(max_size=8), values,
                                   max_size=3) | values}) | values,
    "basic_auth_users": st.dictionaries(st.text(max_size=8), st.sampled_from(
        ["$2b$04$IgnWs/91ZegZYvPX3k1TvO0WYgw54AyURNjg2EATeD7Cuo8JIDDyu", "$2x$04$" + "a" * 53, "$2b$99$" + "a" * 53])
        | values, max_size=3) | values,
    "rate_limit": values,
})


@FUZZ
@given(st.one_of(st.text(max_size=300), web_docs.map(dump)))
@example("[" * 3000)
@example("tls_server_config: {cert_file: /dev/zero, key_file: /dev/zero}")
def test_web_config_parser_result_or_config_error(text: str):
    try:
        wc = parse_web_config(text, env=ENV)
    except ConfigError as exc:
        assert exc.issues
    else:
        assert isinstance(wc, WebConfig)
        assert wc.tls is None  # no generated file is a usable certificate


@FUZZ
@given(st.one_of(st.none(), st.text(max_size=80),
                 st.binary(max_size=60).map(lambda b: "Basic " + base64.b64encode(b).decode())))
def test_basic_header_parser_never_raises(header: str | None):
    creds = parse_basic(header)
    assert creds is None or (isinstance(creds, tuple) and len(creds) == 2 and ":" not in creds[0])
