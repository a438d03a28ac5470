"""Time per response for model call → server tool → model call, against one loopback
upstream, for every contender side by side in the same run.

Contenders (each owns its HTTP client and pool, opened once per concurrency level):

* ``floor``: the same two chat-completions calls made directly with ``httpx2`` and the
  tool awaited inline; nothing stored.
* ``loop (memory)``: ``run_response_loop`` with ``InMemoryStore`` and ``HttpxClient``.
* ``loop (sqlite)`` / ``loop (postgres)``: the same with ``SQLiteStore`` / ``PostgresStore``.
* ``transport (httpx2)``: ``POST /v1/responses`` through ``ResponseLoopTransport`` with a
  raw ``httpx2.AsyncClient`` (Responses request parsed, loop run, Response assembled).
* ``transport (openai)``: the same through the official ``openai`` client.
* ``peer (openai-agents)``: ``Runner.run`` of the OpenAI Agents SDK with the same tool over
  its chat-completions model (tracing off: it would export to OpenAI).
* ``floor (aiohttp)`` / ``loop (aiohttp)``: the floor and the loop over an aiohttp-backed
  httpx2 transport, when ``httpx-aiohttp`` is installed.
* ``floor (raw aiohttp)`` / ``loop (memory, AiohttpClient)``: the two calls made directly
  with ``aiohttp.ClientSession``, and the loop over ``AiohttpClient``.

Each measurement runs ``concurrency`` workers that take responses until the count is done;
time per response is the wall time over the count (latency at 1, inverse throughput at
200). Rounds interleave the contenders and the median is reported.

    python benchmarks/throughput.py [--rounds 5] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
from common import MODEL, POSTGRES_URL, PROMPT, add, upstream_process, upstream_stats

from responseloop import (
    ChatTransition,
    FunctionTools,
    HttpxClient,
    InMemoryStore,
    LeaseKeeper,
    ResponseLoopTransport,
    ResponseRecord,
    UpstreamTarget,
    run_response_loop,
)
from responseloop.abc import Complete, ResponseStore
from responseloop.exceptions import StoreError
from responseloop.http import DEFAULT_LIMITS
from responseloop.stores.postgres import PostgresStore
from responseloop.stores.sqlite import SQLiteStore

CHAT_BODY: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}]}
RESPONSES_BODY: dict[str, Any] = {"model": MODEL, "input": PROMPT}


def function_tools() -> FunctionTools:
    tools = FunctionTools()
    tools.tool(add)
    return tools


def pooled_httpx2(transport: httpx2.AsyncBaseTransport | None = None) -> httpx2.AsyncClient:
    """Every contender's upstream pool has the same size as ``HttpxClient``'s default."""
    return httpx2.AsyncClient(
        limits=DEFAULT_LIMITS, timeout=httpx2.Timeout(600.0, connect=10.0), transport=transport
    )


def aiohttp_transport() -> httpx2.AsyncBaseTransport | None:
    """responseloop's aiohttp-backed httpx2 transport (extra ``aiohttp``, the route the
    ``openai`` SDK's own ``aiohttp`` extra takes), or None when it is not installed."""
    from responseloop.http.aiohttp import aiohttp_transport as shipped

    try:
        return shipped(DEFAULT_LIMITS)
    except ImportError:
        return None


