"""Store benchmark: store operations per step, and the time of a 50-step chain, per store.

Runs the real loop (``run_response_loop`` with ``ChatTransition``) over a scripted model
and an instant tool, so what is measured is the loop plus its store. Chains of different
lengths show that store operations per step do not grow with the chain (the loop lists a
scope's chain once per run, not once per iteration).

    python benchmarks/stores.py [--runs 5] [--postgres URL]

PostgreSQL is measured when it is reachable at ``--postgres`` (default:
``RESPONSELOOP_TEST_POSTGRES_URL`` or ``postgresql://postgres@127.0.0.1:5432/test``), in a
schema of its own that is dropped afterwards. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from responseloop import (
    ChatTransition,
    InMemoryStore,
    LoopConfig,
    ResponseRecord,
    UpstreamTarget,
    run_response_loop,
)
from responseloop.abc import (
    JSON,
    Complete,
    RecordedStep,
    ResponseStore,
    StepAdvancingStore,
    StepDescriptor,
    StepStartingStore,
)
from responseloop.exceptions import StoreError
from responseloop.stores.postgres import PostgresStore
from responseloop.stores.sqlite import SQLiteStore
from responseloop.testing import ChatReply, RecordingStore, RecordingToolExecutor, ScriptedChatModel

BODY: dict[str, Any] = {"model": "bench", "messages": [{"role": "user", "content": "go"}]}
# A client function tool: the two-step chain ends by handing its call back to the client.
CLIENT_TOOL = {"type": "function", "function": {"name": "ask_user", "parameters": {}}}
UPSTREAM = UpstreamTarget("http://upstream.invalid")
LENGTHS = (2, 10, 50)


def script(steps: int) -> tuple[dict[str, Any], list[ChatReply]]:
    """The request body and model replies giving a chain of exactly ``steps`` steps.

    Two steps: one model call asking for a server tool and a client tool (the response
    completes after the server tool, handing the client call back). An even count >= 4:
    the first call fans out to two tools, then one tool per call, then the final answer.
    """
    if steps == 2:
        reply = ChatReply.calls(("lookup", {"i": 0}, "call_0"), ("ask_user", {}, "call_1"))
        return {**BODY, "tools": [CLIENT_TOOL]}, [reply]
    if steps < 4 or steps % 2:
        raise ValueError("steps must be 2, or even and at least 4")
    rounds = (steps - 4) // 2
    replies = [ChatReply.calls(("lookup", {"i": 0}, "call_0a"), ("lookup", {"i": 1}, "call_0b"))]
    replies += [ChatReply.tool_call("lookup", {"i": i}, call_id=f"call_{i}") for i in range(rounds)]
    return BODY, [*replies, ChatReply.text("done")]


class CountingStore(RecordingStore):
    """A RecordingStore that passes on (and counts) ``record_started_steps`` when its store
    has it, so the loop makes the calls it makes on that store."""

    async def record_started_steps(
        self,
        response_id: str,
        scope: str | None,
        prev_step_id: str | None,
        steps: Sequence[StepDescriptor],
        *,
        fence: str | None = None,
    ) -> Sequence[RecordedStep]:
        if not isinstance(self.inner, StepStartingStore):
            raise TypeError(f"{type(self.inner).__name__} does not start steps")
        self.counts["record_started_steps"] += 1
        return await self.inner.record_started_steps(
            response_id, scope, prev_step_id, steps, fence=fence
        )


class AdvancingCountingStore(CountingStore):
    """A CountingStore that passes on (and counts) ``complete_and_start_steps`` too, for a
    store that has it."""

    async def complete_and_start_steps(
        self,
        response_id: str,
        scope: str | None,
        completed_step_id: str,
        payload: JSON,
        steps: Sequence[StepDescriptor],
        *,
        fence: str | None = None,
    ) -> Sequence[RecordedStep]:
        if not isinstance(self.inner, StepAdvancingStore):
            raise TypeError(f"{type(self.inner).__name__} does not advance steps")
        self.counts["complete_and_start_steps"] += 1
        return await self.inner.complete_and_start_steps(
            response_id, scope, completed_step_id, payload, steps, fence=fence
        )


def counting(store: ResponseStore) -> RecordingStore:
    if isinstance(store, StepAdvancingStore):
        return AdvancingCountingStore(store)
    return CountingStore(store) if isinstance(store, StepStartingStore) else RecordingStore(store)


async def run_chain(
    store: ResponseStore, steps: int, *, count: bool = True
) -> tuple[float, float, RecordingStore | None]:
    """Wall and CPU seconds of one response of ``steps`` steps (and the store calls it made,
    counted, when ``count``)."""
    body, replies = script(steps)
    recording = counting(store) if count else None
    target = recording if recording is not None else store
    response_id = f"resp_{uuid.uuid4().hex}"
    await target.create_response(ResponseRecord(response_id, body))
    tools = RecordingToolExecutor()
    tools.add("lookup", lambda arguments: {"found": arguments})
    if recording is not None:
        recording.reset()
    started, cpu_started = time.perf_counter(), time.process_time()
    outcome = await run_response_loop(
        response_id,
        store=target,
        http_client=ScriptedChatModel(replies),
        upstream=UPSTREAM,
        transition=ChatTransition(body),
        tools=tools,
        config=LoopConfig(max_iterations=steps),
    )
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    assert isinstance(outcome, Complete), outcome
    chain = await store.list_chain(response_id, None)
    assert len(chain) == steps, len(chain)
    return elapsed, cpu, recording


StoreFactory = Callable[[], contextlib.AbstractAsyncContextManager[ResponseStore]]


def factories(directory: Path, postgres_url: str | None) -> dict[str, StoreFactory]:
    @contextlib.asynccontextmanager
    async def memory() -> AsyncIterator[ResponseStore]:
        yield InMemoryStore()

    def sqlite(synchronous: Any) -> StoreFactory:
        @contextlib.asynccontextmanager
        async def open_sqlite() -> AsyncIterator[ResponseStore]:
            path = directory / f"bench-{uuid.uuid4().hex}.db"
            async with SQLiteStore(path, synchronous=synchronous) as store:
                yield store

        return open_sqlite

    found: dict[str, StoreFactory] = {
        "InMemoryStore": memory,
        "SQLiteStore (FULL)": sqlite("FULL"),
        "SQLiteStore (NORMAL)": sqlite("NORMAL"),
    }
    if postgres_url is not None:
        schema = f"rl_bench_{uuid.uuid4().hex[:12]}"

        @contextlib.asynccontextmanager
        async def postgres() -> AsyncIterator[ResponseStore]:
            async with PostgresStore.from_url(postgres_url, schema=schema) as store:
                try:
                    yield store
                finally:
                    import psycopg

                    with psycopg.connect(postgres_url, autocommit=True) as conn:
                        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

        found["PostgresStore"] = postgres
    return found


async def postgres_reachable(url: str) -> bool:
    try:
        async with PostgresStore.from_url(url, schema="rl_bench_probe", max_size=1, timeout=3):
            pass
    except (StoreError, ImportError):
        return False
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute('DROP SCHEMA IF EXISTS "rl_bench_probe" CASCADE')
    return True


@dataclass
class StoreRow:
    """One store's store operations at each chain length, and its 50-step chain time."""

    store: str
    ops: dict[int, dict[str, int]]  # chain length -> store method -> calls
    chain_50_seconds: float
    chain_50_cpu_seconds: float  # this process's CPU (all threads: SQLite's run in one)

    @property
    def cpu_per_step_us(self) -> float:
        return self.chain_50_cpu_seconds / 50 * 1e6

    def per_step(self, steps: int) -> float:
        return sum(self.ops[steps].values()) / steps

    @property
    def marginal(self) -> float:
        """Store operations each added step costs (from 10 to 50 steps)."""
        return (sum(self.ops[50].values()) - sum(self.ops[10].values())) / 40


