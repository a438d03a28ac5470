"""An approval runs its call once, whichever responses carry it: each approval is claimed
in the store by the response that runs its call (``ApprovalStore.claim_approvals``), so a
second response approving it (another branch of the chain, a concurrent request, a
conversation turn after one that ran the call and then failed) is a 400 naming
``input[i].approval_request_id``. Calls are counted by the MCP server itself."""

from __future__ import annotations

from typing import Any

import anyio
import openai
import pytest

from responseloop import InMemoryStore
from responseloop.abc import ResponseStatus
from responseloop.adapters import caller_from_key
from responseloop.exceptions import InvalidRequestError
from tests.declared_mcp import model
from tests.declared_mcp.conftest import (
    KEY,
    STREAMED,
    HttpMcp,
    McpLog,
    Stack,
    create,
    service_stack,
)
from tests.loopback_upstream import Received, Reply, Upstream


def approving(request_id: str) -> Any:
    """An ``mcp_approval_response`` approving ``request_id`` (typed loosely: the SDK's
    input union is what the calls take)."""
    return {"type": "mcp_approval_response", "approval_request_id": request_id, "approve": True}


async def paused(stack: Stack, note: str, **params: Any) -> tuple[str, str, list[Any]]:
    """A first response pausing for the approval of ``record <note>``: its id, the
    approval request's id, and the tools to send again."""
    tools = [stack.declare("remote")]
    first = await create(
        stack.client,
        False,
        model="m",
        input=f'call record {{"note": "{note}"}}',
        tools=tools,
        **params,
    )
    (request,) = first.items("mcp_approval_request")
    return first.id, str(request["id"]), tools


@STREAMED
async def test_a_second_branch_approving_the_same_request_is_refused(
    stack: Stack, streamed: bool
) -> None:
    log = stack.log("remote")
    first, request_id, tools = await paused(stack, "b1")
    second = await create(
        stack.client,
        streamed,
        model="m",
        previous_response_id=first,
        input=[approving(request_id)],
        tools=tools,
    )
    assert second.kinds == ["mcp_call", "message"]
    assert log.count("record b1") == 1
    calls = len(stack.upstream.received)

    # Another branch from the same paused response, approving the same request.
    with pytest.raises(openai.BadRequestError) as refused:
        await create(
            stack.client,
            streamed,
            model="m",
            previous_response_id=first,
            input=[{"role": "user", "content": "again"}, approving(request_id)],
            tools=tools,
        )
    assert refused.value.param == "input[1].approval_request_id"
    assert f"approval {request_id!r} was already used by response {second.id!r}" in str(
        refused.value
    )
    assert log.count("record b1") == 1
    assert len(stack.upstream.received) == calls  # refused before the model was called
    assert stack.service.running == frozenset()
    store = stack.service.store
    assert isinstance(store, InMemoryStore)
    assert len(store._responses) == 2  # the refused response was not kept


async def test_concurrent_approvals_run_the_call_once(stack: Stack) -> None:
    log = stack.log("remote")
    first, request_id, tools = await paused(stack, "c1")
    answers: list[Any] = []
    refusals: list[openai.BadRequestError] = []

    async def approve() -> None:
        try:
            answers.append(
                await create(
                    stack.client,
                    False,
                    model="m",
                    previous_response_id=first,
                    input=[approving(request_id)],
                    tools=tools,
                )
            )
        except openai.BadRequestError as exc:
            refusals.append(exc)

    async with anyio.create_task_group() as group:
        for _ in range(4):
            group.start_soon(approve)
    (ran,) = answers
    assert ran.kinds == ["mcp_call", "message"]
    assert len(refusals) == 3
    assert all(r.param == "input[0].approval_request_id" for r in refusals)
    assert all(f"already used by response {ran.id!r}" in str(r) for r in refusals)
    assert log.count("record c1") == 1