class Contender:
    """One way of producing the scenario's response."""

    name = ""

    async def open(self, base_url: str) -> None:
        """Create clients and stores (not timed)."""

    async def reset(self) -> None:
        """Between measurements: drop what the last one stored (not timed)."""

    async def one(self, index: int) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Close what :meth:`open` created."""


class Floor(Contender):
    """The two chat calls made directly with httpx2, the tool awaited inline."""

    name = "floor"

    def __init__(self, transport: Callable[[], httpx2.AsyncBaseTransport | None] = lambda: None):
        self._transport = transport

    async def open(self, base_url: str) -> None:
        self.url = f"{base_url}/v1/chat/completions"
        self.client = pooled_httpx2(self._transport())
        self.tools = [schema.to_chat_tool() for schema in function_tools().schemas()]

    async def one(self, index: int) -> None:
        first_body = {**CHAT_BODY, "tools": self.tools}
        first = await self.client.post(self.url, json=first_body)
        first.raise_for_status()
        message = first.json()["choices"][0]["message"]
        call = message["tool_calls"][0]
        result = await add(**json.loads(call["function"]["arguments"]))
        second_body = {
            **first_body,
            "messages": [
                *CHAT_BODY["messages"],
                message,
                {"role": "tool", "tool_call_id": call["id"], "content": json.dumps(result)},
            ],
        }
        second = await self.client.post(self.url, json=second_body)
        second.raise_for_status()
        assert second.json()["choices"][0]["message"]["content"] == "1 + 2 = 3"

    async def aclose(self) -> None:
        await self.client.aclose()


class Loop(Contender):
    """``run_response_loop`` over a store and an ``HttpxClient``."""

    def __init__(
        self,
        name: str,
        store: Callable[[], contextlib.AbstractAsyncContextManager[ResponseStore]],
        transport: Callable[[], httpx2.AsyncBaseTransport | None] = lambda: None,
    ) -> None:
        self.name = name
        self._open_store = store
        self._transport = transport

    async def open(self, base_url: str) -> None:
        self.upstream = UpstreamTarget(f"{base_url}/v1", "/chat/completions")
        self.http = HttpxClient(pooled_httpx2(self._transport()), owns_client=True)
        self.tools = function_tools()
        self.transition = ChatTransition(CHAT_BODY)
        self._stack = contextlib.AsyncExitStack()
        self.store = await self._stack.enter_async_context(self._open_store())
        # One lease keeper per worker, as a production worker runs (docs/production.md).
        self.keeper = await self._stack.enter_async_context(LeaseKeeper())

    async def reset(self) -> None:
        if isinstance(self.store, InMemoryStore):
            self.store = InMemoryStore()

    async def one(self, index: int) -> None:
        response_id = f"resp_{uuid.uuid4().hex}"
        await self.store.create_response(ResponseRecord(response_id, CHAT_BODY))
        outcome = await run_response_loop(
            response_id,
            store=self.store,
            http_client=self.http,
            upstream=self.upstream,
            transition=self.transition,
            tools=self.tools,
            lease_keeper=self.keeper,
        )
        assert isinstance(outcome, Complete), outcome

    async def aclose(self) -> None:
        await self._stack.aclose()
        await self.http.aclose()


class TransportHttpx2(Contender):
    """``POST /v1/responses`` through ``ResponseLoopTransport`` with a raw httpx2 client."""

    name = "transport (httpx2)"

    async def open(self, base_url: str) -> None:
        self.transport = ResponseLoopTransport.to_upstream(
            f"{base_url}/v1", tools=function_tools(), http_client=HttpxClient(pooled_httpx2())
        )
        self.client = httpx2.AsyncClient(
            transport=self.transport, base_url="http://responseloop.local/v1"
        )

    async def reset(self) -> None:
        self.transport.service.store = InMemoryStore()

    async def one(self, index: int) -> None:
        answer = await self.client.post(
            "/responses", json=RESPONSES_BODY, headers={"Authorization": "Bearer bench"}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "completed"

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.transport.service.http_client.aclose()  # type: ignore[attr-defined]


class TransportOpenAI(TransportHttpx2):
    """The same, through the official ``openai`` client."""

    name = "transport (openai)"

    async def open(self, base_url: str) -> None:
        import openai

        await super().open(base_url)
        self.openai = openai.AsyncOpenAI(
            base_url="http://responseloop.local/v1",
            api_key="bench",
            http_client=self.client,
            max_retries=0,
        )

    async def one(self, index: int) -> None:
        response = await self.openai.responses.create(model=MODEL, input=PROMPT)
        assert response.output_text == "1 + 2 = 3", response


class Peer(Contender):
    """The OpenAI Agents SDK: ``Runner.run`` over ``OpenAIChatCompletionsModel``."""

    name = "peer (openai-agents)"

    async def open(self, base_url: str) -> None:
        import agents
        import openai

        agents.set_tracing_disabled(True)
        self.client = pooled_httpx2()
        model = agents.OpenAIChatCompletionsModel(
            model=MODEL,
            openai_client=openai.AsyncOpenAI(
                base_url=f"{base_url}/v1", api_key="bench", http_client=self.client, max_retries=0
            ),
        )
        self.agent = agents.Agent(name="bench", model=model, tools=[agents.function_tool(add)])
        self.runner = agents.Runner

    async def one(self, index: int) -> None:
        result = await self.runner.run(self.agent, PROMPT)
        assert result.final_output == "1 + 2 = 3", result.final_output

    async def aclose(self) -> None:
        await self.client.aclose()


def memory_store() -> contextlib.AbstractAsyncContextManager[ResponseStore]:
    @contextlib.asynccontextmanager
    async def opened() -> Any:
        yield InMemoryStore()

    return opened()


def sqlite_store(directory: Path) -> Callable[[], Any]:
    @contextlib.asynccontextmanager
    async def opened() -> Any:
        async with SQLiteStore(directory / f"bench-{uuid.uuid4().hex}.db") as store:
            yield store

    return opened


def postgres_store(url: str) -> Callable[[], Any]:
    @contextlib.asynccontextmanager
    async def opened() -> Any:
        schema = f"rl_bench_{uuid.uuid4().hex[:12]}"
        try:
            async with PostgresStore.from_url(url, schema=schema) as store:
                yield store
        finally:
            import psycopg

            with psycopg.connect(url, autocommit=True) as connection:
                connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    return opened


async def postgres_reachable(url: str) -> str | None:
    """None when PostgreSQL answers at ``url``, else why not."""
    try:
        async with postgres_store(url)():
            return None
    except (StoreError, ImportError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"


def peer_available() -> str | None:
    try:
        import agents  # noqa: F401
    except ImportError as exc:
        return f"openai-agents is not installed ({exc}); `pip install openai-agents`"
    return None


@dataclass
class Sample:
    seconds_per_response: float
    cpu_per_response: float  # this process's CPU seconds (all threads) per response
    upstream_cpu_share: float  # of one core, during the measurement
    upstream_us_per_call: float


@dataclass
class Level:
    """Every contender's samples at one concurrency."""

    concurrency: int
    responses: int
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def median(self, name: str) -> float | None:
        found = self.samples.get(name)
        return statistics.median(s.seconds_per_response for s in found) if found else None


