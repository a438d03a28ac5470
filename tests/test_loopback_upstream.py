"""The loopback upstream answers a ChatReply exactly as ScriptedChatModel does: the same
completion as JSON, the same chunks as SSE, the same error status or cut connection."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from responseloop.abc import HttpRequest
from responseloop.testing import ChatReply
from tests.loopback_upstream import (
    FINAL_TEXT,
    Received,
    Reply,
    conversation,
    loopback_upstream,
    running_upstream,
)

texts = st.text(st.characters(codec="utf-8"), max_size=20)
replies = st.builds(
    ChatReply,
    content=st.none() | texts,
    tool_calls=st.lists(st.tuples(texts, texts, texts), max_size=3),
    reasoning=st.none() | texts,
    refusal=st.none() | texts,
)


def received(body: dict[str, Any]) -> Received:
    return Received("POST", "/v1/chat/completions", {}, json.dumps(body).encode())


def sse_data(reply: Reply) -> list[Any]:
    data = [part.decode().removeprefix("data: ").removesuffix("\n\n") for part in reply.parts]
    return [item if item == "[DONE]" else json.loads(item) for item in data]


@given(replies, st.booleans(), st.integers(1, 50))
def test_a_chat_reply_renders_as_its_completion_or_its_chunks(
    reply: ChatReply, stream: bool, number: int
) -> None:
    body = {"model": "m", "messages": [], "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    request = HttpRequest("/v1/chat/completions", body)
    rendered = Reply.chat(reply, received(body), number)
    assert rendered.status == 200
    if stream:
        assert dict(rendered.headers)["content-type"] == "text/event-stream"
        assert sse_data(rendered) == [*reply.chunks(request, number), "[DONE]"]
    else:
        assert dict(rendered.headers)["content-type"] == "application/json"
        assert json.loads(b"".join(rendered.parts)) == reply.completion(request, number)


def test_an_error_reply_is_its_status_and_an_unreachable_one_a_cut_connection() -> None:
    body = received({"model": "m"})
    error = Reply.chat(ChatReply.error(503, "busy"), body, 1)
    assert (error.status, b"".join(error.parts)) == (503, b"busy")
    assert Reply.chat(ChatReply.unreachable(), body, 1).cut


def test_the_conversation_answers_by_turn_so_a_refired_call_is_answered_the_same() -> None:
    first = {"model": "m", "messages": [{"role": "user", "content": "q"}]}
    call = json.loads(b"".join(conversation(received(first)).parts))
    assert call["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "slow_lookup"
    assert conversation(received(first)) == conversation(received(first))
    answered = {
        **first,
        "messages": [
            *first["messages"],
            call["choices"][0]["message"],
            {"role": "tool", "tool_call_id": "call_lookup_1", "content": "42"},
        ],
    }
    final = json.loads(b"".join(conversation(received(answered)).parts))
    assert final["choices"][0]["message"]["content"] == FINAL_TEXT
    assert (call["id"], final["id"]) == ("chatcmpl-1", "chatcmpl-2")


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_the_server_sends_the_scripted_replies_in_order(stream: bool) -> None:
    async with running_upstream() as upstream, httpx2.AsyncClient() as http:
        upstream.add(ChatReply.text("slow", delay=0.01), ChatReply.error(429, "later"))
        body = {"model": "m", "messages": [], "stream": stream}
        first = await http.post(upstream.chat_url, json=body)
        second = await http.post(upstream.chat_url, json=body)
        exhausted = await http.post(upstream.chat_url, json=body)
    request = HttpRequest(upstream.chat_url, body)
    if stream:
        sent = sse_data(
            Reply(parts=[event + b"\n\n" for event in first.content.split(b"\n\n")[:-1]])
        )
        assert sent == [*ChatReply.text("slow").chunks(request, 1), "[DONE]"]
    else:
        assert first.json() == ChatReply.text("slow").completion(request, 1)
    assert (second.status_code, second.text) == (429, "later")
    assert (exhausted.status_code, exhausted.text) == (500, "script exhausted")
    assert upstream.bodies == [body] * 3


def test_the_threaded_server_serves_blocking_clients_and_records_their_requests() -> None:
    with loopback_upstream() as upstream:
        body = {"model": "local", "messages": [{"role": "user", "content": "q"}]}
        answer = httpx2.post(upstream.chat_url, json=body)
    assert answer.json()["choices"][0]["finish_reason"] == "tool_calls"
    assert upstream.bodies == [body]