async def test_a_retry_of_the_same_response_is_the_same_owner(stack: Stack) -> None:
    """A retry with the same response id (or the recovery sweep) claims what it owns
    already, and proceeds; the call ran once."""
    log = stack.log("remote")
    first, request_id, tools = await paused(stack, "s1")
    body = {
        "model": "m",
        "previous_response_id": first,
        "input": [approving(request_id)],
        "tools": tools,
    }
    caller = caller_from_key(KEY)
    service = stack.service
    prepared = await service.prepare(body, api_key=KEY, caller=caller, response_id="resp_fixed")
    again = await service.prepare(body, api_key=KEY, caller=caller, response_id="resp_fixed")
    assert again.response_id == prepared.response_id
    result = await service.run(prepared)
    assert result.status is ResponseStatus.COMPLETED
    assert log.count("record s1") == 1
    retried = await service.prepare(body, api_key=KEY, caller=caller, response_id="resp_fixed")
    assert retried.finished is not None  # ended: answered as stored, never run again
    assert log.count("record s1") == 1
    with pytest.raises(InvalidRequestError, match="already used by response 'resp_fixed'"):
        await service.prepare(body, api_key=KEY, caller=caller, response_id="resp_other")


async def test_a_deleted_response_keeps_its_claim(stack: Stack) -> None:
    log = stack.log("remote")
    first, request_id, tools = await paused(stack, "d1")
    params: dict[str, Any] = {
        "model": "m",
        "previous_response_id": first,
        "input": [approving(request_id)],
        "tools": tools,
    }
    second = await create(stack.client, False, **params)
    await stack.client.responses.delete(second.id)
    with pytest.raises(openai.BadRequestError, match="already used by response"):
        await create(stack.client, False, **params)
    assert log.count("record d1") == 1


async def test_a_conversation_turn_that_ran_the_call_and_failed_keeps_it(
    upstream: Upstream, stack: Stack
) -> None:
    """The turn that ran the approved call failed afterwards, so its items (the call)
    never joined the conversation; approving the request again in a later turn is
    refused instead of running the call again."""
    log = stack.log("remote")
    conversation = await stack.client.conversations.create()
    _, request_id, tools = await paused(stack, "f1", conversation=conversation.id)

    def fail_after_the_call(received: Received) -> Reply:
        if model.tool_results(received.json()):
            return Reply.json({"error": {"message": "the model broke"}}, status=400)
        return model.answer(received)

    upstream.responder = fail_after_the_call
    failed = await stack.client.responses.create(
        model="m", conversation=conversation.id, input=[approving(request_id)], tools=tools
    )
    assert failed.status == "failed"
    assert log.count("record f1") == 1
    upstream.responder = model.answer

    with pytest.raises(openai.BadRequestError) as refused:
        await stack.client.responses.create(
            model="m", conversation=conversation.id, input=[approving(request_id)], tools=tools
        )
    assert refused.value.param == "input[0].approval_request_id"
    assert f"already used by response {failed.id!r}" in str(refused.value)
    assert log.count("record f1") == 1
    # The refused turn left the conversation free for the next one.
    answer = await stack.client.responses.create(
        model="m", conversation=conversation.id, input="what now?", tools=tools
    )
    assert answer.status == "completed"


class KeepsNoClaims(InMemoryStore):
    """A host's store without ``claim_approvals`` (not an ``ApprovalStore``)."""

    claim_approvals = None  # type: ignore[assignment]


async def test_a_store_keeping_no_claims_refuses_approved_calls(
    upstream: Upstream, stdio_log: McpLog, http_mcp: HttpMcp
) -> None:
    store = KeepsNoClaims()
    async with service_stack(upstream, stdio_log, http_mcp, store=store) as stack:
        first, request_id, tools = await paused(stack, "n1")
        with pytest.raises(openai.BadRequestError) as refused:
            await create(
                stack.client,
                False,
                model="m",
                previous_response_id=first,
                input=[approving(request_id)],
                tools=tools,
            )
        assert refused.value.param == "input[0].approval_request_id"
        assert "keeps no approval claims" in str(refused.value)
        assert stack.http_mcp.log.count("record n1") == 0
        assert len(store._responses) == 1  # nothing stored for the refused request
