"""The fakes of :mod:`responseloop.testing`: a scripted model, a recording tool executor,
event sink and store."""

from __future__ import annotations

import collections
import inspect
import json
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import anyio
import attrs

from ..abc._config import RequestContext
from ..abc._events import LoopEvent, LoopEventKind
from ..abc._http import HttpRequest, HttpResponse, ServerSentEvent
from ..abc._json import JSON
from ..abc._protocols import (
    ApprovalStore,
    ConversationStore,
    OnServerSentEvent,
    ResponseStore,
    ToolExecutor,
)
from ..abc._records import (
    ConversationContents,
    ConversationRecord,
    ResponseRecord,
    ResponseUpdate,
)
from ..abc._steps import ChainStep, RecordedStep, StepDescriptor, StepUpdate
from ..abc._tools import ToolSchema
from ..exceptions import (
    InvalidRequestError,
    ToolNotFound,
    UpstreamConnectionError,
    UpstreamStatusError,
)

__all__ = [
    "ChatReply",
    "RecordingEventSink",
    "RecordingStore",
    "RecordingToolExecutor",
    "ScriptExhausted",
    "ScriptedChatModel",
    "ToolInvocation",
]

DEFAULT_USAGE: Mapping[str, int] = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


def _triples(value: Iterable[tuple[str, str, str]]) -> Sequence[tuple[str, str, str]]:
    return tuple(value)


class ScriptExhausted(AssertionError):
    """The scripted model was called more often than its script has replies."""


