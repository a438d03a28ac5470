"""Loop overhead, in process: run_response_loop against the same two model calls and one
tool call made directly, with an in-memory model so only the loop's own work differs.

Reported as medians over several rounds and as a ratio measured in the same run; part of
``benchmarks/run.py`` (the loopback-HTTP contenders are in ``throughput.py``).

    python benchmarks/overhead.py [--responses 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from responseloop import (
    ChatTransition,
    InMemoryStore,
    LeaseKeeper,
    ResponseRecord,
    UpstreamTarget,
    run_response_loop,
)
from responseloop.abc import HttpRequest, HttpResponse
from responseloop.testing import RecordingToolExecutor

TOOL_REPLY = HttpResponse.from_json(
    200,
    {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'},
                        }
                    ],
                },
            }
        ],
    },
)
TEXT_REPLY = HttpResponse.from_json(
    200,
    {
        "id": "c2",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "3"}}
        ],
    },
)
REQUEST = {"model": "m", "messages": [{"role": "user", "content": "1+2?"}]}
UPSTREAM = UpstreamTarget("http://bench.invalid")


class InstantModel:
    """Answers a tool call first, then text, for every conversation."""

    async def execute(self, request: HttpRequest) -> HttpResponse:
        messages = request.json["messages"]
        return TEXT_REPLY if messages[-1]["role"] == "tool" else TOOL_REPLY

    async def stream(self, request: HttpRequest, on_event: Any) -> HttpResponse:
        raise NotImplementedError("the benchmark does not stream")


def add(arguments: Any) -> Any:
    return {"sum": arguments["a"] + arguments["b"]}


async def direct(model: InstantModel, index: int) -> None:
    first = await model.execute(HttpRequest(UPSTREAM.url, REQUEST))
    call = first.json()["choices"][0]["message"]["tool_calls"][0]
    result = add(json.loads(call["function"]["arguments"]))
    follow_up = {
        **REQUEST,
        "messages": [
            *REQUEST["messages"],
            first.json()["choices"][0]["message"],
            {"role": "tool", "tool_call_id": call["id"], "content": json.dumps(result)},
        ],
    }
    await model.execute(HttpRequest(UPSTREAM.url, follow_up))


def looped(
    store: InMemoryStore, tools: RecordingToolExecutor, keeper: LeaseKeeper | None = None
) -> Callable[..., Awaitable[None]]:
    async def run(model: InstantModel, index: int) -> None:
        response_id = f"resp_{index}_{time.perf_counter_ns()}"
        await store.create_response(ResponseRecord(id=response_id, request=REQUEST))
        await run_response_loop(
            response_id,
            store=store,
            http_client=model,
            upstream=UPSTREAM,
            transition=ChatTransition(REQUEST),
            tools=tools,
            lease_keeper=keeper,
        )

    return run


async def measure(
    contender: Callable[[InstantModel, int], Awaitable[None]], responses: int, concurrency: int
) -> tuple[float, float]:
    """Wall and CPU seconds per response."""
    model = InstantModel()
    limiter = anyio.Semaphore(concurrency)

    async def one(index: int) -> None:
        async with limiter:
            await contender(model, index)

    started, cpu_started = time.perf_counter(), time.process_time()
    async with anyio.create_task_group() as group:
        for index in range(responses):
            group.start_soon(one, index)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return wall / responses, cpu / responses


async def main(responses: int, rounds: int) -> None:
    tools = RecordingToolExecutor()
    tools.add("add", add)
    print(
        f"{'concurrency':>11} {'direct µs':>10} {'loop µs':>9} {'loop/direct':>11}"
        f" {'direct CPU µs':>13} {'loop CPU µs':>11}"
    )
    for concurrency in (1, 200):
        direct_times: list[tuple[float, float]] = []
        loop_times: list[tuple[float, float]] = []
        for _ in range(rounds):
            tools.calls.clear()
            direct_times.append(await measure(direct, responses, concurrency))
            async with LeaseKeeper() as keeper:  # one per worker, as in production
                contender = looped(InMemoryStore(), tools, keeper)
                loop_times.append(await measure(contender, responses, concurrency))
        d = statistics.median(wall for wall, _ in direct_times) * 1e6
        lp = statistics.median(wall for wall, _ in loop_times) * 1e6
        d_cpu = statistics.median(cpu for _, cpu in direct_times) * 1e6
        lp_cpu = statistics.median(cpu for _, cpu in loop_times) * 1e6
        print(
            f"{concurrency:>11} {d:>10.1f} {lp:>9.1f} {lp / d:>11.1f}"
            f" {d_cpu:>13.1f} {lp_cpu:>11.1f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--responses", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    anyio.run(main, args.responses, args.rounds)
