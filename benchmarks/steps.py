"""The step-scaling series: the loop's own CPU per response as the chain grows.

A response of ``n`` tool rounds is ``n`` x (model call → tool) and a final model call,
against an in-process model that answers at once (each round's call with its own id) and
the in-memory store, one response at a time, so the CPU the process uses is the loop's
own work (transition, store, tool dispatch, bookkeeping) and nothing else. A loop whose
cost per step is constant costs ``n / 5`` times the 5-round response at ``n`` rounds; the
target is at most 1.2 x that at 50 rounds.

Rounds interleave the series and the median is reported, CPU (``time.process_time``)
beside wall.

    python benchmarks/steps.py [--responses 40] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import anyio

from responseloop import (
    ChatTransition,
    InMemoryStore,
    LeaseKeeper,
    LoopConfig,
    ResponseRecord,
    UpstreamTarget,
    run_response_loop,
)
from responseloop.abc import Complete, HttpRequest, HttpResponse
from responseloop.testing import RecordingToolExecutor

SERIES = (1, 5, 20, 50)
REQUEST: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "1+2?"}]}
UPSTREAM = UpstreamTarget("http://bench.invalid")
CONFIG = LoopConfig(max_iterations=max(SERIES) + 1)
TEXT_REPLY = HttpResponse.from_json(
    200,
    {
        "id": "c-final",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "3"}}
        ],
    },
)


def tool_reply(round_index: int) -> HttpResponse:
    return HttpResponse.from_json(
        200,
        {
            "id": f"c{round_index}",
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
                                "id": f"call_{round_index}",
                                "type": "function",
                                "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'},
                            }
                        ],
                    },
                }
            ],
        },
    )


TOOL_REPLIES = [tool_reply(index) for index in range(max(SERIES))]


class RoundsModel:
    """Asks for the tool until the conversation holds ``rounds`` tool results."""

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds

    async def execute(self, request: HttpRequest) -> HttpResponse:
        done = sum(1 for message in request.json["messages"] if message["role"] == "tool")
        return TEXT_REPLY if done >= self.rounds else TOOL_REPLIES[done]

    async def stream(self, request: HttpRequest, on_event: Any) -> HttpResponse:
        raise NotImplementedError("the benchmark does not stream")


def add(arguments: Any) -> Any:
    return {"sum": arguments["a"] + arguments["b"]}


@dataclass
class Series:
    rounds: int
    cpu: list[float] = field(default_factory=list)  # s per response, one per measurement
    wall: list[float] = field(default_factory=list)

    def cpu_us(self) -> float:
        return statistics.median(self.cpu) * 1e6

    def wall_us(self) -> float:
        return statistics.median(self.wall) * 1e6


async def measure(rounds: int, responses: int, tools: RecordingToolExecutor) -> tuple[float, float]:
    model, store = RoundsModel(rounds), InMemoryStore()
    transition = ChatTransition(REQUEST)
    keeper = LeaseKeeper()
    await keeper.__aenter__()  # one per worker, as in production
    cpu_started, started = time.process_time(), time.perf_counter()
    for _ in range(responses):
        response_id = f"resp_{uuid.uuid4().hex}"
        await store.create_response(ResponseRecord(response_id, REQUEST))
        outcome = await run_response_loop(
            response_id,
            store=store,
            http_client=model,
            upstream=UPSTREAM,
            transition=transition,
            tools=tools,
            config=CONFIG,
            lease_keeper=keeper,
        )
        assert isinstance(outcome, Complete), outcome
    cpu = (time.process_time() - cpu_started) / responses
    wall = (time.perf_counter() - started) / responses
    await keeper.__aexit__(None, None, None)
    return cpu, wall


@dataclass
class Result:
    series: list[Series]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]

    def by_rounds(self, rounds: int) -> Series:
        return next(item for item in self.series if item.rounds == rounds)

    def scaling(self, rounds: int = 50, base: int = 5) -> float:
        """The ``rounds``-round response's CPU over ``rounds / base`` x the ``base``-round
        one's: 1.0 is a constant cost per round."""
        return self.by_rounds(rounds).cpu_us() / (rounds / base * self.by_rounds(base).cpu_us())


async def run(responses: int, rounds: int, log: Any = print) -> Result:
    load_before = os.getloadavg()
    tools = RecordingToolExecutor()
    tools.add("add", add)
    found = [Series(n) for n in SERIES]
    for item in found:  # warm-up
        await measure(item.rounds, 3, tools)
    for index in range(rounds):
        for item in found if index % 2 == 0 else found[::-1]:
            tools.calls.clear()
            # Fewer responses for longer chains, so each measurement takes similar time.
            count = max(3, responses * 5 // max(item.rounds, 5))
            cpu, wall = await measure(item.rounds, count, tools)
            item.cpu.append(cpu)
            item.wall.append(wall)
        log(f"  steps round {index + 1}/{rounds} done")
    return Result(found, load_before, os.getloadavg())


def table(result: Result) -> list[tuple[str, ...]]:
    base = result.by_rounds(5).cpu_us() / 5
    rows: list[tuple[str, ...]] = [
        (
            "tool rounds",
            "CPU µs/response",
            "wall µs/response",
            "CPU µs/round",
            "x constant cost (5-round rate)",
        )
    ]
    for item in result.series:
        rows.append(
            (
                str(item.rounds),
                f"{item.cpu_us():.0f}",
                f"{item.wall_us():.0f}",
                f"{item.cpu_us() / item.rounds:.0f}",
                f"{item.cpu_us() / (item.rounds * base):.2f}",
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--responses", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    result = anyio.run(run, arguments.responses, arguments.rounds)
    for line in table(result):
        print(" | ".join(f"{cell:>16}" for cell in line))
    print(f"50 rounds / (10 x 5 rounds), CPU: {result.scaling():.2f} (target ≤ 1.20)")
    print(f"load average before / after: {result.load_before} → {result.load_after}")


if __name__ == "__main__":
    main()
