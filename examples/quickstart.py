"""Quickstart: one response with a server-side tool, driven by run_response_loop.

Runs offline: a scripted model stands in for the LLM. Set OPENAI_BASE_URL (and
OPENAI_API_KEY, and optionally OPENAI_MODEL) to run the same loop against a real
OpenAI-compatible chat-completions server instead.

    python examples/quickstart.py
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import anyio

from responseloop import (
    ChatTransition,
    HttpxClient,
    InMemoryStore,
    RequestContext,
    ResponseRecord,
    UpstreamTarget,
    run_response_loop,
)
from responseloop.abc import JSON, Complete, HttpClient, ToolSchema
from responseloop.exceptions import ToolNotFound
from responseloop.testing import ChatReply, ScriptedChatModel


class WeatherTools:
    """A ToolExecutor written by hand: the protocol is two methods."""

    async def tools(self, ctx: RequestContext) -> Sequence[ToolSchema]:
        return [
            ToolSchema(
                "get_weather",
                "Current temperature in a city, in degrees Celsius.",
                {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            )
        ]

    async def execute(self, name: str, call_id: str, arguments: JSON, ctx: RequestContext) -> JSON:
        if name != "get_weather":
            raise ToolNotFound(name)
        return {"city": arguments["city"], "temperature_c": 18}


def scripted_model() -> ScriptedChatModel:
    """What a real model would do: ask for the tool, then answer with its result."""
    return ScriptedChatModel(
        [
            ChatReply.tool_call("get_weather", {"city": "Paris"}),
            ChatReply.text("It is 18 °C in Paris right now."),
        ]
    )


async def main() -> None:
    base_url = os.environ.get("OPENAI_BASE_URL")
    http_client: HttpClient
    if base_url:
        http_client = HttpxClient()
        upstream = UpstreamTarget(base_url, "/chat/completions", os.environ.get("OPENAI_API_KEY"))
        model = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")
    else:
        http_client = scripted_model()
        upstream = UpstreamTarget("http://scripted.invalid")
        model = "scripted-model"

    request = {
        "model": model,
        "messages": [{"role": "user", "content": "What's the weather in Paris?"}],
    }
    store = InMemoryStore()
    await store.create_response(ResponseRecord(id="resp_quickstart", request=request, model=model))
    outcome = await run_response_loop(
        "resp_quickstart",
        store=store,
        http_client=http_client,
        upstream=upstream,
        transition=ChatTransition(request),
        tools=WeatherTools(),
    )

    if not isinstance(outcome, Complete):
        raise SystemExit(f"the response failed: {dict(outcome.error)}")
    for step in await store.list_chain("resp_quickstart", None):
        print(f"step {step.sequence}: {step.kind.value:<10} {step.state.value}")
    print("answer:", outcome.payload["choices"][0]["message"]["content"])


if __name__ == "__main__":
    anyio.run(main)