@attrs.frozen
class ChatReply:
    """One scripted answer of :class:`ScriptedChatModel`.

    Build them with :meth:`text`, :meth:`tool_call`, :meth:`calls`, :meth:`error` and
    :meth:`unreachable`; ``delay`` makes the model wait first (``math.inf``: until
    cancelled), which is how tests catch a call in flight. ``reasoning`` and ``refusal``
    add the message's ``reasoning_content`` and ``refusal`` (streamed as their own deltas).
    A request asking for ``logprobs`` gets them, as from a real upstream: one token per
    streamed piece of ``content`` (see :func:`scripted_logprobs`), with ``top_logprobs``
    alternatives when it asks for them.
    """

    content: str | None = None
    tool_calls: Sequence[tuple[str, str, str]] = attrs.field(default=(), converter=_triples)
    reasoning: str | None = None
    refusal: str | None = None
    finish_reason: str | None = None
    usage: Mapping[str, Any] | None = DEFAULT_USAGE
    status: int = 200
    error_body: str = ""
    connection_error: bool = False
    delay: float = 0.0

    @classmethod
    def text(cls, content: str, **fields: Any) -> ChatReply:
        """A final text answer."""
        return cls(content=content, **fields)

    @classmethod
    def tool_call(
        cls, name: str, arguments: JSON = None, *, call_id: str | None = None, **fields: Any
    ) -> ChatReply:
        """One call of tool ``name`` (arguments as JSON or already a string)."""
        return cls.calls((name, arguments, call_id), **fields)

    @classmethod
    def calls(cls, *calls: tuple[str, JSON, str | None], **fields: Any) -> ChatReply:
        """Several tool calls, each ``(name, arguments, call_id or None)``."""
        normalised = []
        for index, (name, arguments, call_id) in enumerate(calls):
            text = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
            normalised.append((call_id or f"call_{name}_{index}", name, text))
        return cls(tool_calls=normalised, **fields)

    @classmethod
    def error(cls, status: int, body: str = "upstream error", **fields: Any) -> ChatReply:
        """An HTTP error status."""
        return cls(status=status, error_body=body, **fields)

    @classmethod
    def unreachable(cls) -> ChatReply:
        """A connection failure."""
        return cls(connection_error=True)

    def chunks(self, request: HttpRequest, number: int) -> list[dict[str, Any]]:
        """The chat.completion.chunk objects a streamed upstream sends for this reply (text
        in pieces, tool-call arguments in fragments, a usage chunk when the request asks
        for one), without the final ``[DONE]``; they reassemble to :meth:`completion` (but for an
        empty ``content`` next to tool calls, which reassembly makes ``null``)."""
        include_usage = isinstance(request.json, Mapping) and bool(
            (request.json.get("stream_options") or {}).get("include_usage")
        )
        return _chunks(self, self.completion(request, number), include_usage)

    def completion(self, request: HttpRequest, number: int) -> dict[str, Any]:
        """The chat.completion body this reply stands for."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.reasoning is not None:
            message["reasoning_content"] = self.reasoning
        if self.refusal is not None:
            message["refusal"] = self.refusal
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
                for cid, name, args in self.tool_calls
            ]
        finish = self.finish_reason or ("tool_calls" if self.tool_calls else "stop")
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish}
        asked = request.json if isinstance(request.json, Mapping) else {}
        if asked.get("logprobs") is True:
            top = asked.get("top_logprobs")
            pieces = _pieces(self.content) if self.content else []
            choice["logprobs"] = {
                "content": scripted_logprobs(pieces, top if isinstance(top, int) else 0)
            }
        body: dict[str, Any] = {
            "id": f"chatcmpl-{number}",
            "object": "chat.completion",
            "created": 1_700_000_000 + number,
            "model": _model_of(request),
            "choices": [choice],
        }
        if self.usage is not None:
            body["usage"] = dict(self.usage)
        return body


ScriptEntry = ChatReply | Callable[[HttpRequest], ChatReply]


def _model_of(request: HttpRequest) -> str:
    model = request.json.get("model") if isinstance(request.json, Mapping) else None
    return model if isinstance(model, str) else "scripted-model"


class ScriptedChatModel:
    """An :class:`~responseloop.abc.HttpClient` answering from a script, for tests and examples.

    Each model call takes the next entry: a :class:`ChatReply`, or a function of the
    request returning one. Unstreamed calls return its ``chat.completion`` body; streamed
    calls send the same answer as chat-completion chunks (text in pieces, tool-call
    arguments in fragments, usage when the request asks for it) and ``[DONE]``, which the
    dialect reassembles to that body, as from a real upstream.

    Attributes:
        requests: every request received, in order.
    """

    def __init__(self, script: Iterable[ScriptEntry] = ()) -> None:
        self._script: collections.deque[ScriptEntry] = collections.deque(script)
        self.requests: list[HttpRequest] = []

    def add(self, *entries: ScriptEntry) -> None:
        """Append replies to the script."""
        self._script.extend(entries)

    @property
    def remaining(self) -> int:
        """How many scripted replies are left."""
        return len(self._script)

    async def _reply(self, request: HttpRequest) -> ChatReply:
        self.requests.append(request)
        if not self._script:
            raise ScriptExhausted(f"no scripted reply left for model call #{len(self.requests)}")
        entry = self._script.popleft()
        reply = entry if isinstance(entry, ChatReply) else entry(request)
        if reply.delay == math.inf:
            await anyio.sleep_forever()
        elif reply.delay:
            await anyio.sleep(reply.delay)
        if reply.connection_error:
            raise UpstreamConnectionError("scripted connection failure")
        if not 200 <= reply.status < 300:
            raise UpstreamStatusError(reply.status, reply.error_body)
        return reply

    async def execute(self, request: HttpRequest) -> HttpResponse:
        reply = await self._reply(request)
        return HttpResponse.from_json(200, reply.completion(request, len(self.requests)))

    async def stream(self, request: HttpRequest, on_event: OnServerSentEvent) -> HttpResponse:
        reply = await self._reply(request)
        for chunk in reply.chunks(request, len(self.requests)):
            if await on_event(ServerSentEvent(json.dumps(chunk))):
                return _EVENT_STREAM
        await on_event(ServerSentEvent("[DONE]"))
        return _EVENT_STREAM


_EVENT_STREAM = HttpResponse(200, b"", {"content-type": "text/event-stream"})


def scripted_logprobs(tokens: Sequence[str], top_logprobs: int = 0) -> list[dict[str, Any]]:
    """The chat ``logprobs.content`` a scripted reply gives for ``tokens``: token ``i``
    has logprob ``-(i + 1) / 10``, and ``top_logprobs`` alternatives (the token itself,
    then ``"alt1"``, ``"alt2"``…, each a tenth less likely)."""
    entries: list[dict[str, Any]] = []
    for index, token in enumerate(tokens):
        logprob = -(index + 1) / 10
        tops = [
            {
                "token": token if rank == 0 else f"alt{rank}",
                "logprob": logprob - rank / 10,
                "bytes": list((token if rank == 0 else f"alt{rank}").encode()),
            }
            for rank in range(top_logprobs)
        ]
        entries.append(
            {
                "token": token,
                "logprob": logprob,
                "bytes": list(token.encode()),
                "top_logprobs": tops,
            }
        )
    return entries


def _pieces(text: str) -> list[str]:
    middle = max(1, len(text) // 2)
    return [text[:middle], text[middle:]] if len(text) > 1 else [text]


def _chunks(reply: ChatReply, body: Mapping[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": body["id"],
            "object": "chat.completion.chunk",
            "created": body["created"],
            "model": body["model"],
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    # Upstreams open with ``content: ""``; a reply without content or calls opens without
    # it, so the chunks reassemble to the unstreamed body exactly (``content: null``).
    opening: dict[str, Any] = {"role": "assistant"}
    if reply.content is not None or reply.tool_calls:
        opening["content"] = ""
    chunks = [chunk(opening)]
    if reply.reasoning is not None:
        chunks += [chunk({"reasoning_content": part}) for part in _pieces(reply.reasoning)]
    if reply.content:
        tokens = body["choices"][0].get("logprobs", {}).get("content")
        for index, part in enumerate(_pieces(reply.content)):
            piece = chunk({"content": part})
            if tokens is not None:  # each content chunk carries its own token's logprobs
                piece["choices"][0]["logprobs"] = {"content": [tokens[index]]}
            chunks.append(piece)
    if reply.refusal is not None:
        chunks += [chunk({"refusal": part}) for part in _pieces(reply.refusal)]
    for index, (call_id, name, arguments) in enumerate(reply.tool_calls):
        head = {"index": index, "id": call_id, "type": "function"}
        opening = {**head, "function": {"name": name, "arguments": ""}}
        chunks.append(chunk({"tool_calls": [opening]}))
        for part in _pieces(arguments):
            fragment = {"index": index, "function": {"arguments": part}}
            chunks.append(chunk({"tool_calls": [fragment]}))
    chunks.append(chunk({}, body["choices"][0]["finish_reason"]))
    if include_usage and "usage" in body:
        chunks.append({**chunk({}), "choices": [], "usage": body["usage"]})
    return chunks


@attrs.frozen
class ToolInvocation:
    """One call a :class:`RecordingToolExecutor` received."""

    name: str
    call_id: str
    arguments: JSON
    ctx: RequestContext = attrs.field(eq=False, repr=False)


ToolHandler = Callable[[JSON], JSON | Awaitable[JSON]]


class RecordingToolExecutor:
    """A :class:`~responseloop.abc.ToolExecutor` of Python callables that records each call.

    A handler takes the call's arguments and returns (or awaits to) the result; what it
    raises reaches the loop as the tool's error.

    Attributes:
        calls: every invocation, in the order the calls started.
    """

    def __init__(self) -> None:
        self._schemas: dict[str, ToolSchema] = {}
        self._handlers: dict[str, ToolHandler] = {}
        self._sub_agents: dict[str, ToolExecutor] = {}
        self.calls: list[ToolInvocation] = []

    def add(
        self,
        schema: ToolSchema | str,
        handler: ToolHandler | None = None,
        *,
        sub_agent_tools: ToolExecutor | None = None,
    ) -> None:
        """Offer tool ``schema`` (a name gives a schema with no parameters), run by
        ``handler`` (default: echo ``{"tool": name, "arguments": arguments}``). An agent
        tool's sub-agent gets ``sub_agent_tools`` (default: none)."""
        tool = ToolSchema(schema) if isinstance(schema, str) else schema
        self._schemas[tool.name] = tool
        if handler is not None:
            self._handlers[tool.name] = handler
        if sub_agent_tools is not None:
            self._sub_agents[tool.name] = sub_agent_tools

    async def tools(self, ctx: RequestContext) -> Sequence[ToolSchema]:
        return list(self._schemas.values())

    async def sub_agent_tools(self, name: str, ctx: RequestContext) -> ToolExecutor | None:
        """The tools given to agent tool ``name``'s sub-agent when it was added."""
        return self._sub_agents.get(name)

    async def execute(self, name: str, call_id: str, arguments: JSON, ctx: RequestContext) -> JSON:
        self.calls.append(ToolInvocation(name, call_id, arguments, ctx))
        if name not in self._schemas:
            raise ToolNotFound(name)
        handler = self._handlers.get(name)
        if handler is None:
            return {"tool": name, "arguments": arguments}
        result = handler(arguments)
        if inspect.isawaitable(result):
            result = await result
        return result


