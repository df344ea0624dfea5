"""The status page at scale, over HTTP in process: counts first, steps opened on demand, search, ETag/304."""

from __future__ import annotations

import re
import time

from bench import gen
from exporter.state.buckets import Buckets
from exporter.web.overview import BLOCKERS_SHOWN, INLINE_GATES
from tests.test_statuspage_pages import Page, site  # noqa: F401 - the fixture

BIG = 2_000  # 100 steps of 20 gates


def big_config() -> str:
    return gen.tracker_yaml(BIG, lambda i: ["file: {path: /etc/hostname}"])


def fill_big(s, failing_steps: range = range(0, 0)) -> None:
    for i in range(BIG):
        bad = i // gen.GATES_PER_STEP in failing_steps
        s.record("bench", f"gate-{i:05d}", "fail" if bad else "pass", ago=30, age=5.0, size=10.0, value=5.0,
                 message="no such file" if bad else "")


async def test_a_passing_tracker_lists_steps_folded_and_no_gate_rows(site):  # noqa: F811
    s = await site(big_config())
    fill_big(s)
    page, body = await s.page("/")
    assert page.rows() == {}  # every step passes: folded, gates fetched when opened
    steps = page.all("details", **{"class": "step"})
    assert len(steps) == BIG // gen.GATES_PER_STEP and not any("open" in d for d in steps)
    assert len(body.encode()) < 200_000
    assert "20 gates: 20 pass" in page.text and "complete" in page.text
    # Without JS, each folded step links to its gates.
    links = [a["href"] for a in page.all("a", **{"class": "step-link"})]
    assert links[0] == "/phases/phase-000/steps/step-0000"
    frag, _ = await s.page(links[0] + "?partial=1")
    assert set(frag.rows()) == {f"gate-{i:05d}" for i in range(20)}
    full, _ = await s.page(links[0])
    assert full.all("main") and set(full.rows()) == set(frag.rows())


async def test_failing_steps_open_inline_within_a_budget_and_say_failing(site):  # noqa: F811
    s = await site(big_config())
    fill_big(s, failing_steps=range(0, 10))  # 200 failing gates, 10 steps, all of phase-000
    page, _ = await s.page("/")
    opened = [d for d in page.all("details", **{"class": "step"}) if "open" in d]
    assert len(opened) == INLINE_GATES // gen.GATES_PER_STEP
    assert len(page.rows()) == INLINE_GATES
    words = [d["data-word"] for d in page.all("details", **{"class": "step"})]
    assert words[:12] == ["failing"] * 10 + ["complete"] * 2
    phase = page.all("section", data_phase="phase-000")[0]
    assert phase["data-word"] == "failing"  # none passes, but they were evaluated: not "not started"
    # Blockers: critical first, bounded, and a link to all of them.
    blockers = [a["data-gate"] for a in page.all("tr") if "data-gate" in a and "data-tier" not in a]
    assert len(blockers) == BLOCKERS_SHOWN
    critical = {f"gate-{i:05d}" for i in range(200) if i % 3 == 0}
    assert set(blockers) <= critical
    assert "Show all 134 blockers" in page.text  # 67 critical + 67 important of 200
    everything, _ = await s.page("/?blockers=all")
    assert len([a for a in everything.all("tr") if "data-gate" in a and "data-tier" not in a]) == 134


