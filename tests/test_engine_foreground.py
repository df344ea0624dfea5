"""Foreground: background slices wait while a request is answered, never longer than DEFER_MAX.

The rules are driven with looptime (the loop's clock fast-forwards, nothing sleeps); the listener's
side against a real aiohttp server on 127.0.0.1 with raw sockets, so that "answered" means the
bytes were written, and with an Exposition building a new frame while a request is held open."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import web

from exporter.config.model import parse_config
from exporter.engine.foreground import Foreground
from exporter.exposition.gates import Exposition
from exporter.state.memory import State
from exporter.web.listener import ReadTimeouts, answered, listen


async def turns(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


# --- the rules -------------------------------------------------------------------------


async def test_idle_a_callback_runs_in_the_next_turn_like_call_soon():
    fg, ran = Foreground(), []
    fg.call_soon(lambda: ran.append(1))
    assert ran == []
    await turns(1)
    assert ran == [1] and fg.held_total == 0


async def test_background_callbacks_take_turns_one_per_turn_of_the_loop_in_order():
    """So that the selector runs between any two slices, and a request arriving meanwhile is seen."""
    fg, ran = Foreground(), []
    for name in "abc":
        fg.call_soon(lambda name=name: ran.append(name))
    seen = []
    for _ in range(4):
        await turns(1)
        seen.append("".join(ran))
    assert seen == ["a", "ab", "abc", "abc"]


async def test_a_callback_that_raises_does_not_stop_the_others(caplog: pytest.LogCaptureFixture):
    fg, ran = Foreground(), []

    def boom() -> None:
        raise RuntimeError("a slice failed")

    fg.call_soon(boom)
    fg.call_soon(lambda: ran.append("next"))
    await turns(3)
    assert ran == ["next"]
    assert "a slice failed" in caplog.text  # the loop's exception handler, as for call_soon


@pytest.mark.looptime
async def test_busy_holds_a_callback_until_the_request_is_answered():
    loop = asyncio.get_running_loop()
    fg, ran = Foreground(defer_max=10.0), []
    fg.enter("conn")
    assert fg.busy
    fg.call_soon(lambda: ran.append(loop.time()))
    await asyncio.sleep(5.0)  # half the bound: still held
    assert ran == [] and fg.held_total == 1
    t_left = loop.time()
    fg.leave("conn")
    await turns(2)
    assert ran == [t_left] and fg.overdue_total == 0


@pytest.mark.looptime
async def test_a_request_that_never_ends_delays_a_callback_by_defer_max_and_no_more():
    loop = asyncio.get_running_loop()
    fg, ran = Foreground(defer_max=0.5), []
    fg.enter("stuck")
    t0 = loop.time()
    fg.call_soon(lambda: ran.append(loop.time()))
    await asyncio.sleep(2.0)
    assert len(ran) == 1 and ran[0] - t0 == pytest.approx(0.5, abs=0.01)
    assert fg.overdue_total == 1 and fg.busy


@pytest.mark.looptime
async def test_a_sliced_job_advances_one_slice_per_bound_under_a_request_that_never_ends():
    """A flood (or a client holding a request open) slows a reload, never stops it."""
    loop = asyncio.get_running_loop()
    fg = Foreground(defer_max=0.1)
    fg.enter("flood")
    slices: list[float] = []

    async def job() -> None:
        for _ in range(5):
            slices.append(loop.time())
            await fg.turn()

    t0 = loop.time()
    await asyncio.wait_for(job(), 10.0)
    gaps = [b - a for a, b in zip([t0, *slices], slices, strict=False)][1:]
    assert gaps == pytest.approx([0.1] * 4, abs=0.01)


async def test_a_request_arriving_after_the_callback_was_asked_for_still_holds_it():
    """The check is made when the callback is due, not when it was asked for."""
    fg, ran = Foreground(defer_max=10.0), []
    fg.call_soon(lambda: ran.append(1))
    fg.enter("late")  # the same turn's select found a request head
    await turns(3)
    assert ran == []
    fg.leave("late")
    await turns(2)
    assert ran == [1]


async def test_a_cancelled_callback_never_runs_held_or_not():
    fg, ran = Foreground(defer_max=10.0), []
    fg.call_soon(lambda: ran.append("idle")).cancel()
    fg.enter("c")
    held = fg.call_soon(lambda: ran.append("held"))
    await turns(2)
    held.cancel()
    fg.leave("c")
    await turns(3)
    assert ran == []


async def test_busy_is_per_connection_and_leaving_twice_is_harmless():
    fg = Foreground()
    fg.enter("a")
    fg.enter("a")  # a second head on the same connection (pipelined)
    fg.enter("b")
    fg.leave("a")
    assert fg.busy
    fg.leave("a")
    fg.leave("b")
    assert not fg.busy
    fg.leave("never-entered")
    assert not fg.busy


# --- the listener and the middleware, over real sockets ---------------------------------------


async def serve(fg: Foreground, handler) -> tuple[web.AppRunner, int]:
    app = web.Application(middlewares=[answered(fg)])
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    server = await listen(runner, "127.0.0.1", 0, ssl_context=None, read_timeout=5.0, counts=ReadTimeouts(),
                          foreground=fg)
    return runner, server.sockets[0].getsockname()[1]


async def test_busy_from_the_head_to_the_last_byte_written_over_http():
    """A 16 MB answer to a client that stops reading: the background callback waits until the client
    has read it all and the write ended, not merely until the handler returned."""
    fg, events = Foreground(defer_max=30.0), []
    body = b"x" * (16 << 20)

    async def handler(request: web.Request) -> web.Response:
        events.append(("handler", fg.busy))
        fg.call_soon(lambda: events.append(("background", fg.busy)))
        return web.Response(body=body)

    runner, port = await serve(fg, handler)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(0.3)  # the client reads nothing: the server's write is stuck on the socket
        assert events == [("handler", True)]
        assert fg.busy
        got = 0
        while got < len(body):
            got += len(await reader.read(1 << 20))
        for _ in range(100):
            if len(events) == 2:
                break
            await asyncio.sleep(0.01)
        assert events == [("handler", True), ("background", False)]
        assert fg.held_total == 1 and fg.overdue_total == 0
    finally:
        writer.transport.abort()  # else cleanup() would wait for a client that reads nothing
        await runner.cleanup()


async def test_a_client_that_leaves_mid_request_leaves_the_foreground():
    fg, entered, release = Foreground(defer_max=30.0), asyncio.Event(), asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        entered.set()
        await release.wait()  # answers only once the client is gone
        return web.Response()

    runner, port = await serve(fg, handler)
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(entered.wait(), 5)
        assert fg.busy
        writer.close()
        for _ in range(200):
            if not fg.busy:
                break
            await asyncio.sleep(0.01)
        assert not fg.busy
    finally:
        release.set()
        await runner.cleanup()


async def test_blank_lines_or_a_body_after_a_refusal_hold_nothing():
    """Only a request aiohttp parsed is in the foreground: a client that sends bytes looking like a
    head's end (blank lines), with no request, must not hold the background for as long as it stays."""
    fg, ran = Foreground(defer_max=30.0), []

    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=401, text="no")  # refused before its body is read

    runner, port = await serve(fg, handler)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"\r\n\r\n\n\n")
        await writer.drain()
        await asyncio.sleep(0.1)
        assert not fg.busy
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\ncontent-length: 200\r\n\r\n")
        assert (await reader.readuntil(b"no")).startswith(b"HTTP/1.1 401")
        writer.write(b"a body\r\n\r\nwith blank lines\n\n")  # after the answer
        await writer.drain()
        await asyncio.sleep(0.1)
        assert not fg.busy
        fg.call_soon(lambda: ran.append(1))
        await turns(2)
        assert ran == [1] and fg.held_total == 0
    finally:
        writer.transport.abort()
        await runner.cleanup()


