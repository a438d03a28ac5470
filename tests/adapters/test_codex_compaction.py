"""Codex's remote compaction requests (tests/data/codex/compaction, Codex 0.171.0, captured
from ``serve`` sealing with :data:`~tests.clients.test_codex_compaction.SEALING_SECRET`)
run end to end: the in-process transport, the service under the same secret, HttpxClient
and a loopback chat-completions upstream.

``trigger.json`` is the mid-turn compaction (the turn so far, its tools, then
``{"type": "compaction_trigger"}``); ``compacted.json`` the request after it, carrying
the ``compaction`` item serve answered with, so its sealed blob opens here."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from responseloop import HttpxClient, InMemoryStore, ResponseLoopTransport, ResponsesService
from responseloop.core import DEFAULT_COMPACTION_PROMPT, SUMMARY_PREFIX
from responseloop.openresponses import WireOptions
from responseloop.testing import ChatReply
from tests.clients import scripted_model
from tests.clients.test_codex_compaction import SEALING_SECRET
from tests.loopback_upstream import Upstream, running_upstream
from tests.wire_checks import check_emitted_response, check_emitted_stream

CAPTURED = Path(__file__).parents[1] / "data" / "codex" / "compaction"
URL = "http://responseloop.test/v1/responses"


def captured(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((CAPTURED / f"{name}.json").read_text())
    return body


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    async with running_upstream() as server:
        yield server


async def stream(upstream: Upstream, body: dict[str, Any], key: bytes) -> list[dict[str, Any]]:
    """The events of ``body`` streamed by a service sealing under ``key``, each held to the
    wire checks, as is the stream's grammar and its final Response."""
    async with HttpxClient.create() as http_client:
        service = ResponsesService(
            store=InMemoryStore(),
            http_client=http_client,
            upstream=upstream.target("sk-up"),
            wire=WireOptions(reasoning_key=key),
        )
        async with (
            httpx2.AsyncClient(transport=ResponseLoopTransport(service)) as http,
            http.stream(
                "POST", URL, json=body, headers={"x-codex-beta-features": "remote_compaction_v2"}
            ) as answer,
        ):
            assert answer.status_code == 200, await answer.aread()
            data = [
                line.removeprefix("data: ")
                async for line in answer.aiter_lines()
                if line.startswith("data: ")
            ]
    events = [json.loads(d) for d in data if d != "[DONE]"]
    check_emitted_stream(events, ended_with_done=data[-1] == "[DONE]")
    check_emitted_response(events[-1]["response"])
    return events


def test_the_captures_are_codex_remote_compaction_v2() -> None:
    trigger, compacted = captured("trigger"), captured("compacted")
    assert trigger["input"][-1] == {"type": "compaction_trigger"}
    assert trigger["stream"] is True
    assert trigger["tools"]
    (item,) = [i for i in compacted["input"] if i["type"] == "compaction"]
    assert compacted["input"][-1] is item
    assert set(item) == {"type", "id", "encrypted_content"}


async def test_the_trigger_streams_exactly_one_compaction_item(upstream: Upstream) -> None:
    upstream.add(ChatReply.text("what happened so far"))
    events = await stream(upstream, captured("trigger"), SEALING_SECRET.encode())
    final = events[-1]["response"]
    assert final["status"] == "completed"
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [item["type"] for item in done] == ["compaction"]
    assert final["output"] == done
    # The upstream was asked for the summary: the turn so far (the tool's output
    # included), then the prompt.
    (asked,) = upstream.bodies
    assert asked["messages"][-1] == {"role": "user", "content": DEFAULT_COMPACTION_PROMPT}
    assert [m["role"] for m in asked["messages"]][-3:] == ["assistant", "tool", "user"]


async def test_the_compacted_request_reaches_the_upstream_with_its_summary(
    upstream: Upstream,
) -> None:
    upstream.add(ChatReply.text("hi"))
    events = await stream(upstream, captured("compacted"), SEALING_SECRET.encode())
    final = events[-1]["response"]
    assert final["output"][-1]["content"][0]["text"] == "hi"
    (sent,) = upstream.bodies
    summaries = [m for m in sent["messages"] if str(m["content"]).startswith(SUMMARY_PREFIX)]
    assert [m["content"] for m in summaries] == [
        SUMMARY_PREFIX + f"{scripted_model.SUMMARY} (2 user messages)"
    ]
    # Codex kept its developer and user messages beside the compaction item.
    assert "my word is lemon; run echo" in [m["content"] for m in sent["messages"]]


async def test_the_compacted_request_is_refused_under_another_secret(upstream: Upstream) -> None:
    async with HttpxClient.create() as http_client:
        service = ResponsesService(
            store=InMemoryStore(),
            http_client=http_client,
            upstream=upstream.target("sk-up"),
            wire=WireOptions(reasoning_key=b"another secret"),
        )
        async with httpx2.AsyncClient(transport=ResponseLoopTransport(service)) as http:
            answer = await http.post(URL, json={**captured("compacted"), "stream": False})
    assert answer.status_code == 400
    index = len(captured("compacted")["input"]) - 1
    assert answer.json()["error"]["param"] == f"input[{index}].encrypted_content"
    assert upstream.bodies == []