async def measure(contender: Contender, base_url: str, responses: int, concurrency: int) -> Sample:
    remaining = iter(range(responses))

    async def worker() -> None:
        for index in remaining:
            await contender.one(index)

    before = await anyio.to_thread.run_sync(upstream_stats, base_url)
    started, cpu_started = time.perf_counter(), time.process_time()
    async with anyio.create_task_group() as group:
        for _ in range(concurrency):
            group.start_soon(worker)
    elapsed, cpu_used = time.perf_counter() - started, time.process_time() - cpu_started
    after = await anyio.to_thread.run_sync(upstream_stats, base_url)
    cpu = after["cpu_seconds"] - before["cpu_seconds"]
    calls = max(1, after["requests"] - before["requests"] - 0)
    return Sample(elapsed / responses, cpu_used / responses, cpu / elapsed, cpu / calls * 1e6)


async def run_level(
    base_url: str,
    contenders: list[Contender],
    concurrency: int,
    responses: int,
    rounds: int,
    log: Callable[[str], None],
) -> Level:
    level = Level(concurrency, responses)
    opened: list[Contender] = []
    for contender in contenders:
        try:
            await contender.open(base_url)
            await measure(contender, base_url, min(responses, 2 * concurrency + 20), concurrency)
        except Exception as exc:  # a contender that cannot run is reported, not fatal
            level.errors[contender.name] = f"{type(exc).__name__}: {exc}"
            log(f"  {contender.name}: cannot run: {level.errors[contender.name]}")
            with contextlib.suppress(Exception):
                await contender.aclose()
            continue
        opened.append(contender)
    try:
        for round_ in range(rounds):
            # Rotate the order so no contender always runs first (or right after another).
            order = opened[round_ % len(opened) :] + opened[: round_ % len(opened)]
            for contender in order:
                await contender.reset()
                sample = await measure(contender, base_url, responses, concurrency)
                level.samples.setdefault(contender.name, []).append(sample)
            log(
                f"  round {round_ + 1}/{rounds}: "
                + ", ".join(
                    f"{c.name} {level.samples[c.name][-1].seconds_per_response * 1e6:.0f}µs"
                    for c in opened
                )
            )
    finally:
        for contender in reversed(opened):  # last opened first: their task groups nest
            await contender.aclose()
    return level


class FloorAiohttp(Contender):
    """The two chat calls made directly with ``aiohttp.ClientSession``, the tool inline."""

    name = "floor (raw aiohttp)"

    async def open(self, base_url: str) -> None:
        import aiohttp

        self.url = f"{base_url}/v1/chat/completions"
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=DEFAULT_LIMITS.max_connections or 1000)
        )
        self.tools = [schema.to_chat_tool() for schema in function_tools().schemas()]

    async def one(self, index: int) -> None:
        first_body = {**CHAT_BODY, "tools": self.tools}
        async with self.session.post(self.url, json=first_body) as first:
            first.raise_for_status()
            message = (await first.json())["choices"][0]["message"]
        call = message["tool_calls"][0]
        result = await add(**json.loads(call["function"]["arguments"]))
        second_body = {
            **first_body,
            "messages": [
                *CHAT_BODY["messages"],
                message,
                {"role": "tool", "tool_call_id": call["id"], "content": json.dumps(result)},
            ],
        }
        async with self.session.post(self.url, json=second_body) as second:
            second.raise_for_status()
            answer = await second.json()
        assert answer["choices"][0]["message"]["content"] == "1 + 2 = 3"

    async def aclose(self) -> None:
        await self.session.close()