async def test_a_reload_asked_for_over_http_is_not_held_by_its_own_request(aiohttp_client, tmp_path, monkeypatch):
    """POST /-/reload waits for the reload's slices: its own request must not hold them."""
    from exporter.engine import runtime as runtime_module
    from exporter.engine.runtime import Runtime, load_configs
    from exporter.exposition import gates
    from exporter.exposition.gates import exposition_for
    from exporter.web.app import make_app

    monkeypatch.setattr(runtime_module, "APPLY_BUDGET", 0.0)  # a slice per step: many turns
    monkeypatch.setattr(gates, "STEP_BUDGET", 0.0)
    path = tmp_path / "t.yml"
    path.write_text(many("old", 200))
    runtime = Runtime([str(path)])
    runtime.prepare(load_configs([str(path)]))
    expo = exposition_for(runtime)
    client = await aiohttp_client(make_app(runtime, lifecycle=True, middlewares=[answered(runtime.foreground)]))
    path.write_text(many("new", 200))
    response = await client.post("/-/reload")
    assert response.status == 200, await response.text()
    assert b'step="new-000"' in expo.render()
    assert runtime.foreground.held_total == 0 and runtime.foreground.overdue_total == 0
    await runtime.stop()


# --- a view's slices ----------------------------------------------------------------------


