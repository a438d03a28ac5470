"""Memory per in-flight response: 10,000 responses at once against an upstream that holds
every chat call for two seconds, so all of them are in flight together.

Each contender runs in a fresh subprocess. It imports, opens its clients, runs a few
responses (so code paths and caches are warm) and opens one pooled connection per response
(a worker keeps its pool; opening 10,000 connections at once would also spread the start
of the responses over more than the hold), reads its RSS, then starts every response at
once and reads its peak RSS (``VmHWM``) when they are all done. The upstream reports the
most calls it held at once: how many responses were in flight at the same moment.
Payloads are reported beside the result: the request and answer bodies of a response are
what any client must hold, and the target counts only what the loop adds beyond them.

Contenders: the floor over httpx2 and over aiohttp (the HTTP client's own share), the loop
over each, and the loop with the model call held in process (``held model``: no HTTP at
all, only the loop and ``InMemoryStore``).

    python benchmarks/inflight.py [--responses 10000] [--hold 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
from common import HERE, upstream_process, upstream_stats
from fast_upstream import FINAL_TEXT, TOOL_CALL

CONTENDERS = {
    "floor (httpx2)": ("floor", "httpx2"),
    "loop (memory, httpx2)": ("loop", "httpx2"),
    "floor (aiohttp)": ("floor", "aiohttp"),
    "loop (memory, aiohttp)": ("loop", "aiohttp"),
    "floor (raw aiohttp)": ("floor", "native"),
    "loop (memory, AiohttpClient)": ("loop", "native"),
    "loop (memory, held model)": ("loop", "held"),
}


def rss_kb(field: str = "VmRSS") -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak_rss() -> None:
    """Start ``VmHWM`` again from the current RSS (Linux: ``/proc/self/clear_refs``)."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


class HeldModel:
    """An in-process upstream that holds each call like the real one, then answers."""

    def __init__(self, hold: float) -> None:
        self.hold = hold

    async def execute(self, request: Any) -> Any:
        from responseloop.abc import HttpResponse

        await anyio.sleep(self.hold)
        messages = request.json["messages"]
        return HttpResponse.from_json(
            200, FINAL_TEXT if messages[-1]["role"] == "tool" else TOOL_CALL
        )

    async def stream(self, request: Any, on_event: Any) -> Any:
        raise NotImplementedError("the benchmark does not stream")

    async def aclose(self) -> None:
        """Nothing to close."""


async def child(kind: str, client: str, base_url: str, responses: int, hold: float) -> None:
    """Runs in the subprocess; prints one JSON line with its measurements."""
    import gc

    from throughput import Floor, FloorAiohttp, Loop, LoopAiohttp, memory_store

    limits = httpx2.Limits(max_connections=responses + 100, max_keepalive_connections=responses)

    def transport() -> httpx2.AsyncBaseTransport | None:
        if client != "aiohttp":
            return None
        from responseloop.http.aiohttp import aiohttp_transport

        return aiohttp_transport(limits)

    import throughput

    throughput.DEFAULT_LIMITS = limits  # the pools must let every response hold a connection
    contender: Any
    if client == "native":
        contender = FloorAiohttp() if kind == "floor" else LoopAiohttp()
    else:
        contender = Floor(transport) if kind == "floor" else Loop("loop", memory_store, transport)
    await contender.open(base_url)
    if client == "held":
        await contender.http.aclose()
        contender.http = HeldModel(hold)
    async with anyio.create_task_group() as group:  # warm up: code paths, a few connections
        for index in range(20):
            group.start_soon(contender.one, index)
    if client != "held":
        # Open the pool's connections before measuring: they are shared infrastructure that
        # a long-running worker keeps, and opening 10,000 at once would stagger the start
        # of the responses over more than the two seconds each call is held.
        if client == "native":
            # The AiohttpClient's session is made on its first call (the warm-up's).
            session = contender.session if kind == "floor" else contender.http._session

            async def get(url: str) -> Any:
                async with session.get(url) as answer:
                    return await answer.read()

            pool: Any = type("Pool", (), {"get": staticmethod(get)})
        else:
            pool = contender.client if kind == "floor" else contender.http.client
        async with anyio.create_task_group() as group:
            for _ in range(responses):
                group.start_soon(pool.get, f"{base_url}/stats")
    await contender.reset()
    gc.collect()
    reset_peak_rss()  # the pool warm-up's transient peak is not the responses'
    before = rss_kb()
    if client != "held":
        await pool.get(f"{base_url}/reset")
    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for index in range(responses):
            group.start_soon(contender.one, index)
    elapsed = time.perf_counter() - started
    peak = rss_kb("VmHWM")
    in_flight = responses  # the held model holds every response at once
    if client != "held":
        in_flight = upstream_stats(base_url)["max_holding"]
    await contender.aclose()
    print(
        json.dumps(
            {"before_kb": before, "peak_kb": peak, "in_flight": in_flight, "seconds": elapsed}
        ),
        flush=True,
    )