class RecordingEventSink:
    """An :class:`~responseloop.abc.EventSink` keeping every event in :attr:`events`."""

    def __init__(self) -> None:
        self.events: list[LoopEvent] = []

    async def emit(self, event: LoopEvent) -> None:
        self.events.append(event)

    def of_kind(self, kind: LoopEventKind) -> list[LoopEvent]:
        """The events of one kind, in order."""
        return [event for event in self.events if event.kind is kind]


class RecordingStore:
    """Wraps a :class:`~responseloop.abc.ResponseStore` and counts the calls of each method.

    It is a :class:`~responseloop.abc.ConversationStore` and an
    :class:`~responseloop.abc.ApprovalStore` too, passing those calls on when ``inner`` is
    one (else they fail as a store keeping no conversations, or no claims, does).

    Attributes:
        counts: calls per method name; ``update_step`` is counted per move, under
            ``update_step:<state>`` (e.g. ``update_step:completed``).
    """

    def __init__(self, inner: ResponseStore) -> None:
        self.inner = inner
        self.counts: collections.Counter[str] = collections.Counter()

    def reset(self) -> None:
        """Forget the counts so far."""
        self.counts.clear()

    async def create_response(self, record: ResponseRecord) -> None:
        self.counts["create_response"] += 1
        await self.inner.create_response(record)

    async def get_response(self, response_id: str) -> ResponseRecord:
        self.counts["get_response"] += 1
        return await self.inner.get_response(response_id)

    async def update_response(
        self, response_id: str, update: ResponseUpdate, *, fence: str | None = None
    ) -> None:
        self.counts["update_response"] += 1
        await self.inner.update_response(response_id, update, fence=fence)

    async def delete_response(self, response_id: str) -> None:
        self.counts["delete_response"] += 1
        await self.inner.delete_response(response_id)

    async def claim_response(self, response_id: str, claimant: str, lease_seconds: float) -> bool:
        self.counts["claim_response"] += 1
        return await self.inner.claim_response(response_id, claimant, lease_seconds)

    async def release_response(self, response_id: str, claimant: str) -> None:
        self.counts["release_response"] += 1
        await self.inner.release_response(response_id, claimant)

    async def expired_responses(self, limit: int, *, unclaimed_grace: float) -> Sequence[str]:
        self.counts["expired_responses"] += 1
        return await self.inner.expired_responses(limit, unclaimed_grace=unclaimed_grace)

    async def request_cancel(self, response_id: str) -> None:
        self.counts["request_cancel"] += 1
        await self.inner.request_cancel(response_id)

    async def cancels_requested(self, response_ids: Sequence[str]) -> Sequence[str]:
        self.counts["cancels_requested"] += 1
        return await self.inner.cancels_requested(response_ids)

    async def append_events(
        self,
        response_id: str,
        first_sequence: int,
        events: Sequence[str],
        *,
        fence: str | None = None,
    ) -> None:
        self.counts["append_events"] += 1
        await self.inner.append_events(response_id, first_sequence, events, fence=fence)

    async def list_events(
        self, response_id: str, after: int, limit: int
    ) -> Sequence[tuple[int, str]]:
        self.counts["list_events"] += 1
        return await self.inner.list_events(response_id, after, limit)

    async def record_step(
        self,
        response_id: str,
        scope: str | None,
        prev_step_id: str | None,
        step: StepDescriptor,
        *,
        fence: str | None = None,
    ) -> RecordedStep:
        self.counts["record_step"] += 1
        return await self.inner.record_step(response_id, scope, prev_step_id, step, fence=fence)

    async def update_step(
        self, response_id: str, step_id: str, update: StepUpdate, *, fence: str | None = None
    ) -> None:
        self.counts[f"update_step:{update.state.value}"] += 1
        await self.inner.update_step(response_id, step_id, update, fence=fence)

    async def list_chain(self, response_id: str, scope: str | None) -> Sequence[ChainStep]:
        self.counts["list_chain"] += 1
        return await self.inner.list_chain(response_id, scope)

    def _conversations(self, method: str) -> ConversationStore:
        self.counts[method] += 1
        if not isinstance(self.inner, ConversationStore):
            raise InvalidRequestError(
                "this server's store keeps no conversations", param="conversation"
            )
        return self.inner

    async def create_conversation(
        self, record: ConversationRecord, items: Sequence[Mapping[str, Any]]
    ) -> None:
        await self._conversations("create_conversation").create_conversation(record, items)

    async def get_conversation(self, conversation_id: str) -> ConversationRecord:
        return await self._conversations("get_conversation").get_conversation(conversation_id)

    async def update_conversation(
        self, conversation_id: str, metadata: Mapping[str, str]
    ) -> ConversationRecord:
        store = self._conversations("update_conversation")
        return await store.update_conversation(conversation_id, metadata)

    async def delete_conversation(self, conversation_id: str) -> None:
        await self._conversations("delete_conversation").delete_conversation(conversation_id)

    async def list_conversation(self, conversation_id: str) -> ConversationContents:
        return await self._conversations("list_conversation").list_conversation(conversation_id)

    async def add_conversation_items(
        self, conversation_id: str, items: Sequence[Mapping[str, Any]]
    ) -> int:
        store = self._conversations("add_conversation_items")
        return await store.add_conversation_items(conversation_id, items)

    async def begin_conversation_turn(
        self, conversation_id: str, response_id: str, *, expected_position: int
    ) -> None:
        store = self._conversations("begin_conversation_turn")
        await store.begin_conversation_turn(
            conversation_id, response_id, expected_position=expected_position
        )

    async def delete_conversation_item(self, conversation_id: str, item_id: str) -> None:
        store = self._conversations("delete_conversation_item")
        await store.delete_conversation_item(conversation_id, item_id)

    async def claim_approvals(
        self, caller: str | None, approval_request_ids: Sequence[str], response_id: str
    ) -> Mapping[str, str]:
        self.counts["claim_approvals"] += 1
        if not isinstance(self.inner, ApprovalStore):
            raise InvalidRequestError(
                "this server's store keeps no approval claims, so it runs no approved MCP calls",
                param="input",
            )
        return await self.inner.claim_approvals(caller, approval_request_ids, response_id)
