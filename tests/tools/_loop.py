"""Running the real loop over scripted models, for the tool tests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from responseloop import (
    ChatTransition,
    InMemoryStore,
    LoopConfig,
    RequestContext,
    ResponseRecord,
    UpstreamTarget,
    run_response_loop,
)
from responseloop.abc import (
    Complete,
    Fail,
    HttpClient,
    HttpRequest,
    HttpResponse,
    OnServerSentEvent,
    ToolExecutor,
)
from responseloop.testing import ScriptedChatModel

UPSTREAM = UpstreamTarget("http://upstream.invalid")


async def run_loop(
    model: HttpClient,
    tools: ToolExecutor | None,
    *,
    config: LoopConfig | None = None,
    store: InMemoryStore | None = None,
    response_id: str = "resp_1",
    ctx: RequestContext | None = None,
    body: dict[str, Any] | None = None,
) -> Complete | Fail:
    """One response through run_response_loop with ChatTransition."""
    store = store or InMemoryStore()
    await store.create_response(ResponseRecord(response_id, {"model": "m"}, model="m"))
    request = body or {"model": "m", "messages": [{"role": "user", "content": "go"}]}
    return await run_response_loop(
        response_id,
        store=store,
        http_client=model,
        upstream=UPSTREAM,
        transition=ChatTransition(request),
        tools=tools,
        ctx=ctx or RequestContext(response_id=response_id, model="m"),
        config=config,
    )


def tool_messages(model: ScriptedChatModel, request_index: int) -> list[dict[str, Any]]:
    """The ``tool`` messages of one model call the loop made."""
    messages: Sequence[Any] = model.requests[request_index].json["messages"]
    return [m for m in messages if m.get("role") == "tool"]


def tool_outputs(model: ScriptedChatModel, request_index: int) -> list[Any]:
    """The tool outputs the model was sent in one call, parsed as JSON where they are."""
    outputs = []
    for message in tool_messages(model, request_index):
        try:
            outputs.append(json.loads(message["content"]))
        except ValueError:
            outputs.append(message["content"])
    return outputs


class ModelRouter:
    """An HttpClient sending each model call to the scripted model named in its body, so a
    sub-agent can talk to a model of its own."""

    def __init__(self, models: dict[str, ScriptedChatModel]) -> None:
        self.models = models

    def _model(self, request: HttpRequest) -> ScriptedChatModel:
        return self.models[request.json["model"]]

    async def execute(self, request: HttpRequest) -> HttpResponse:
        return await self._model(request).execute(request)

    async def stream(self, request: HttpRequest, on_event: OnServerSentEvent) -> HttpResponse:
        return await self._model(request).stream(request, on_event)
