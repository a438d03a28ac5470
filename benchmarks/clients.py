"""What the HTTP clients cost per chat call over the raw client they send with.

Against the loopback upstream (:mod:`fast_upstream`, in its own process), each contender
makes ``calls`` chat calls at concurrency 1 and 200: ``HttpxClient`` and ``AiohttpClient``
(``execute`` and ``stream``) and the raw ``httpx2.AsyncClient`` and
``aiohttp.ClientSession`` they wrap, sending the same body and reading the whole reply
(the events, for a stream). Rounds are interleaved (every contender once per round, in
turn) and the medians reported: CPU µs and wall µs per call in this process (the upstream's
CPU is not counted), and each wrapper's ratio over its raw client, CPU and wall, measured
in the same rounds.

    python benchmarks/clients.py [--rounds 5] [--calls 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import httpx2
from common import MODEL, PROMPT, upstream_process

from responseloop import HttpxClient
from responseloop.abc import HttpRequest
from responseloop.http.aiohttp import AiohttpClient

CONCURRENCIES = (1, 200)
BODY: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}]}
STREAM_BODY: dict[str, Any] = {**BODY, "stream": True}
HEADERS = {"Authorization": "Bearer bench-key"}

Call = Callable[[], Awaitable[None]]
Row = dict[str, Any]

# (contender, the raw client it is compared with); a raw one is its own baseline.
CONTENDERS: dict[str, str] = {
    "httpx2 raw post": "httpx2 raw post",
    "HttpxClient.execute": "httpx2 raw post",
    "httpx2 raw stream": "httpx2 raw stream",
    "HttpxClient.stream": "httpx2 raw stream",
    "aiohttp raw post": "aiohttp raw post",
    "AiohttpClient.execute": "aiohttp raw post",
    "aiohttp raw stream": "aiohttp raw stream",
    "AiohttpClient.stream": "aiohttp raw stream",
}


async def _ignore_event(_event: Any) -> bool:
    return False


def _calls(name: str, url: str, clients: dict[str, Any]) -> Call:
    """The call ``name`` makes, over the clients of this event loop."""
    raw_httpx: httpx2.AsyncClient = clients["httpx2"]
    session: aiohttp.ClientSession = clients["aiohttp"]
    wrapped_httpx: HttpxClient = clients["HttpxClient"]
    wrapped_aiohttp: AiohttpClient = clients["AiohttpClient"]
    request = HttpRequest(url, BODY, headers=HEADERS, correlation_id="step-1")
    stream_request = HttpRequest(url, STREAM_BODY, headers=HEADERS, correlation_id="step-1")

    async def httpx_post() -> None:
        response = await raw_httpx.post(url, json=BODY, headers=HEADERS)
        json.loads(response.content)

    async def httpx_stream() -> None:
        async with raw_httpx.stream("POST", url, json=STREAM_BODY, headers=HEADERS) as response:
            async for _ in response.aiter_bytes():
                pass

    async def aiohttp_post() -> None:
        async with session.post(url, json=BODY, headers=HEADERS) as response:
            json.loads(await response.read())

    async def aiohttp_stream() -> None:
        async with session.post(url, json=STREAM_BODY, headers=HEADERS) as response:
            async for _ in response.content.iter_any():
                pass

    async def httpx_execute() -> None:
        json.loads((await wrapped_httpx.execute(request)).content)

    async def httpx_wrapped_stream() -> None:
        await wrapped_httpx.stream(stream_request, _ignore_event)

    async def aiohttp_execute() -> None:
        json.loads((await wrapped_aiohttp.execute(request)).content)

    async def aiohttp_wrapped_stream() -> None:
        await wrapped_aiohttp.stream(stream_request, _ignore_event)

    return {
        "httpx2 raw post": httpx_post,
        "HttpxClient.execute": httpx_execute,
        "httpx2 raw stream": httpx_stream,
        "HttpxClient.stream": httpx_wrapped_stream,
        "aiohttp raw post": aiohttp_post,
        "AiohttpClient.execute": aiohttp_execute,
        "aiohttp raw stream": aiohttp_stream,
        "AiohttpClient.stream": aiohttp_wrapped_stream,
    }[name]


async def _measure(call: Call, calls: int, concurrency: int) -> tuple[float, float]:
    """CPU and wall seconds per call of ``calls`` calls, ``concurrency`` at a time."""

    async def worker(count: int) -> None:
        for _ in range(count):
            await call()

    share, extra = divmod(calls, concurrency)
    counts = [share + (1 if index < extra else 0) for index in range(concurrency)]
    # Warm up: every connection the measured calls will use is opened first.
    await asyncio.gather(*(worker(1) for _ in range(concurrency)))
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(count) for count in counts if count))
    return (time.process_time() - cpu) / calls, (time.perf_counter() - wall) / calls


async def _round(url: str, calls: int, names: Sequence[str]) -> list[Row]:
    limits = httpx2.Limits(max_connections=1000, max_keepalive_connections=500)
    async with (
        httpx2.AsyncClient(limits=limits, timeout=httpx2.Timeout(600.0)) as raw_httpx,
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1000, keepalive_timeout=30.0),
            timeout=aiohttp.ClientTimeout(total=None),
        ) as session,
        HttpxClient.create() as wrapped_httpx,
        AiohttpClient() as wrapped_aiohttp,
    ):
        clients = {
            "httpx2": raw_httpx,
            "aiohttp": session,
            "HttpxClient": wrapped_httpx,
            "AiohttpClient": wrapped_aiohttp,
        }
        rows: list[Row] = []
        for concurrency in CONCURRENCIES:
            for name in names:
                cpu, wall = await _measure(_calls(name, url, clients), calls, concurrency)
                rows.append({"name": name, "concurrency": concurrency, "cpu": cpu, "wall": wall})
        return rows


def run(
    rounds: int, calls: int, log: Callable[[str], object] = print, only: Sequence[str] | None = None
) -> list[Row]:
    """Median CPU and wall seconds per call of every contender (or of ``only`` and their
    raw baselines) at each concurrency, with each one's ratios over its raw client."""
    wanted = set(only) if only is not None else set(CONTENDERS)
    unknown = wanted - set(CONTENDERS)
    if unknown:
        raise ValueError(f"unknown contenders: {sorted(unknown)}")
    wanted |= {CONTENDERS[name] for name in wanted}
    names = [name for name in CONTENDERS if name in wanted]
    samples: dict[tuple[str, int], list[tuple[float, float]]] = {}
    with upstream_process() as base_url:
        url = f"{base_url}/v1/chat/completions"
        for index in range(rounds):
            # Each round in turn: every contender's numbers come from the same conditions.
            for row in asyncio.run(_round(url, calls, names)):
                key = (row["name"], row["concurrency"])
                samples.setdefault(key, []).append((row["cpu"], row["wall"]))
            log(f"round {index + 1}/{rounds} done")
    rows: list[Row] = []
    for concurrency in CONCURRENCIES:
        for name in names:
            measured = samples[(name, concurrency)]
            base = samples[(CONTENDERS[name], concurrency)]
            # Ratios per round (same run, same conditions), then their median.
            rows.append(
                {
                    "name": name,
                    "concurrency": concurrency,
                    "cpu_us": statistics.median(cpu for cpu, _ in measured) * 1e6,
                    "wall_us": statistics.median(wall for _, wall in measured) * 1e6,
                    "cpu_ratio": statistics.median(
                        cpu / base_cpu
                        for (cpu, _), (base_cpu, _) in zip(measured, base, strict=True)
                    ),
                    "wall_ratio": statistics.median(
                        wall / base_wall
                        for (_, wall), (_, base_wall) in zip(measured, base, strict=True)
                    ),
                }
            )
    return rows


def table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| client | concurrency | CPU µs/call | wall µs/call | CPU ratio | wall ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['concurrency']} | {row['cpu_us']:.0f} | {row['wall_us']:.0f}"
            f" | {row['cpu_ratio']:.2f} | {row['wall_ratio']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--only", nargs="*", help="contenders to run (their raw clients too)")
    arguments = parser.parse_args()
    rows = run(arguments.rounds, arguments.calls, only=arguments.only)
    print(table(rows))


if __name__ == "__main__":
    main()
