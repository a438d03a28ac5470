"""The default transition of an Open Responses request (DESIGN §6).

It translates the request once into the Chat Completions body of its first model call
and delegates every decision to :class:`~responseloop.ChatTransition`, which holds the
rules over chat bodies. What it adds is what only the Responses request knows: its
function tools (the client's), its ``max_tool_calls`` budget, and errors naming the
request's fields. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from ..abc._config import LoopConfig
from ..abc._dialect import ToolCall
from ..abc._steps import (
    ChainStep,
    NextAction,
    Scope,
    StepDescriptor,
    StepKind,
    _descriptor_owning,
)
from ..abc._tools import ToolSchema
from ..core._compaction import DEFAULT_COMPACTION_PROMPT
from ..exceptions import InvalidRequestError
from ..openresponses._mcp import ApprovedCall, approved_calls, conversation_listings
from ..openresponses._request import ResponsesRequest
from ._transition import ChatTransition
from ._translate import chat_body, upstream_call_id

__all__ = ["ResponsesTransition"]


def _chat_of(transition: ResponsesTransition) -> ChatTransition:
    # The scope's server tools are added by ChatTransition at each call, so the request's
    # tool settings must survive a request that has no tools of its own.
    request = transition.request
    body = chat_body(
        request, (), tools_come_later=True, replay_reasoning_as=transition.replay_reasoning_as
    )
    conversation = request.conversation
    listed = conversation_listings(conversation)
    if request.compaction_trigger:
        # One compaction of the conversation: nothing is listed or run before it.
        return ChatTransition(
            body,
            keep_reasoning=transition.replay_reasoning_as is not None,
            compact_only=True,
            compaction_prompt=transition.compaction_prompt,
        )
    return ChatTransition(
        body,
        max_tool_calls=request.max_tool_calls,
        keep_reasoning=transition.replay_reasoning_as is not None,
        allowed_tools=request.allowed_tool_names,
        listings=[d.server_label for d in request.mcp_servers if d.server_label not in listed],
        leading_calls=[_approved_step(call) for call in approved_calls(conversation)],
        compact_threshold=request.compact_threshold,
        compaction_prompt=transition.compaction_prompt,
    )


def _approved_step(call: ApprovedCall) -> StepDescriptor:
    """The tool step of a call the client approved: it answers the call's ``tool``
    message (under the id the upstream was shown), and names its approval request for
    the ``mcp_call`` item it becomes."""
    arguments = ToolCall(call.approval_request_id, call.name, call.arguments).parsed_arguments()
    payload = {
        "name": call.name,
        "call_id": upstream_call_id(call.approval_request_id),
        "arguments": arguments,
        "server_label": call.server_label,
        "approval_request_id": call.approval_request_id,
        "raw_arguments": call.arguments,
    }
    return _descriptor_owning(StepKind.TOOL_CALL, payload)


@attrs.frozen
class ResponsesTransition:
    """The default :class:`~responseloop.abc.Transition` of a ``/v1/responses`` request.

    Building it translates the request, so a request that cannot be translated (an
    unresolved ``item_reference``, an output answering no call) raises
    :class:`~responseloop.exceptions.InvalidRequestError` before anything runs.

    Decisions, over the chain of one scope (see :class:`~responseloop.ChatTransition`):
    an empty chain makes the first model call (with the request's ``tool_choice``; later
    calls use ``auto``); a final message completes; server-side calls run as a fan-out,
    at most ``max_tool_calls`` of them in the whole response, the rest answered as
    skipped; client function calls complete the response after the server-side calls of
    the same turn ran; a call of a tool the caller may not use, or one outside an
    ``allowed_tools`` ``tool_choice`` (which also narrows what every model call is
    offered), is never run; tool errors
    are fed back or fail per ``LoopConfig.tool_errors``; a failed model call fails.

    Reasoning items the client sends back reach the upstream on the assistant message
    after them, in the field ``replay_reasoning_as`` (``None``: not at all); open sealed
    ones first (:func:`~responseloop.openresponses.open_reasoning_items`).

    A request ending with a ``compaction_trigger`` item is one compaction of its
    conversation; one with a ``context_management`` compaction threshold compacts
    mid-response (see :class:`~responseloop.ChatTransition`); ``compaction_prompt`` is
    what a compaction asks the model. Open ``compaction`` items sent back first
    (:func:`~responseloop.openresponses.open_compaction_items`).
    """

    request: ResponsesRequest
    replay_reasoning_as: str | None = attrs.field(default="reasoning_content", kw_only=True)
    compaction_prompt: str = attrs.field(default=DEFAULT_COMPACTION_PROMPT, kw_only=True)
    chat: ChatTransition = attrs.field(
        init=False, default=attrs.Factory(_chat_of, takes_self=True), repr=False
    )

    def refusal(self, scope: Scope) -> InvalidRequestError | None:
        """Why this request cannot run in ``scope`` at all, or ``None``
        (:meth:`ChatTransition.refusal`)."""
        return self.chat.refusal(scope)

    def decide(self, chain: Sequence[ChainStep], scope: Scope, config: LoopConfig) -> NextAction:
        """The next action for ``scope`` given its chain (see the class docstring)."""
        return self.chat.decide(chain, scope, config)

    def sub_agent(self, step: ChainStep, tool: ToolSchema) -> ChatTransition:
        """The sub-loop of agent tool ``tool``: a chat-level transition of its own."""
        return self.chat.sub_agent(step, tool)