async def measure(runs: int, postgres_url: str) -> tuple[list[StoreRow], bool]:
    """Every store's rows, and whether PostgreSQL was reachable."""
    url = postgres_url if await postgres_reachable(postgres_url) else None
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for name, open_store in factories(Path(directory), url).items():
            async with open_store() as store:
                await run_chain(store, 10)  # warm up: schema, connections, code paths
                ops = {}
                for steps in LENGTHS:
                    _, _, recording = await run_chain(store, steps)
                    assert recording is not None
                    ops[steps] = dict(recording.counts)
                timed = [await run_chain(store, 50, count=False) for _ in range(runs)]
            rows.append(
                StoreRow(
                    name,
                    ops,
                    statistics.median(wall for wall, _, _ in timed),
                    statistics.median(cpu for _, cpu, _ in timed),
                )
            )
    return rows, url is not None


def table(rows: list[StoreRow]) -> list[tuple[str, ...]]:
    """Header and rows, ready to print or to write as Markdown."""
    header = (
        "store",
        *(f"ops/step at {n} steps" for n in LENGTHS),
        "ops per added step",
        "list_chain per run",
        "50-step chain ms (wall)",
        "CPU µs per step",
        "x InMemoryStore CPU per step",
    )
    memory = next((row for row in rows if row.store == "InMemoryStore"), None)
    body = [
        (
            row.store,
            *(f"{row.per_step(n):.2f}" for n in LENGTHS),
            f"{row.marginal:.2f}",
            " / ".join(str(row.ops[n].get("list_chain", 0)) for n in LENGTHS),
            f"{row.chain_50_seconds * 1000:.1f}",
            f"{row.cpu_per_step_us:.0f}",
            f"{row.cpu_per_step_us / memory.cpu_per_step_us:.2f}" if memory else "n/a",
        )
        for row in rows
    ]
    return [header, *body]


NOTE = (
    "Store calls the loop made, counted: a model call is started in one call and completed"
    " in the call that starts the steps after it, a whole fan-out (`complete_and_start_steps`,"
    " one transaction); a tool call is started with the others of its decision and its"
    " result stored alone as it returns (`update_step`); plus three per run (claim the"
    " lease, list the chain once, release the lease), so the cost of an added step stays"
    " the same whatever the chain's length."
    " PostgreSQL makes one round trip per store call (each is one statement). CPU is the"
    " whole 50-step response (loop and store, all threads) over 50."
)


async def main(runs: int, postgres_url: str) -> None:
    rows, reachable = await measure(runs, postgres_url)
    found = table(rows)
    widths = [max(len(r[i]) for r in found) for i in range(len(found[0]))]
    for row in [found[0], tuple("-" * w for w in widths), *found[1:]]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    if not reachable:
        print(f"\nPostgreSQL not reachable at {postgres_url}: PostgresStore not measured.")
    print(f"\nMedian of {runs} runs, scripted model, instant tool. {NOTE}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "RESPONSELOOP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    arguments = parser.parse_args()
    anyio.run(main, arguments.runs, arguments.postgres)
