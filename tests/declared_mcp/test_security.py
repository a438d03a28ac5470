"""What a request may not do with declared MCP servers: reach a URL the operator did not
allow, declare one where the operator allows none, or have its server's secrets
(``headers``, ``authorization``) stored, logged or echoed."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import openai
import pytest

from responseloop import InMemoryStore
from responseloop.stores.sqlite import SQLiteStore
from tests.declared_mcp.conftest import HttpMcp, McpLog, Stack, create, declaration, service_stack
from tests.loopback_upstream import Upstream

HEADER_SECRET = "hdr-secret-7731"
BEARER = "sk-mcp"
LOOKUP: Any = {"type": "function", "name": "lookup", "parameters": {"type": "object"}}


def _bad_request(error: openai.BadRequestError) -> dict[str, Any]:
    assert error.status_code == 400
    body = error.body
    assert isinstance(body, dict)
    return body


async def test_a_server_url_off_the_allow_list_is_refused(stack: Stack) -> None:
    elsewhere: Any = declaration("elsewhere", "http://127.0.0.1:9/mcp", require_approval="never")
    with pytest.raises(openai.BadRequestError) as caught:
        await stack.client.responses.create(model="m", input="hi", tools=[LOOKUP, elsewhere])
    assert _bad_request(caught.value)["param"] == "tools[1].server_url"
    assert stack.upstream.received == []  # refused before anything ran
    # A label the operator did not configure, with no URL, is refused too.
    unknown: Any = {"type": "mcp", "server_label": "nowhere"}
    with pytest.raises(openai.BadRequestError) as caught:
        await stack.client.responses.create(model="m", input="hi", tools=[unknown])
    assert _bad_request(caught.value)["param"] == "tools[0].server_label"


async def test_without_a_policy_declared_servers_are_refused(
    upstream: Upstream, stdio_log: McpLog, http_mcp: HttpMcp
) -> None:
    async with service_stack(upstream, stdio_log, http_mcp, declared=None) as bare:
        tool: Any
        for tool in (bare.declare("ops"), bare.declare("remote")):
            with pytest.raises(openai.BadRequestError) as caught:
                await bare.client.responses.create(model="m", input="hi", tools=[tool])
            assert _bad_request(caught.value)["param"].startswith("tools[0]")
    assert upstream.received == []
    assert stdio_log.lines() == []
    assert http_mcp.log.lines() == []


async def test_an_approval_of_a_server_the_request_does_not_declare_is_refused(
    stack: Stack,
) -> None:
    tools = [stack.declare("ops")]
    first = await create(
        stack.client, False, model="m", input='call record {"note": "z"}', tools=tools
    )
    (request,) = first.items("mcp_approval_request")
    approve: Any = {
        "type": "mcp_approval_response",
        "approval_request_id": request["id"],
        "approve": True,
    }
    with pytest.raises(openai.BadRequestError) as caught:
        await stack.client.responses.create(
            model="m", previous_response_id=first.id, input=[approve], tools=[]
        )
    assert _bad_request(caught.value)["param"] == "input[0].approval_request_id"
    assert stack.stdio_log.count("record z") == 0


def _store_text(store: object, path: Path | None) -> str:
    """Everything a store holds, as text: the SQLite files' bytes, or the memory store's
    records and steps."""
    if path is not None:
        return "".join(
            p.read_bytes().decode("utf-8", "replace")
            for p in path.parent.iterdir()
            if p.name.startswith(path.name)
        )
    assert isinstance(store, InMemoryStore)
    return repr(store._responses) + repr(store._steps)


@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
async def test_secrets_are_never_stored_logged_or_echoed(
    upstream: Upstream,
    stdio_log: McpLog,
    http_mcp: HttpMcp,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    store_kind: str,
) -> None:
    path = tmp_path / "responses.db" if store_kind == "sqlite" else None
    store: Any = SQLiteStore(path) if path is not None else InMemoryStore()
    tool = declaration(
        "remote", http_mcp.url, require_approval="never", headers={"X-Trace": HEADER_SECRET}
    )
    gated = {**tool, "server_label": "gated", "require_approval": "always"}
    caplog.set_level(logging.DEBUG)
    async with (
        store if path is not None else contextlib.nullcontext(),
        service_stack(upstream, stdio_log, http_mcp, store=store) as stack,
    ):
        # A call that ran (the key reached the guarded server: it answers 401 without).
        ran = await create(
            stack.client, False, model="m", input='call add {"a": 1, "b": 1}', tools=[tool]
        )
        assert ran.items("mcp_call")[0]["status"] == "completed"
        # A streamed one that paused for approval, and its approval.
        paused = await create(
            stack.client, True, model="m", input='call record {"note": "s1"}', tools=[gated]
        )
        (request,) = paused.items("mcp_approval_request")
        approve = {
            "type": "mcp_approval_response",
            "approval_request_id": request["id"],
            "approve": True,
        }
        done = await create(
            stack.client,
            False,
            model="m",
            previous_response_id=paused.id,
            input=[approve],
            tools=[gated],
        )
        assert done.items("mcp_call")[0]["output"] == "recorded s1"
        answers = [ran, paused, done]
        stored = [await stack.client.responses.retrieve(a.id) for a in answers]
        items = [await stack.client.responses.input_items.list(a.id) for a in answers]
        everything = _store_text(store, path)
    assert http_mcp.log.count("record s1") == 1
    for answer in answers:
        for echoed in answer.response["tools"]:
            assert "authorization" not in echoed
            assert "headers" not in echoed
    echoed_text = repr([a.response for a in answers]) + repr(stored) + repr(items)
    logged = "".join(f"{r.getMessage()} {r.__dict__} {r.exc_text or ''}" for r in caplog.records)
    assert any(r.name.startswith("responseloop") for r in caplog.records)  # it did log
    for secret in (HEADER_SECRET, BEARER):
        assert secret not in echoed_text
        assert secret not in everything
        assert secret not in logged
    assert "gated" in everything  # the store was read: it holds the request's tools
