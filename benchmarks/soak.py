"""Soak: thousands of responses at high concurrency with random faults injected everywhere.

A chat-completions upstream runs in its own process (the h11 loopback server of the test
suite) and misbehaves at random: 500s, 429s with ``Retry-After``, connections cut
mid-body, invalid JSON, an empty ``choices``, calls that hang past the step deadline. The
server-side tool raises, hangs or returns NaN at random; the store fails a write at random
(the worker then resumes the response on the healthy store, as a host's queue would
retry it); some responses are cancelled while they run. Half the responses stream.

Afterwards every response must be terminal in the store with no step in flight, none may
be lost, and the process's RSS, sampled after each batch, must stay flat.

    python benchmarks/soak.py [--responses 5000] [--concurrency 200] [--seed 1]

Not a test (it is not run by CI); it exits non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import logging
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the loopback upstream of the test suite

from responseloop import (  # noqa: E402
    HttpxClient,
    InMemoryStore,
    LoopConfig,
    RequestContext,
    ResponsesService,
    RetryPolicy,
    StaticToolResolver,
    UpstreamTarget,
)
from responseloop.abc import (  # noqa: E402
    JSON,
    RecordedStep,
    ResponseStore,
    ResponseUpdate,
    StepDescriptor,
    StepState,
    StepUpdate,
    ToolSchema,
)
from responseloop.exceptions import StoreError  # noqa: E402

STEP_TIMEOUT = 1.0
USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


# --- the upstream, in its own process -------------------------------------------------


def serve(seed: int) -> None:
    """Run the faulty upstream; print its port, then serve until stdin closes."""
    from tests.loopback_upstream import Received, Reply, running_upstream

    from responseloop.testing import ChatReply

    rng = random.Random(seed)

    def answer(received: Received) -> Reply:
        body = received.json()
        roll = rng.random()
        if roll < 0.04:
            return Reply.text(rng.choice([500, 502, 503]), "transient")
        if roll < 0.06:
            return Reply.text(429, "slow down", [("retry-after", "0")])
        if roll < 0.07:
            return Reply(200, (("content-type", "application/json"),), (b'{"id": "c", "cho',),
                         cut=True)  # fmt: skip
        if roll < 0.08:
            return Reply(200, (("content-type", "application/json"),), (b"{not json",))
        if roll < 0.09:
            return Reply.json({"id": "c", "object": "chat.completion", "choices": []})
        if roll < 0.10:
            return Reply(hang=True)
        if any(m.get("role") == "tool" for m in body["messages"]):
            return Reply.chat(ChatReply.text("Done."), received, 1)
        return Reply.chat(ChatReply.tool_call("lookup", {"q": "x"}, call_id="call_1"), received, 1)

    async def main() -> None:
        async with running_upstream() as upstream:
            upstream.responder = answer
            print(upstream.url, flush=True)
            await anyio.to_thread.run_sync(sys.stdin.read)

    anyio.run(main)


# --- faults on the loop's side --------------------------------------------------------


class FlakyStore:
    """Fails a fraction of the loop's writes (before they happen) with a StoreError."""

    def __init__(self, inner: ResponseStore, rng: random.Random, rate: float) -> None:
        self.inner = inner
        self.rng = rng
        self.rate = rate
        self.failures = 0

    def _maybe_fail(self, method: str) -> None:
        if self.rng.random() < self.rate:
            self.failures += 1
            raise StoreError(f"injected failure of {method}")

    async def create_response(self, record: Any) -> None:
        await self.inner.create_response(record)

    async def get_response(self, response_id: str) -> Any:
        return await self.inner.get_response(response_id)

    async def update_response(
        self, response_id: str, update: ResponseUpdate, *, fence: str | None = None
    ) -> None:
        self._maybe_fail("update_response")
        await self.inner.update_response(response_id, update, fence=fence)

    async def delete_response(self, response_id: str) -> None:
        await self.inner.delete_response(response_id)

    async def claim_response(self, response_id: str, claimant: str, lease_seconds: float) -> bool:
        return await self.inner.claim_response(response_id, claimant, lease_seconds)

    async def release_response(self, response_id: str, claimant: str) -> None:
        await self.inner.release_response(response_id, claimant)

    async def expired_responses(self, limit: int, *, unclaimed_grace: float) -> Any:
        return await self.inner.expired_responses(limit, unclaimed_grace=unclaimed_grace)

    async def request_cancel(self, response_id: str) -> None:
        await self.inner.request_cancel(response_id)

    async def cancels_requested(self, response_ids: Any) -> Any:
        return await self.inner.cancels_requested(response_ids)

    async def append_events(
        self, response_id: str, first_sequence: int, events: Any, *, fence: str | None = None
    ) -> None:
        await self.inner.append_events(response_id, first_sequence, events, fence=fence)

    async def list_events(self, response_id: str, after: int, limit: int) -> Any:
        return await self.inner.list_events(response_id, after, limit)

    async def record_step(
        self,
        response_id: str,
        scope: str | None,
        prev_step_id: str | None,
        step: StepDescriptor,
        *,
        fence: str | None = None,
    ) -> RecordedStep:
        self._maybe_fail("record_step")
        return await self.inner.record_step(response_id, scope, prev_step_id, step, fence=fence)

    async def update_step(
        self, response_id: str, step_id: str, update: StepUpdate, *, fence: str | None = None
    ) -> None:
        # Starting and completing steps fail; failing and cancelling them (the clean-up
        # after a failure) do not.
        if update.state in (StepState.PROCESSING, StepState.COMPLETED):
            self._maybe_fail(f"update_step:{update.state.value}")
        await self.inner.update_step(response_id, step_id, update, fence=fence)

    async def list_chain(self, response_id: str, scope: str | None) -> Any:
        self._maybe_fail("list_chain")
        return await self.inner.list_chain(response_id, scope)


