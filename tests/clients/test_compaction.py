"""Compaction through the official openai client against ``responseloop serve`` (behind the
checking proxy, which holds every Response, stream and compacted response to the wire
checks): ``responses.compact``, a ``compaction`` item fed back, a ``compaction_trigger``
input, and ``context_management`` compacting mid-response."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from responseloop.core import DEFAULT_COMPACTION_PROMPT, SUMMARY_PREFIX
from tests.clients import scripted_model
from tests.clients.conftest import Stack


@pytest.fixture
async def served(stack: Stack) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=stack.base_url, api_key="dummy") as client:
        yield client


async def create(client: openai.AsyncOpenAI, stream: bool, **kwargs: Any) -> Any:
    if not stream:
        return await client.responses.create(model="m", **kwargs)
    final, types = None, []
    async for event in await client.responses.create(model="m", stream=True, **kwargs):
        types.append(event.type)
        if event.type == "response.completed":
            final = event.response
    assert final is not None
    return final


CONVERSATION: list[Any] = [
    {"role": "user", "content": "my word is lemon"},
    {"role": "assistant", "content": "Noted."},
    {"role": "user", "content": "say hi"},
    {"role": "assistant", "content": scripted_model.HELLO},
]


async def test_compact_returns_the_user_messages_then_one_compaction_item(
    served: openai.AsyncOpenAI, stack: Stack
) -> None:
    compacted = await served.responses.compact(model="m", input=CONVERSATION)
    assert compacted.object == "response.compaction"
    assert [(item.type, getattr(item, "role", None)) for item in compacted.output] == [
        ("message", "user"),
        ("message", "user"),
        ("compaction", None),
    ]
    assert compacted.usage.total_tokens > 0
    # The upstream was asked once: the conversation, then the prompt.
    [asked] = stack.upstream_bodies
    assert asked["messages"][-1] == {"role": "user", "content": DEFAULT_COMPACTION_PROMPT}
    assert [m["content"] for m in asked["messages"][:-1]] == [m["content"] for m in CONVERSATION]
    assert "stream" not in asked


async def test_a_compaction_item_sent_back_reaches_the_upstream_as_its_summary(
    served: openai.AsyncOpenAI, stack: Stack
) -> None:
    compacted = await served.responses.compact(model="m", input=CONVERSATION)
    # As a client replays it (the SDK types the user messages as output messages).
    window: list[Any] = [
        item.model_dump(exclude_none=True, warnings=False) for item in compacted.output
    ]
    answer = await served.responses.create(
        model="m", input=[*window, {"role": "user", "content": "what is my word"}]
    )
    assert answer.output_text == "Your word is lemon."  # the user's message was kept
    sent = stack.upstream_bodies[-1]["messages"]
    summary = [m for m in sent if str(m.get("content", "")).startswith(SUMMARY_PREFIX)]
    assert [m["content"] for m in summary] == [
        SUMMARY_PREFIX + f"{scripted_model.SUMMARY} (2 user messages)"
    ]


async def test_a_tampered_compaction_item_is_a_400_naming_its_blob(
    served: openai.AsyncOpenAI,
) -> None:
    compacted = await served.responses.compact(model="m", input=CONVERSATION)
    item: Any = compacted.output[-1].model_dump(exclude_none=True)
    item["encrypted_content"] = item["encrypted_content"][:-6] + "AAAAAA"
    with pytest.raises(openai.BadRequestError) as caught:
        await served.responses.create(model="m", input=[item, {"role": "user", "content": "go"}])
    assert caught.value.param == "input[0].encrypted_content"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_compaction_trigger_ends_with_exactly_one_compaction_item(
    served: openai.AsyncOpenAI, stream: bool
) -> None:
    response = await create(
        served, stream, input=[*CONVERSATION, {"type": "compaction_trigger"}], store=False
    )
    assert [item.type for item in response.output] == ["compaction"]
    assert response.status == "completed"


@pytest.mark.parametrize("stream", [False, True])
async def test_context_management_compacts_mid_response(
    served: openai.AsyncOpenAI, stack: Stack, stream: bool
) -> None:
    response = await create(
        served,
        stream,
        input="server weather in Paris?",
        context_management=[{"type": "compaction", "compact_threshold": 1}],
    )
    assert [item.type for item in response.output] == ["mcp_call", "compaction", "message"]
    assert response.output_text == scripted_model.CONTINUED
    model_call, compaction, after = stack.upstream_bodies
    # The compaction was sent the conversation so far, then the prompt; the call after it
    # the user's message and the summary.
    assert compaction["messages"][0] == model_call["messages"][0]
    assert [m["role"] for m in compaction["messages"]] == ["user", "assistant", "tool", "user"]
    assert compaction["messages"][-1]["content"] == DEFAULT_COMPACTION_PROMPT
    assert [m["role"] for m in after["messages"]] == ["user", "user"]
    assert after["messages"][-1]["content"].startswith(SUMMARY_PREFIX)
