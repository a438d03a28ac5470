"""Responses run by arq workers (Redis), with a durable store.

The web side stores the response and enqueues its id (:func:`submit`, which answers the
``in_progress`` Response at once); a worker runs the loop with
:class:`~responseloop.ResponseLoopHttpClient` and finalises the stored response;
the client polls ``GET /v1/responses/{id}`` (any process with the store can answer it).

A worker killed mid-response is survived: arq leaves the job queued until the dead
worker's claim on it runs out (``job_timeout`` + 10 s), then another worker takes it and
resumes the stored chain; while the dead worker's lease on the response lasts the run
answers 409, which the job retries.

Run a worker from the repository root (configuration comes from the environment)::

    RESPONSELOOP_UPSTREAM=http://localhost:8000/v1 RESPONSELOOP_SQLITE=responses.db \\
        arq examples.arq_worker.WorkerSettings
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, ClassVar

from arq import Retry, create_pool
from arq.connections import RedisSettings
from arq.worker import func

from responseloop import (
    FunctionTools,
    HttpxClient,
    LoopConfig,
    LoopRequest,
    RequestContext,
    ResponseLoopHttpClient,
    ResponsesService,
    StaticToolResolver,
    UpstreamTarget,
)
from responseloop.stores.sqlite import SQLiteStore

REDIS = RedisSettings.from_dsn(os.environ.get("REDIS_DSN", "redis://127.0.0.1:6379/0"))
QUEUE = os.environ.get("RESPONSELOOP_QUEUE", "responses")
UPSTREAM = os.environ.get("RESPONSELOOP_UPSTREAM", "http://127.0.0.1:8000/v1")
DATABASE = os.environ.get("RESPONSELOOP_SQLITE", "responses.db")
# How long a dead worker's claim on a response lasts; well above any pause of a live one.
LEASE_SECONDS = float(os.environ.get("RESPONSELOOP_LEASE_SECONDS", "30"))
RETRYABLE = {409, 429, 500, 502, 503, 504}

tools = FunctionTools()


# Read-only, so it may run again if a worker died while running it (see the config below).
@tools.tool(parameters={"type": "object", "properties": {"q": {"type": "string"}}}, idempotent=True)
def slow_lookup(q: str, ctx: RequestContext) -> dict[str, Any]:
    """Looks the answer up (a stand-in for any real work a tool does)."""
    log = os.environ.get("RESPONSELOOP_TOOL_LOG")
    if log:  # the tests read who ran what
        with open(log, "a", encoding="utf-8") as file:
            file.write(f"start {ctx.response_id} {os.getpid()}\n")
        if os.environ.get("RESPONSELOOP_HOLD_FIRST_TOOL") and _first_call(Path(log + ".hold")):
            time.sleep(3600)  # the tests kill this worker here
        with open(log, "a", encoding="utf-8") as file:
            file.write(f"done {ctx.response_id} {os.getpid()}\n")
    return {"q": q, "answer": 42}


def _first_call(marker: Path) -> bool:
    try:
        with open(marker, "x", encoding="utf-8") as file:
            file.write(str(os.getpid()))
    except FileExistsError:
        return False
    return True


def responses_service(store: SQLiteStore, http_client: HttpxClient) -> ResponsesService:
    """The service every process builds the same way; the store is what they share."""
    return ResponsesService(
        store=store,
        http_client=http_client,
        upstream=UpstreamTarget(UPSTREAM, "/chat/completions"),
        resolver=StaticToolResolver(tools),
        # A dead worker's model call or read-only tool call is sent again on resume;
        # without these, a step cut off mid-flight fails the response instead.
        config=LoopConfig(
            lease_seconds=LEASE_SECONDS, refire_model_calls=True, refire_idempotent_tools=True
        ),
    )


async def submit(body: dict[str, Any], caller: str | None = None) -> dict[str, Any]:
    """The web side: store the response, enqueue it, answer it as it stands (in_progress)."""
    redis = await create_pool(REDIS, default_queue_name=QUEUE)
    try:
        async with SQLiteStore(DATABASE) as store, HttpxClient.create() as http_client:
            service = responses_service(store, http_client)
            prepared = await service.prepare(body, api_key=None, caller=caller)
            # The job id is the response id: enqueuing the same response twice is one job.
            await redis.enqueue_job(
                "run_response", prepared.response_id, body, caller, _job_id=prepared.response_id
            )
            return dict(await service.retrieve(prepared.response_id, caller=caller))
    finally:
        await redis.aclose()


async def run_response(
    ctx: dict[str, Any], response_id: str, body: dict[str, Any], caller: str | None
) -> int:
    """The worker side: run (or resume) the response to its end."""
    worker: ResponseLoopHttpClient = ctx["responses"]
    answer = await worker.execute(LoopRequest(response_id, body, caller=caller))
    if answer.status in RETRYABLE:
        # 409: another worker holds the response (or held it and died: its lease expires).
        raise Retry(defer=1)
    return answer.status


async def startup(ctx: dict[str, Any]) -> None:
    store = SQLiteStore(DATABASE)
    http_client = HttpxClient()
    ctx["store"], ctx["http_client"] = store, http_client
    ctx["responses"] = ResponseLoopHttpClient(responses_service(store, http_client))


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["http_client"].aclose()
    await ctx["store"].aclose()


class WorkerSettings:
    """``arq examples.arq_worker.WorkerSettings`` (from the repository root)."""

    functions: ClassVar[list[Any]] = [func(run_response, max_tries=60)]
    on_startup = startup
    on_shutdown = shutdown
    redis_settings = REDIS
    queue_name = QUEUE
    max_jobs = 4
    # A job's claim outlives a dead worker by this + 10 s; a response must end within it.
    job_timeout = int(os.environ.get("RESPONSELOOP_JOB_TIMEOUT", "300"))
