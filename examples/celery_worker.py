"""Responses run by Celery workers (Redis broker), with a durable store.

The web side stores the response and enqueues its id (:func:`submit`, which answers the
``in_progress`` Response at once); a worker runs the loop with
:class:`~responseloop.ResponseLoopHttpClient` and finalises the stored response;
the client polls ``GET /v1/responses/{id}`` (any process with the store can answer it).

A worker killed mid-response is survived: the task is acknowledged only when it ends
(``task_acks_late``) and requeued when its worker process dies
(``task_reject_on_worker_lost``); the next try resumes the stored chain, and answers 409
until the dead worker's lease expires, which the task retries.

Run a worker from the repository root (configuration comes from the environment)::

    RESPONSELOOP_UPSTREAM=http://localhost:8000/v1 RESPONSELOOP_SQLITE=responses.db \\
        celery --workdir examples -A celery_worker worker --concurrency 4
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import anyio
from celery import Celery

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

BROKER = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
QUEUE = os.environ.get("RESPONSELOOP_QUEUE", "responses")
UPSTREAM = os.environ.get("RESPONSELOOP_UPSTREAM", "http://127.0.0.1:8000/v1")
DATABASE = os.environ.get("RESPONSELOOP_SQLITE", "responses.db")
# How long a dead worker's claim on a response lasts; well above any pause of a live one.
LEASE_SECONDS = float(os.environ.get("RESPONSELOOP_LEASE_SECONDS", "30"))
RETRYABLE = {409, 429, 500, 502, 503, 504}

app = Celery("responses", broker=BROKER)
app.conf.update(
    task_default_queue=QUEUE,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    broker_transport_options={"global_keyprefix": f"{QUEUE}:"},
    broker_connection_retry_on_startup=True,
)

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
    async with SQLiteStore(DATABASE) as store, HttpxClient.create() as http_client:
        service = responses_service(store, http_client)
        prepared = await service.prepare(body, api_key=None, caller=caller)
        run_response.delay(prepared.response_id, body, caller)
        return dict(await service.retrieve(prepared.response_id, caller=caller))


async def _execute(response_id: str, body: dict[str, Any], caller: str | None) -> int:
    async with SQLiteStore(DATABASE) as store, HttpxClient.create() as http_client:
        worker = ResponseLoopHttpClient(responses_service(store, http_client))
        answer = await worker.execute(LoopRequest(response_id, body, caller=caller))
        return answer.status


@app.task(bind=True, name="responses.run_response", max_retries=60)
def run_response(self: Any, response_id: str, body: dict[str, Any], caller: str | None) -> int:
    """The worker side: run (or resume) the response to its end."""
    status = anyio.run(_execute, response_id, body, caller)
    if status in RETRYABLE:
        # 409: another worker holds the response (or held it and died: its lease expires).
        raise self.retry(countdown=1)
    return status
