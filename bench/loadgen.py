"""Paced HTTP request loops: the bare-aiohttp baseline of P2 and the driver of blackbox_exporter.

`python -m bench.loadgen URL --rate R --seconds S --concurrency C [--fresh] [--expect TEXT]`
makes R requests per second (request i is due at start + i/R; at most C in flight) and prints
one JSON line: requests, failures, and this process's own CPU seconds over the paced window
(imports and start-up excluded), so that the baseline's CPU can be read from its output.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import sys
import time
from collections.abc import Callable

import aiohttp


def own_cpu() -> float:
    """This process's user + system CPU seconds."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def paced(url: str, rate: float, seconds: float, concurrency: int, fresh: bool, expect: str = "",
                warmup: float = 0.0, window: Callable[[str], None] | None = None,
                tick: float = 0.0) -> dict[str, float]:
    """Request url at `rate` per second for `seconds` (after `warmup` seconds not counted).

    `window("start")` and `window("end")` are called at the edges of the counted window. With a
    tick, due times are rounded up to tick boundaries, as the exporter's scheduler does.
    """
    connector = aiohttp.TCPConnector(force_close=fresh, limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=10)
    counts = {"requests": 0, "failures": 0}
    jar = aiohttp.DummyCookieJar()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, cookie_jar=jar) as session:
        async def one() -> None:
            try:
                async with session.get(url) as resp:
                    body = await resp.text()
                    ok = resp.status == 200 and (not expect or expect in body)
            except (TimeoutError, aiohttp.ClientError):
                ok = False
            counts["requests"] += 1
            counts["failures"] += not ok

        async def run(duration: float) -> tuple[int, float]:
            start = time.monotonic()
            total = int(duration * rate)
            next_index = 0

            async def worker() -> None:
                nonlocal next_index
                while next_index < total:
                    i = next_index
                    next_index += 1
                    due = start + i / rate
                    if tick:
                        due = math.ceil(due / tick) * tick
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    await one()

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return total, time.monotonic() - start

        if warmup > 0:
            await run(warmup)
        counts.update(requests=0, failures=0)
        if window:
            window("start")
        cpu0 = own_cpu()
        _, elapsed = await run(seconds)
        cpu = own_cpu() - cpu0
        if window:
            window("end")
    return {**counts, "elapsed": elapsed, "cpu": cpu, "rate": counts["requests"] / elapsed}


def main() -> int:
    """Command line: print the result as one JSON line."""
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--fresh", action="store_true", help="a new connection per request")
    p.add_argument("--expect", default="")
    p.add_argument("--tick", type=float, default=0.0, help="start requests at multiples of this many seconds")
    a = p.parse_args()
    result = asyncio.run(paced(a.url, a.rate, a.seconds, a.concurrency, a.fresh, a.expect, a.warmup, tick=a.tick))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
