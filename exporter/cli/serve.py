"""`qualitygate serve`: the server's settings apart from the server, which runs startup -> main loop ->
shutdown inside one signal-handling context (as uvicorn keeps `Config` and `Server` apart)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import signal
import socket
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from exporter import __version__
from exporter.cli.common import EXIT_OK, UsageError, check_output, open_store, os_reason
from exporter.config.durations import parse_duration
from exporter.engine.metrics import WebInfo
from exporter.log import kv
from exporter.log import setup as setup_logging
from exporter.state.opening import Precheck

if TYPE_CHECKING:
    from aiohttp import web

    from exporter.config.model import Config
    from exporter.engine.runtime import Runtime
    from exporter.state.store import Store

DEFAULT_PORT = 9916
DEFAULT_LISTEN = f":{DEFAULT_PORT}"

log = logging.getLogger("qualitygate")

Middleware = Callable[..., Awaitable["web.StreamResponse"]]


def parse_listen(address: str) -> tuple[str | None, int]:
    """HOST:PORT (HOST may be empty for every interface, or [v6]; PORT 0 lets the system choose)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UsageError(f"invalid --web.listen-address {address!r} (want HOST:PORT)")
    host = host.strip("[]")
    return (host or None), int(port)


_SIZES = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30}
DEFAULT_MAX_EVIDENCE = "32MiB"


def parse_size(flag: str, text: str) -> int:
    """A byte count: 1048576, 512KiB, 32MiB, 1GB (at least 1 KiB)."""
    number = text.strip().rstrip("bBiIkKmMgG")
    unit = text.strip()[len(number):].lower()
    if not number.isdigit() or not number.isascii() or unit not in _SIZES or len(number) > 15:
        raise UsageError(f"{flag}: invalid size {text!r} (want e.g. 32MiB, 512KiB, 1048576)")
    size = int(number) * _SIZES[unit]
    if size < 1024:
        raise UsageError(f"{flag} must be at least 1KiB (got {text!r})")
    return size


def external_url(text: str | None) -> str:
    """--web.external-url checked: an absolute http(s) URL, kept without its trailing slash ("" when unset)."""
    if not text:
        return ""
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.query or parsed.fragment:
        raise UsageError(f"--web.external-url {text!r}: want an absolute http:// or https:// URL")
    return text.rstrip("/")