class LoopAiohttp(Loop):
    """``run_response_loop`` with ``InMemoryStore`` over :class:`AiohttpClient`."""

    def __init__(self) -> None:
        super().__init__("loop (memory, AiohttpClient)", memory_store)

    async def open(self, base_url: str) -> None:
        from responseloop.http.aiohttp import AiohttpClient

        await super().open(base_url)
        await self.http.aclose()
        self.http = AiohttpClient(  # type: ignore[assignment]
            max_connections=DEFAULT_LIMITS.max_connections or 1000
        )


def native_aiohttp() -> bool:
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return False
    return True


def contenders(directory: Path, postgres: str | None, with_aiohttp: bool) -> list[Contender]:
    found: list[Contender] = [
        Floor(),
        Loop("loop (memory)", memory_store),
        TransportHttpx2(),
        TransportOpenAI(),
        Loop("loop (sqlite)", sqlite_store(directory)),
    ]
    if postgres is not None:
        found.append(Loop("loop (postgres)", postgres_store(postgres)))
    found.append(Peer())
    if with_aiohttp and aiohttp_transport() is not None:
        floor = Floor(aiohttp_transport)
        floor.name = "floor (aiohttp)"
        found += [floor, Loop("loop (memory, aiohttp)", memory_store, aiohttp_transport)]
    if with_aiohttp and native_aiohttp():
        found += [FloorAiohttp(), LoopAiohttp()]
    return found


@dataclass
class Throughput:
    levels: list[Level]
    skipped: dict[str, str]
    capacity_per_second: float


async def upstream_capacity(base_url: str, connections: int = 200, seconds: float = 2.0) -> float:
    """Chat answers per second the upstream serves to a bare keep-alive socket client: the
    most any contender could get from it."""
    host, port = base_url.removeprefix("http://").split(":")
    body = json.dumps(CHAT_BODY).encode()
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body
    served = 0
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal served
        async with await anyio.connect_tcp(host, int(port)) as stream:
            pending = b""
            while time.perf_counter() < deadline:
                await stream.send(request)
                while True:
                    pending += await stream.receive()
                    end = pending.find(b"\r\n\r\n")
                    if end < 0:
                        continue
                    head = pending[:end].lower()
                    at = head.find(b"content-length:") + 15
                    length = int(head[at : head.find(b"\r\n", at)])
                    if len(pending) >= end + 4 + length:
                        pending = pending[end + 4 + length :]
                        break
                served += 1

    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for _ in range(connections):
            group.start_soon(client)
    return served / (time.perf_counter() - started)


async def run(
    rounds: int,
    responses: Mapping[int, int],
    with_aiohttp: bool,
    log: Callable[[str], None] = print,
    only: list[str] | None = None,
) -> Throughput:
    skipped: dict[str, str] = {}
    postgres_problem = await postgres_reachable(POSTGRES_URL)
    if postgres_problem is not None:
        skipped["loop (postgres)"] = (
            f"PostgreSQL not reachable at {POSTGRES_URL}: {postgres_problem}"
        )
    peer_problem = peer_available()
    if peer_problem is not None:
        skipped["peer (openai-agents)"] = peer_problem
    levels = []
    with upstream_process() as base_url, tempfile.TemporaryDirectory() as directory:
        capacity = await upstream_capacity(base_url)
        log(f"upstream capacity: {capacity:.0f} chat answers/s to a bare socket client")
        for concurrency, count in responses.items():
            log(f"concurrency {concurrency}, {count} responses per measurement")
            chosen = [
                c
                for c in contenders(
                    Path(directory),
                    POSTGRES_URL if postgres_problem is None else None,
                    with_aiohttp,
                )
                if c.name not in skipped and (not only or any(o in c.name for o in only))
            ]
            levels.append(await run_level(base_url, chosen, concurrency, count, rounds, log))
    return Throughput(levels, skipped, capacity)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--single", type=int, default=300, help="responses per measurement at 1")
    parser.add_argument("--many", type=int, default=2000, help="responses per measurement at 200")
    parser.add_argument("--aiohttp", action="store_true")
    parser.add_argument("--only", nargs="*", help="contenders whose name contains one of these")
    arguments = parser.parse_args()
    result = anyio.run(
        run,
        arguments.rounds,
        {1: arguments.single, 200: arguments.many},
        arguments.aiohttp,
        print,
        arguments.only,
    )
    for level in result.levels:
        print(f"\nconcurrency {level.concurrency}")
        for name in level.samples:
            median = level.median(name)
            assert median is not None
            cpu = max(s.upstream_cpu_share for s in level.samples[name])
            own = statistics.median(s.cpu_per_response for s in level.samples[name])
            print(
                f"  {name:<26} {median * 1e6:>9.0f} µs/response {own * 1e6:>9.0f} µs cpu"
                f"  upstream cpu ≤ {cpu:.0%}"
            )