@dataclass
class InFlight:
    name: str
    responses: int
    in_flight: int
    before_kb: int
    peak_kb: int
    seconds: float

    @property
    def kb_per_response(self) -> float:
        return (self.peak_kb - self.before_kb) / self.responses


def payload_bytes() -> int:
    """Bytes a response's bodies take on the wire: both requests and both answers."""
    from throughput import CHAT_BODY, function_tools

    tools = [schema.to_chat_tool() for schema in function_tools().schemas()]
    first = {**CHAT_BODY, "tools": tools}
    second = {
        **first,
        "messages": [
            *CHAT_BODY["messages"],
            TOOL_CALL["choices"][0]["message"],
            {"role": "tool", "tool_call_id": "call_add_1", "content": '{"sum": 3}'},
        ],
    }
    return sum(len(json.dumps(body)) for body in (first, second, TOOL_CALL, FINAL_TEXT))


def run(
    responses: int,
    hold: float,
    log: Callable[[str], None] = print,
    only: list[str] | None = None,
    exclude: list[str] | None = None,
) -> list[InFlight]:
    found = []
    with upstream_process(hold=hold) as base_url:
        for name, (kind, client) in CONTENDERS.items():
            if only and not any(o in name for o in only):
                continue
            if exclude and any(e in name for e in exclude):
                continue
            if client == "native":
                try:
                    import aiohttp  # noqa: F401
                except ImportError:
                    log(f"  {name}: skipped, aiohttp is not installed")
                    continue
            if client == "aiohttp":
                try:
                    import httpx_aiohttp  # noqa: F401
                except ImportError:
                    log(f"  {name}: skipped, httpx-aiohttp is not installed")
                    continue
            command = [
                sys.executable,
                str(HERE / "inflight.py"),
                "--child",
                kind,
                client,
                base_url,
                "--responses",
                str(responses),
                "--hold",
                str(hold),
            ]
            done = subprocess.run(command, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                log(f"  {name}: failed: {done.stderr.strip().splitlines()[-1:]}")
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            measured = InFlight(name, responses, **result)
            log(
                f"  {name}: {measured.kb_per_response:.1f} KB per response, "
                f"{measured.in_flight} in flight at once, {measured.seconds:.1f}s"
            )
            found.append(measured)
    return found


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--responses", type=int, default=10_000)
    parser.add_argument("--hold", type=float, default=2.0)
    parser.add_argument("--child", nargs=3, metavar=("KIND", "CLIENT", "BASE_URL"))
    parser.add_argument("--only", nargs="*")
    arguments = parser.parse_args()
    if arguments.child:
        kind, client, base_url = arguments.child
        anyio.run(child, kind, client, base_url, arguments.responses, arguments.hold)
    else:
        print(f"payloads: {payload_bytes() / 1024:.1f} KB per response")
        run(arguments.responses, arguments.hold, only=arguments.only)
