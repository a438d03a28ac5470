"""A worker process for the resume tests: runs (or resumes) one response, then prints how
it ended and its chain as one JSON line.

The model is a loopback HTTP upstream that the test runs; the one tool, ``slow_lookup``,
logs each invocation to a file, marks that it started, and waits for a release file, so
the test can SIGKILL this process while the tool runs.

    python -m tests.loop.resume_worker --sqlite PATH | --postgres URL SCHEMA
        --response-id ID --upstream URL --state-dir DIR --mode start|resume
        [--refire-tools] [--refire-model] [--backend asyncio|trio] [--lease SECONDS]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx2

from responseloop import (
    ChatTransition,
    LoopConfig,
    RequestContext,
    ResponseRecord,
    UpstreamTarget,
    run_response_loop,
)
from responseloop.abc import (
    JSON,
    Complete,
    HttpRequest,
    HttpResponse,
    OnServerSentEvent,
    ResponseStore,
    ToolSchema,
)
from responseloop.exceptions import (
    ResponseAlreadyRunning,
    ResponseExists,
    UpstreamConnectionError,
    UpstreamStatusError,
)
from responseloop.stores.postgres import PostgresStore
from responseloop.stores.sqlite import SQLiteStore

REQUEST: dict[str, Any] = {
    "model": "resume-model",
    "messages": [{"role": "user", "content": "What is the answer?"}],
}


class LoopbackClient:
    """The smallest HttpClient over httpx2: what these tests need, no retries."""

    def __init__(self, client: httpx2.AsyncClient) -> None:
        self._client = client

    async def execute(self, request: HttpRequest) -> HttpResponse:
        try:
            reply = await self._client.request(
                request.method, request.url, json=request.json, headers=dict(request.headers)
            )
        except httpx2.HTTPError as exc:
            raise UpstreamConnectionError(str(exc)) from exc
        if not reply.is_success:
            raise UpstreamStatusError(reply.status_code, reply.text)
        return HttpResponse(reply.status_code, reply.content, dict(reply.headers))

    async def stream(self, request: HttpRequest, on_event: OnServerSentEvent) -> HttpResponse:
        raise AssertionError("these tests make no streamed model calls")


class SlowLookup:
    """The tool: logs the call, says it started, waits for the release file."""

    def __init__(self, state: Path, idempotent: bool) -> None:
        self._state = state
        self._idempotent = idempotent

    async def tools(self, ctx: RequestContext) -> Sequence[ToolSchema]:
        return [
            ToolSchema("slow_lookup", "Looks the answer up, slowly.", idempotent=self._idempotent)
        ]

    async def execute(self, name: str, call_id: str, arguments: JSON, ctx: RequestContext) -> JSON:
        with (self._state / "tool_invocations.log").open("a") as log:
            log.write(f"{call_id}\n")
            log.flush()
            os.fsync(log.fileno())
        (self._state / "tool_started").touch()
        # The release comes from another process, as a file: no in-process event can carry it.
        while not (self._state / "tool_release").exists():  # noqa: ASYNC110
            await anyio.sleep(0.02)
        return {"answer": 42, "arguments": arguments}


@contextlib.asynccontextmanager
async def open_store(args: argparse.Namespace) -> AsyncIterator[ResponseStore]:
    if args.sqlite:
        async with SQLiteStore(args.sqlite) as sqlite:
            yield sqlite
    else:
        url, schema = args.postgres
        async with PostgresStore.from_url(url, schema=schema, max_size=2) as postgres:
            yield postgres


async def main(args: argparse.Namespace) -> dict[str, Any]:
    config = LoopConfig(
        lease_seconds=args.lease,
        refire_idempotent_tools=args.refire_tools,
        refire_model_calls=args.refire_model,
    )
    state = Path(args.state_dir)
    async with open_store(args) as store, httpx2.AsyncClient(timeout=30) as client:
        if args.mode == "start":
            with contextlib.suppress(ResponseExists):
                await store.create_response(ResponseRecord(args.response_id, REQUEST))
        # A killed worker's lease outlives it: wait for it to expire, as a real queue would.
        with anyio.fail_after(60):
            while True:
                try:
                    outcome = await run_response_loop(
                        args.response_id,
                        store=store,
                        http_client=LoopbackClient(client),
                        upstream=UpstreamTarget(args.upstream),
                        transition=ChatTransition(REQUEST),
                        tools=SlowLookup(state, idempotent=args.refire_tools),
                        config=config,
                    )
                    break
                except ResponseAlreadyRunning:
                    await anyio.sleep(0.1)
        chain = await store.list_chain(args.response_id, None)
    return {
        "outcome": "complete" if isinstance(outcome, Complete) else "fail",
        "payload": outcome.payload if isinstance(outcome, Complete) else dict(outcome.error),
        "chain": [
            {
                "kind": step.kind.value,
                "state": step.state.value,
                "request": dict(step.request_payload),
                "error": dict(step.error) if step.error is not None else None,
            }
            for step in chain
        ],
    }


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--sqlite")
    where.add_argument("--postgres", nargs=2, metavar=("URL", "SCHEMA"))
    parser.add_argument("--response-id", required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--mode", choices=["start", "resume"], required=True)
    parser.add_argument("--refire-tools", action="store_true")
    parser.add_argument("--refire-model", action="store_true")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--lease", type=float, default=1.0)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse(sys.argv[1:])
    result = anyio.run(main, arguments, backend=arguments.backend)
    print(json.dumps(result))
