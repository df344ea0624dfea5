"""A reload lets go of the config it replaces: no Gate of the old config stays reachable (issue 17's soak,
where each reload changing every gate left ~45 MB behind). Counted with the garbage collector, not timed."""

from __future__ import annotations

import gc
from pathlib import Path

from conftest import one_step_tracker
from exporter.cli.main import _parser
from exporter.cli.serve import ServeConfig, Server, WebOptions
from exporter.config.model import Config, Gate
from exporter.engine.runtime import Runtime, load_configs
from exporter.web.app import make_app


def gates_yaml(n: int, timeout: str) -> str:
    return "\n".join(f"- {{id: g{i}, file: {{path: /etc/hostname}}, interval: 60s, timeout: {timeout}}}"
                     for i in range(n))


def live(kind: type) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is kind)


async def test_a_reload_leaves_no_gate_of_the_old_config_reachable(aiohttp_client, tmp_path: Path):
    path = tmp_path / "gates.yml"
    path.write_text(one_step_tracker(gates_yaml(3, "1s")))
    runtime = Runtime([str(path)])
    client = await aiohttp_client(make_app(runtime, lifecycle=True))  # the exposition is a view of the runtime
    try:
        await runtime.start(load_configs([str(path)]))
        assert (await client.get("/metrics")).status == 200
        gates, configs = live(Gate), live(Config)
        for n, timeout in ((5, "2s"), (5, "1s")):  # every gate changes; the second time their number stays
            path.write_text(one_step_tracker(gates_yaml(n, timeout)))
            assert (await client.post("/-/reload")).status == 200
            assert (await client.get("/metrics")).status == 200
            assert [g.timeout for g in runtime.trackers["t"].gates] == [float(timeout[0])] * n
        assert live(Gate) - gates == 2, "only the two gates added are new objects: the old config's are gone"
        assert live(Config) == configs
    finally:
        await runtime.stop()


async def test_the_server_drops_the_first_config_once_the_runtime_has_it(tmp_path: Path):
    path = tmp_path / "gates.yml"
    path.write_text(one_step_tracker(gates_yaml(2, "1s")))
    args = _parser().parse_args(["serve", "--config.file", str(path), "--web.listen-address", "127.0.0.1:0",
                                 "--storage.path", ""])
    server = Server(ServeConfig.from_args(args), load_configs([str(path)]), WebOptions())
    try:
        await server.startup()
        assert server.configs == [], "the runtime's trackers are the one reference to the running config"
    finally:
        await server.shutdown()