def _duration(flag: str, text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None


@dataclass(frozen=True)
class ServeConfig:
    """Everything `serve` was asked to do, checked: a bad flag is a UsageError before anything starts."""

    config_files: tuple[str, ...]
    listen: str
    host: str | None
    port: int
    web_config: str | None = None
    lifecycle: bool = False
    read_timeout: float = 10.0
    idle_timeout: float = 300.0
    storage: str | None = None  # None: the default path; "": memory only
    concurrency: int = 128
    max_evidence_bytes: int = 32 << 20
    watch_interval: float = 0.0
    shard: tuple[int, int] | None = None
    peers: str | None = None  # --shard.peers URL template
    shard_key: bytes = b""  # derived from --shard.secret-file (web/peersign.py)
    log_level: str = "info"
    log_format: str = "logfmt"
    external_url: str = ""  # --web.external-url: exported as qualitygate_web_info for the alerts' links

    @property
    def state_path(self) -> str | None:
        """The state file's path; None for memory only (--storage.path '')."""
        from exporter.state.store import DEFAULT_PATH

        return None if self.storage == "" else self.storage or DEFAULT_PATH

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServeConfig:
        """The flags of `serve`, checked."""
        host, port = parse_listen(args.listen)
        if args.concurrency < 1:
            raise UsageError("--scheduler.max-concurrency must be at least 1")
        watch = _duration("--config.watch-interval", args.watch_interval)
        read_timeout = _duration("--web.read-timeout", args.read_timeout)
        idle_timeout = _duration("--web.idle-timeout", args.idle_timeout)
        if idle_timeout <= 0:
            raise UsageError("--web.idle-timeout must be more than 0s")
        if (args.shard_index is None) != (args.shard_count is None):
            raise UsageError("--shard.index and --shard.count go together")
        max_evidence = parse_size("--web.max-evidence-bytes", getattr(args, "max_evidence", DEFAULT_MAX_EVIDENCE))
        shard = None
        if args.shard_count is not None:
            if not (args.shard_count >= 1 and 0 <= args.shard_index < args.shard_count):
                raise UsageError(f"--shard.index must be in 0..{args.shard_count - 1} and --shard.count at least 1")
            shard = (args.shard_index, args.shard_count)
        peers, shard_key = _peers(args, shard)
        return cls(config_files=tuple(args.config_files), listen=args.listen, host=host, port=port,
                   web_config=args.web_config, lifecycle=args.lifecycle, read_timeout=read_timeout,
                   idle_timeout=idle_timeout, storage=args.storage, concurrency=args.concurrency,
                   watch_interval=watch, shard=shard, peers=peers, shard_key=shard_key,
                   max_evidence_bytes=max_evidence, log_level=args.log_level,
                   log_format=args.log_format, external_url=external_url(getattr(args, "external_url", None)))


def _peers(args: argparse.Namespace, shard: tuple[int, int] | None) -> tuple[str | None, bytes]:
    """--shard.peers and the key from --shard.secret-file, checked."""
    template, secret_file = getattr(args, "shard_peers", None), getattr(args, "shard_secret_file", None)
    if template is None:
        if secret_file is not None:
            raise UsageError("--shard.secret-file goes with --shard.peers")
        return None, b""
    from exporter.web.peersign import derive_key, read_secret

    if shard is None:
        raise UsageError("--shard.peers needs --shard.index and --shard.count")
    if "{index}" not in template or not template.startswith(("http://", "https://")):
        raise UsageError(f"--shard.peers {template!r}: want an http:// or https:// URL with {{index}} in it")
    if secret_file is None:
        raise UsageError("--shard.peers needs --shard.secret-file (the key of the requests between shards)")
    try:
        return template, derive_key(read_secret(secret_file))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


@dataclass(frozen=True)
class WebOptions:
    """TLS and the auth middlewares from --web.config.file (none without one)."""

    ssl: ssl.SSLContext | None = None
    middlewares: list[Middleware] = field(default_factory=list)

    @classmethod
    def load(cls, path: str | None) -> WebOptions:
        """Read the web config file (a ConfigError, exit 2, on a bad one)."""
        if not path:
            return cls()
        from exporter.web.webconfig import load_web_config

        wc = load_web_config(path)
        return cls(ssl=wc.ssl_context(), middlewares=wc.middlewares())


def bound_address(server: asyncio.AbstractServer, host: str | None) -> str:
    """HOST:PORT as bound (the real port when 0 was asked for), HOST as configured (empty: every interface)."""
    port = 0
    # listen() is typed as the abstract server; create_server() always makes an asyncio.Server
    for sock in server.sockets if isinstance(server, asyncio.Server) else ():
        port = sock.getsockname()[1]
        break
    shown = host or ""
    if ":" in shown:
        shown = f"[{shown}]"
    return f"{shown}:{port}"


@contextlib.contextmanager
def signals(loop: asyncio.AbstractEventLoop, stop: Callable[[], None], reload: Callable[[], None]) -> Iterator[None]:
    """SIGTERM and SIGINT stop, SIGHUP reloads, for as long as the block runs."""
    loop.add_signal_handler(signal.SIGHUP, reload)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    try:
        yield
    finally:
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)