def config(step: str):
    body = "".join(f"      - {{id: g{i}, file: {{path: /etc/hostname}}}}\n" for i in range(300))
    return parse_config(f"tracker: t\nphases:\n- id: p\n  steps:\n  - id: {step}\n    gates:\n" + body)


async def test_a_new_frame_is_not_built_while_a_request_is_answered():
    fg = Foreground(defer_max=30.0)
    expo = Exposition(registry=None, call_soon=fg.call_soon)
    expo.set_trackers([(config("old"), State())])  # the first config: built at once
    expo.set_trackers([(config("new"), State())])
    fg.enter("scrape")
    settled = asyncio.ensure_future(expo.settled())
    await turns(50)
    assert not settled.done()
    assert b'step="old"' in expo.render() and b'step="new"' not in expo.render()
    fg.leave("scrape")
    await asyncio.wait_for(settled, 10)
    assert b'step="new"' in expo.render()
    assert fg.held_total >= 1



# --- wired in a real serve ----------------------------------------------------------------


def many(prefix: str, n: int) -> str:
    lines = ["tracker: t", "defaults:", "  interval: 60s", "phases:", "  - id: p", "    steps:"]
    for i in range(n):
        if i % 20 == 0:
            lines += [f"      - id: {prefix}-{i // 20:03d}", "        gates:"]
        lines += [f"          - {{id: g{i:05d}, file: {{path: /etc/hostname}}}}"]
    return "\n".join(lines) + "\n"


def test_in_serve_a_reload_under_back_to_back_scrapes_waits_for_them(serve, tmp_path):
    """`qualitygate serve`: the listener and the middleware tell the runtime's Foreground, whose
    slices (the reload's, the exposition's) then wait for the scrapes, as its metrics count."""
    import signal
    import threading

    import requests

    from tests.conftest import parse_metrics, sample, wait_for

    path = tmp_path / "t.yml"
    path.write_text(many("old", 3000))
    s = serve(path)
    stop, statuses = threading.Event(), []

    def scrape() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                statuses.append(session.get(s.url + "/metrics", timeout=10).status_code)

    scraper = threading.Thread(target=scrape)
    scraper.start()
    try:
        wait_for(lambda: len(statuses) >= 3, timeout=20, what="scrapes")
        path.write_text(many("new", 3000))
        s.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: 'step="new-000"' in s.get("/metrics")[1], timeout=30, what="the new config shown")
    finally:
        stop.set()
        scraper.join(20)
    m = parse_metrics(s.get("/metrics")[1])
    assert set(statuses) == {200}
    held = sample(m, "qualitygate_background_held_total")
    assert held is not None and held > 0
    overdue = sample(m, "qualitygate_background_overdue_total")
    assert overdue is not None and 0 <= overdue <= held
