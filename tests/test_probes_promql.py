"""`promql` probe against a real Prometheus (Debian's 2.42) on a free loopback port, scraping itself."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import free_port, http_get, wait_for
from exporter.engine.evaluate import evaluate
from exporter.probes import ProbeError
from exporter.probes.promql import PromQLSpec, parse_response
from probe_support import config_errors, make_ctx, parse_gate, run_probe

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs the prometheus binary")


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus scraping itself as two jobs (so `up` has two samples); yields its URL."""
    tmp = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    config = tmp / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: prometheus\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
        f"  - job_name: again\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
    )
    with open(tmp / "prometheus.log", "w") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
            stdout=log, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"

    def both_up() -> bool:
        assert proc.poll() is None, (tmp / "prometheus.log").read_text()
        status, body = http_get(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": "count(up == 1)"}), timeout=2)
        result = json.loads(body)["data"]["result"] if status == 200 else []
        return bool(result) and result[0]["value"][1] == "2"

    try:
        wait_for(both_up, timeout=90, interval=0.25, what="prometheus to scrape both jobs")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


async def test_one_sample_vector(prometheus: str):
    m = await run_probe("promql", PromQLSpec(query='up{job="prometheus"}', url=prometheus))
    assert m.ok and m.value == 1
    # A sub-second gate timeout is passed on to Prometheus in a syntax it accepts.
    m = await run_probe("promql", PromQLSpec(query='up{job="prometheus"}', url=prometheus), make_ctx(timeout=1.5))
    assert m.value == 1


async def test_scalar(prometheus: str):
    m = await run_probe("promql", PromQLSpec(query='scalar(count(up)) * 0.5', url=prometheus))
    assert m.value == 1.0
    m = await run_probe("promql", PromQLSpec(query="0.25", url=prometheus))
    assert m.value == 0.25


async def test_base_url_from_the_context_with_a_trailing_slash(prometheus: str):
    m = await run_probe("promql", PromQLSpec(query="count(up)"), make_ctx(prometheus_url=prometheus + "/"))
    assert m.value == 2


async def test_empty_result_is_an_error(prometheus: str):
    with pytest.raises(ProbeError, match=r"^query returned no samples$"):
        await run_probe("promql", PromQLSpec(query='up{job="nope"}', url=prometheus))


async def test_several_samples_is_an_error(prometheus: str):
    with pytest.raises(ProbeError, match=r"^query returned 2 samples, expected 1$"):
        await run_probe("promql", PromQLSpec(query="up", url=prometheus))


async def test_range_vector_and_bad_query_are_errors(prometheus: str):
    with pytest.raises(ProbeError, match="range vector"):
        await run_probe("promql", PromQLSpec(query="up[1m]", url=prometheus))
    with pytest.raises(ProbeError, match=r"^Prometheus: bad_data: .*parse error"):
        await run_probe("promql", PromQLSpec(query="up{", url=prometheus))


async def test_prometheus_down_is_an_error():
    with pytest.raises(ProbeError, match=r"^Prometheus unreachable: connection refused$"):
        await run_probe("promql", PromQLSpec(query="up", url=f"http://127.0.0.1:{free_port()}"))


async def test_no_url_anywhere_is_an_error():
    with pytest.raises(ProbeError, match="no Prometheus URL"):
        await run_probe("promql", PromQLSpec(query="up"))


async def test_not_prometheus_is_an_error(prometheus: str):
    with pytest.raises(ProbeError, match=r"^Prometheus answered status 404 without a JSON body$"):
        await run_probe("promql", PromQLSpec(query="up", url=prometheus + "/not-here"))


def test_parse_response_edge_cases():
    assert math.isnan(parse_response(200, b'{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}'))
    with pytest.raises(ProbeError, match="malformed sample"):
        parse_response(200, b'{"status":"success","data":{"resultType":"vector","result":[{"value":[1]}]}}')
    with pytest.raises(ProbeError, match=r"^Prometheus: timeout: query timed out"):
        parse_response(503, b'{"status":"error","errorType":"timeout","error":"query timed out in query execution"}')


async def test_gate_from_config_uses_prometheus_url_and_expect(prometheus: str, tmp_path: Path):
    gate = parse_gate(tmp_path, """
        - id: scrape-ok
          promql: {query: 'avg(up)'}
          expect: ">= 100%"
    """, extra=f"prometheus: {{url: '{prometheus}'}}\n")
    assert gate.spec == PromQLSpec(query="avg(up)", url=None)
    result = await evaluate(gate, make_ctx(prometheus_url=prometheus))
    assert result.outcome == "pass" and result.value == 1
    gate = parse_gate(tmp_path, f"""
        - id: two
          promql: {{query: 'up', url: '{prometheus}'}}
          expect: "== 1"
    """)
    result = await evaluate(gate, make_ctx())
    assert result.outcome == "error" and result.message == "query returned 2 samples, expected 1"


@pytest.mark.parametrize(("query", "expect", "shown"), [
    # A ratio over no traffic: rate() of a counter that does not move is 0, and 0/0 is NaN.
    ("sum(rate(prometheus_http_requests_total{handler='/no/such'}[5m]) or vector(0))"
     " / sum(rate(prometheus_http_requests_total{handler='/no/such'}[5m]) or vector(0))", "!= 0", "NaN"),
    ("vector(0) / vector(0)", "< 0.01", "NaN"),
    ("scalar(vector(0) / 0)", ">= 0", "NaN"),
    ("1 / 0", "> 5", "+Inf"),
    ("-1 / 0", "< 5", "-Inf"),
])
async def test_nan_and_infinities_from_a_real_prometheus_are_errors(prometheus: str, tmp_path: Path, query: str,
                                                                    expect: str, shown: str):
    m = await run_probe("promql", PromQLSpec(query=query, url=prometheus))
    assert not math.isfinite(m.value)  # the probe hands the engine the real float, not a stand-in
    gate = parse_gate(tmp_path, f"""
        - id: ratio
          promql: {{query: "{query}", url: '{prometheus}'}}
          expect: "{expect}"
    """)
    result = await evaluate(gate, make_ctx())
    assert result.outcome == "error" and result.message == f"measured {shown}: no measurement"


def test_config_errors(tmp_path: Path):
    key = "phases[0].steps[0].gates[0]"
    assert config_errors(tmp_path, """
        - id: q
          promql: {query: " ", url: "localhost:9090"}
          expect: "== 1"
    """) == [f"{key}.promql.query: must not be empty",
             f"{key}.promql.url: invalid URL 'localhost:9090' (want http:// or https:// with a host)"]
    assert config_errors(tmp_path, """
        - id: q
          promql: {query: up, url: "http://127.0.0.1:9090"}
    """) == [f"{key}.expect: a promql gate needs an expect condition (it has no default pass)"]