class Server:
    """The running exporter: state, runtime, web app and listener, started and stopped in order."""

    def __init__(self, config: ServeConfig, configs: list[Config], web_options: WebOptions):
        self.config = config
        self.configs = configs
        self.web_options = web_options
        self.should_exit = asyncio.Event()
        self.address = config.listen  # the bound address once listening
        self._runtime: Runtime | None = None
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.AbstractServer | None = None
        self._reloads: set[asyncio.Task[list[str]]] = set()  # kept referenced until done
        self.precheck: Precheck | None = None  # the state file's integrity check, when started before the config load

    async def serve(self) -> int:
        """Start, run until SIGTERM/SIGINT (SIGHUP reloads), stop; signals are handled throughout."""
        loop = asyncio.get_running_loop()
        with signals(loop, self.should_exit.set, self._reload):
            try:
                await self.startup()
                await self.main_loop()
            finally:
                await self.shutdown()
        return EXIT_OK

    async def startup(self) -> None:
        """Restore state first, listen next, evaluate last: gates that probe this exporter itself
        (the example tracker's do) must find it listening on their first run."""
        from aiohttp import web

        from exporter.engine import pauses
        from exporter.engine.runtime import Runtime
        from exporter.web.app import make_app
        from exporter.web.listener import LINGERING_SECONDS, ReadTimeouts, answered, body_deadline, listen

        c = self.config
        runtime = self._runtime = Runtime(list(c.config_files), max_concurrency=c.concurrency, shard=c.shard,
                                          watch_interval=c.watch_interval, max_evidence_bytes=c.max_evidence_bytes,
                                          freeze_gc=True, trim_heap=True,
                                          switch_interval=pauses.SERVE_SWITCH_INTERVAL)
        runtime.store = self._store()
        runtime.prepare(self.configs)
        gates = sum(len(g.gates) for g in self.configs)
        self.configs = []  # the runtime has them: kept here, the first config would outlive every reload (~10 MB)
        runtime.registry.register(WebInfo(c.external_url))
        timeouts = runtime.read_timeouts = ReadTimeouts()
        # The body deadline goes after the auth middleware: a stranger's body is never waited for.
        # answered() goes first (outermost): it writes each answer once the others have shaped it.
        middlewares = [answered(runtime.foreground), *self.web_options.middlewares,
                       body_deadline(c.read_timeout, timeouts)]
        peers = None
        if c.peers is not None and c.shard is not None:
            from exporter.web.peers import Peers, PeerSettings

            peers = Peers(PeerSettings(c.peers, c.shard[0], c.shard[1], c.shard_key), runtime)
        app = make_app(runtime, lifecycle=c.lifecycle, middlewares=middlewares, peers=peers)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=c.idle_timeout,
                                     lingering_time=LINGERING_SECONDS)
        await self._runner.setup()
        try:
            self._listener = await listen(self._runner, c.host, c.port, ssl_context=self.web_options.ssl,
                                          read_timeout=c.read_timeout, counts=timeouts,
                                          foreground=runtime.foreground)
        except OSError as exc:
            raise UsageError(f"cannot listen on {c.listen}: {os_reason(exc)}") from None
        except (socket.gaierror, UnicodeError) as exc:
            raise UsageError(f"cannot listen on {c.listen}: {exc}") from None
        self.address = bound_address(self._listener, c.host)
        await runtime.start()
        log.info("listening", extra=kv(address=self.address, gates=gates,
                                       tls=self.web_options.ssl is not None, version=__version__))

    async def main_loop(self) -> None:
        """Wait for a stop signal."""
        await self.should_exit.wait()
        log.info("shutting down")

    async def shutdown(self) -> None:
        """Stop accepting, end open connections, then stop the runtime (which flushes the state file)."""
        if self._listener is not None:
            self._listener.close()  # stop accepting; runner.cleanup() then ends the open connections
        if self._runner is not None:
            await self._runner.cleanup()
        if self._runtime is not None:
            await self._runtime.stop()

    def _reload(self) -> None:
        if self._runtime is None:
            return  # SIGHUP before startup has a runtime: the config about to run is the current one
        task = asyncio.get_running_loop().create_task(self._runtime.reload())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    def _store(self) -> Store | None:
        path = self.config.state_path
        if path is None:
            log.info("state kept in memory only (--storage.path ''): restarts forget history and pushed "
                     "evidence, manual gates cannot pass")
            return None
        # A file that cannot be written later degrades to memory (a disk fault must not stop the gates),
        # but a directory can never become the state file: that is a usage error, said at start.
        check_output("--storage.path", path)
        early, self.precheck = self.precheck, None  # used once: its read-ahead is not kept for the server's life
        return open_store(path, early=early)


# What serve imports anyway before it listens, imported while a child parses the config (in order, until the
# config is there): the parent has nothing else to do then.
WARM_IMPORTS = ("exporter.engine.runtime", "exporter.engine.pushes", "aiohttp.web", "exporter.web.app",
                "exporter.web.listener", "exporter.state.store")


def _load_configs(paths: list[str]) -> list[Config]:
    # The config stage only: the child imports nothing more (the engine is the parent's to import meanwhile).
    from exporter.config.files import load_configs

    return load_configs(paths)


def load_first(paths: list[str], precheck: Callable[[], Precheck | None]) -> tuple[list[Config], Precheck | None]:
    """The first config, parsed in a child (exporter.config.apart) while this process starts `precheck` and
    imports what it needs later. A child that dies is a one-line error (exit 2)."""
    from exporter.config import apart

    apart.enable()
    pending = apart.start(paths, _load_configs)  # forked before any thread of ours exists
    try:
        check = precheck()
        for name in WARM_IMPORTS:
            if pending.ready():
                break
            importlib.import_module(name)
        return pending.result(), check
    except apart.LoadChildError as exc:
        raise UsageError(f"cannot load the config: {exc}") from None
    finally:
        pending.cancel()  # when something else raised before result(): no child is left behind


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the exporter until SIGTERM/SIGINT; SIGHUP reloads."""
    setup_logging(args.log_level, args.log_format)
    config = ServeConfig.from_args(args)
    # The state file's quick_check (one SQLite call, the GIL released) runs meanwhile on the other core.
    path = config.state_path
    configs, precheck = load_first(list(config.config_files), lambda: Precheck(path) if path is not None else None)
    from exporter.engine.pushes import read_tokens

    read_tokens(configs)  # a push_tokens_file that cannot be used is a config error before anything starts
    web_options = WebOptions.load(config.web_config)

    server = Server(config, configs, web_options)
    server.precheck = precheck
    del configs  # only the server holds them, and lets go once they run
    return asyncio.run(server.serve())
