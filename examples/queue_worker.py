"""A queue worker running whole multi-step responses with ResponseLoopHttpClient.

Any queue (Celery, arq, Dramatiq, SQS…) calls ``handle_job`` with a job it took off the
queue. The answer's status tells the queue what to do: 2xx is done, 429/5xx may be
retried (a retry resumes the stored chain), other 4xx are final.

Runs offline with a scripted model:

    python examples/queue_worker.py
"""

from __future__ import annotations

from typing import Any

import anyio

from responseloop import (
    FunctionTools,
    InMemoryStore,
    LoopRequest,
    ResponseLoopHttpClient,
    ResponsesService,
    StaticToolResolver,
    UpstreamTarget,
)
from responseloop.abc import ResponseStore
from responseloop.testing import ChatReply, ScriptedChatModel

tools = FunctionTools()


@tools.tool(parameters={"type": "object", "properties": {"sku": {"type": "string"}}})
def stock_level(sku: str) -> dict[str, Any]:
    """How many units of a product are in stock."""
    return {"sku": sku, "units": 42}


def make_worker(store: ResponseStore) -> ResponseLoopHttpClient:
    """One per worker process; the store is what workers share."""
    model = ScriptedChatModel(
        [
            ChatReply.tool_call("stock_level", {"sku": "A-1"}),
            ChatReply.text("We have 42 units of A-1."),
        ]
    )
    service = ResponsesService(
        store=store,
        http_client=model,
        upstream=UpstreamTarget("http://model-server.internal/v1", "/chat/completions"),
        resolver=StaticToolResolver(tools),
    )
    return ResponseLoopHttpClient(service)


async def handle_job(worker: ResponseLoopHttpClient, job: dict[str, Any]) -> tuple[int, Any]:
    """What the queue calls: run the response, answer (status, body)."""
    answer = await worker.execute(
        LoopRequest(job["response_id"], job["body"], caller=job.get("caller")),
        api_key=job.get("api_key"),
    )
    return answer.status, answer.json()


async def main() -> None:
    store = InMemoryStore()
    worker = make_worker(store)
    job = {
        "response_id": "resp_example_job",
        "body": {"model": "m", "input": "How many A-1 do we have?"},
        "caller": "team-a",
    }
    status, body = await handle_job(worker, job)
    print("status:", status)
    print("output:", [item["type"] for item in body["output"]])
    print("answer:", body["output"][-1]["content"][0]["text"])
    stored = await store.get_response("resp_example_job")
    print("stored:", stored.status.value)


if __name__ == "__main__":
    anyio.run(main)