async def test_unchanged_page_and_fragment_answer_304_and_a_change_a_new_body(site):  # noqa: F811
    s = await site(big_config())
    fill_big(s)
    for path in ("/", "/?partial=1", "/phases/phase-000/steps/step-0001?partial=1", "/?q=gate-00042"):
        # The page shows times to the minute, so a minute boundary between the two requests is a real change:
        # then (and only then) the pair is asked again.
        for _ in range(2):
            minute = int(time.time() // 60)
            r = await s.get(path)
            assert r.status == 200
            tag = r.headers["ETag"]
            assert tag.startswith('W/"')
            again = await s.get(path, headers={"If-None-Match": tag})
            if again.status == 304 or int(time.time() // 60) == minute:
                break
        assert again.status == 304 and await again.read() == b"", path
        assert again.headers["ETag"] == tag and again.headers["Cache-Control"] == "no-cache"
    first = await s.get("/?partial=1")
    tag = first.headers["ETag"]
    s.record("bench", "gate-00021", "fail", message="gone")  # step-0001 now fails
    changed = await s.get("/?partial=1", headers={"If-None-Match": tag})
    assert changed.status == 200 and changed.headers["ETag"] != tag
    assert 'data-gate="gate-00021"' in await changed.text()
    # The full page tells its script which ETag its fragment has, so the first refresh is a 304 too.
    for _ in range(2):  # as above: a minute boundary in between changes the fragment
        minute = int(time.time() // 60)
        _, body = await s.page("/")
        embedded = re.search(r'data-etag="([^"]+)"', body)
        assert embedded
        partial_tag = embedded.group(1).replace("&#34;", '"')
        status = (await s.get("/?partial=1", headers={"If-None-Match": partial_tag})).status
        if status == 304 or int(time.time() // 60) == minute:
            break
    assert status == 304


async def test_search_finds_gates_by_id_or_title_as_a_plain_get_form(site):  # noqa: F811
    s = await site(big_config())
    fill_big(s)
    page, _ = await s.page("/")
    form = page.all("form", role="search")[0]
    assert form["method"] == "get" and form["action"] == "/"
    assert page.all("input", name="q", type="search")
    by_id, _ = await s.page("/?q=gate-01234")
    assert list(by_id.rows()) == ["gate-01234"]
    by_title, _ = await s.page("/?q=GATE+1999+of")
    assert list(by_title.rows()) == ["gate-01999"]
    many, _ = await s.page("/?q=benchmark")
    assert len(many.rows()) == 100 and "Only the first 100" in many.text
    short, _ = await s.page("/?q=g")
    assert short.rows() == {} and "at least 2 characters" in short.text
    hostile, body = await s.page("/?q=%3Cscript%3Ewindow.__pwned%3D1%3C%2Fscript%3E")
    assert "<script>window" not in body and "&lt;script&gt;" in body
    assert "No gate's id or title holds" in hostile.text


async def test_filters_reach_the_step_fragments(site):  # noqa: F811
    s = await site(big_config())
    fill_big(s)
    page, _ = await s.page("/?tier=critical")
    details = page.all("details", **{"class": "step"})
    assert details[0]["data-fragment"] == "/phases/phase-000/steps/step-0000?tier=critical&partial=1"
    frag, _ = await s.page(details[0]["data-fragment"])
    assert {a["data-tier"] for a in frag.all("tr") if "data-tier" in a} == {"critical"}
    assert (await s.get("/phases/phase-000/steps/nope")).status == 404
    assert (await s.get("/phases/phase-000/steps/step-0000?tier=bogus")).status == 400


UPTIME = """
tracker: up
uptime_window: 30d
phases:
  - id: p
    steps:
      - id: s
        gates:
          - {id: api, title: API health, tier: critical, http: {url: "http://127.0.0.1:1/"}}
          - {id: api-uptime, title: API uptime, tier: critical, uptime: {gate: api, window: 7d}, expect: "> 99%"}
"""


async def test_an_uptime_gate_page_shows_the_uptime_its_value_is(site):  # noqa: F811
    s = await site(UPTIME)
    st = s.runtime.states["up"]
    day = 86400
    # The observed gate: 905 of 1,000 evaluations passed within the last 7 days; older ones fall outside.
    st.get("api").buckets = Buckets.of({int(s.now // day * day) - 2 * day: [900, 990],
                                        int(s.now // 3600 * 3600): [5, 10],
                                        int(s.now // day * day) - 20 * day: [0, 500]})
    s.record("up", "api", "pass", ago=1, status=200, response_time=0.01, value=0.01)
    ratio = st.get("api").uptime(7 * day, s.now)
    s.record("up", "api-uptime", "fail", value=ratio[0] / ratio[1], message="uptime below 99 %")
    for _ in range(5):  # the uptime gate's own record: mostly failing, a different number
        s.record("up", "api-uptime", "fail", value=0.9)
    page, _ = await s.page("/gates/api-uptime")
    text = page.text
    value = f"{100 * ratio[0] / ratio[1]:.1f} %"
    assert f"{value} is " in text and "99 %" in text  # the value, in the checks
    labels = [a["aria-label"] for a in page.all("div", role="img")]
    assert labels[1].startswith("Uptime of API health, last 7 days:") and f"({value})" in labels[1]
    assert "a different number from the uptime it measures" in text
    cells = [a for a in page.all("span") if "cell" in a.get("class", "")]
    assert len(cells) == 24 + 7