class FlakyTools:
    """The ``lookup`` tool, which raises, hangs or returns NaN now and then."""

    schema = ToolSchema("lookup", "Look a word up.", idempotent=True)

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.calls = 0

    async def tools(self, ctx: RequestContext) -> list[ToolSchema]:
        return [self.schema]

    async def execute(self, name: str, call_id: str, arguments: JSON, ctx: RequestContext) -> JSON:
        self.calls += 1
        roll = self.rng.random()
        if roll < 0.03:
            raise RuntimeError("the tool broke")
        if roll < 0.04:
            await anyio.sleep_forever()  # past the step deadline
        if roll < 0.05:
            return {"value": float("nan")}
        return {"found": arguments}


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def soak(
    url: str,
    responses: int,
    concurrency: int,
    seed: int,
    cancel_rate: float = 0.02,
    store_fault_rate: float = 0.003,
) -> int:
    rng = random.Random(seed)
    store = InMemoryStore()
    flaky = FlakyStore(store, rng, rate=store_fault_rate)
    config = LoopConfig(
        step_timeout=STEP_TIMEOUT, refire_model_calls=True, refire_idempotent_tools=True
    )
    retry = RetryPolicy(attempts=3, initial_backoff=0.01, max_backoff=0.05, jitter=0.01)
    tools = FlakyTools(rng)
    outcomes: collections.Counter[str] = collections.Counter()
    resumes = 0
    cancels = 0
    samples: list[tuple[int, int]] = []
    wave_size = max(1, responses // 10)
    attempts: dict[str, list[str]] = {}
    problems: list[str] = []
    statuses: collections.Counter[str] = collections.Counter()
    checked = 0
    steps_checked = 0

    async def check_and_forget(ids: list[str]) -> None:
        """Every response of the wave is stored terminal with no step in flight."""
        nonlocal checked, steps_checked
        for response_id in ids:
            record = await store.get_response(response_id)  # raises if it was lost
            statuses[record.status.value] += 1
            if not record.status.is_terminal:
                problems.append(f"{response_id} is {record.status.value}")
            scopes: list[str | None] = [None]
            while scopes:
                for step in await store.list_chain(response_id, scopes.pop()):
                    steps_checked += 1
                    if step.state in (StepState.PENDING, StepState.PROCESSING):
                        chain = await store.list_chain(response_id, None)
                        problems.append(
                            f"{response_id} ({record.status.value}) left step {step.id}"
                            f" {step.state.value}; chain: "
                            + ", ".join(f"{s.kind.value}:{s.state.value}" for s in chain)
                            + f"; attempts: {attempts.get(response_id)}"
                        )
                    scopes.append(step.id)
            checked += 1
            await store.delete_response(response_id)
            attempts.pop(response_id, None)

    gc.collect()
    samples.append((0, rss_kib()))

    async with HttpxClient(retry=retry) as http:

        def service(on: ResponseStore) -> ResponsesService:
            return ResponsesService(
                store=on,
                http_client=http,
                upstream=UpstreamTarget(url + "/v1", "/chat/completions", "sk-soak"),
                resolver=StaticToolResolver(tools),
                config=config,
            )

        faulty, healthy = service(flaky), service(store)

        async def run_maybe_cancelled(runner: ResponsesService, prepared: Any) -> Any:
            """Run the response; now and then, cancel it while it runs."""
            nonlocal cancels
            results: list[Any] = []
            errors: list[StoreError] = []

            async def cancel_soon() -> None:
                await anyio.sleep(rng.random() * 0.05)
                history = attempts.setdefault(prepared.response_id, [])
                try:
                    running = prepared.response_id in runner.running
                    await runner.cancel(prepared.response_id)
                    history.append("cancelled (running)" if running else "cancelled (not running)")
                except StoreError:
                    history.append("the cancel failed")  # the response runs on

            async with anyio.create_task_group() as group:
                if rng.random() < cancel_rate:
                    cancels += 1
                    group.start_soon(cancel_soon)
                try:
                    results.append(await runner.run(prepared))
                except StoreError as exc:
                    errors.append(exc)
                group.cancel_scope.cancel()
            if errors:
                raise errors[0]
            return results[0]

        async def one(index: int) -> None:
            nonlocal resumes
            response_id = f"resp_soak_{index:06d}"
            body = {"model": "m", "input": f"Look up #{index}", "stream": index % 2 == 0}
            runner = faulty
            for _ in range(10):
                history = attempts.setdefault(response_id, [])
                try:
                    prepared = await runner.prepare(body, api_key=None, response_id=response_id)
                    history.append(
                        f"run on {'faulty' if runner is faulty else 'healthy'}"
                        f" (finished: {prepared.finished is not None})"
                    )
                    result = await run_maybe_cancelled(runner, prepared)
                    history.append(f"ended {result.status.value}")
                except StoreError as exc:
                    history.append(str(exc))
                    resumes += 1
                    runner = healthy  # the host's queue retries it: the loop resumes
                    continue
                outcomes[result.status.value] += 1
                return
            outcomes["gave up"] += 1

        async def worker(wave: range, cursor: list[int]) -> None:
            while cursor[0] < wave.stop:
                index = cursor[0]
                cursor[0] += 1
                await one(index)

        started = time.perf_counter()
        for first in range(0, responses, wave_size):
            wave = range(first, min(first + wave_size, responses))
            cursor = [wave.start]
            async with anyio.create_task_group() as group:
                for _ in range(min(concurrency, len(wave))):
                    group.start_soon(worker, wave, cursor)
            # Check the wave in the store, then delete it: what stays in memory afterwards
            # is the loop's own, not the stored responses'.
            await check_and_forget([f"resp_soak_{i:06d}" for i in wave])
            gc.collect()
            samples.append((wave.stop, rss_kib()))
        elapsed = time.perf_counter() - started

    if checked != responses:
        problems.append(f"{responses - checked} responses lost")
    if outcomes["gave up"]:
        problems.append(f"{outcomes['gave up']} responses never finished")
    growth = samples[-1][1] - samples[1][1] if len(samples) > 2 else 0
    report = {
        "responses": responses,
        "concurrency": concurrency,
        "seconds": round(elapsed, 1),
        "responses_per_second": round(responses / elapsed),
        "stored_statuses": dict(statuses),
        "run_outcomes": dict(outcomes),
        "steps_checked": steps_checked,
        "store_failures_injected": flaky.failures,
        "resumes_after_store_failure": resumes,
        "cancels_requested": cancels,
        "tool_calls": tools.calls,
        "rss_kib_after_each_wave": samples,
        "rss_growth_kib_from_first_wave_to_last": growth,
        "problems": problems,
    }
    print(json.dumps(report, indent=2))
    return 1 if problems else 0


def main() -> None:
    # Each injected fault logs a warning; thousands of them would drown the report.
    logging.basicConfig(level=logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cancel-rate", type=float, default=0.02)
    parser.add_argument("--store-fault-rate", type=float, default=0.003)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.seed)
        return
    upstream = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--seed", str(args.seed)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert upstream.stdout is not None
        url = upstream.stdout.readline().strip()
        code = anyio.run(
            soak,
            url,
            args.responses,
            args.concurrency,
            args.seed,
            args.cancel_rate,
            args.store_fault_rate,
        )
    finally:
        assert upstream.stdin is not None
        upstream.stdin.close()
        upstream.wait(timeout=10)
    sys.exit(code)


if __name__ == "__main__":
    main()
