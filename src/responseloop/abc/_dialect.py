"""The upstream dialect seam: what the loop and the Responses assembly need to know of the
format an upstream speaks, and the dialect-neutral values they read it into.

The :class:`~responseloop.abc.HttpClient` moves bytes and server-sent events and knows no
format; a model step's payload is stored exactly as the dialect returns it, and everything
that reads one back (the Responses assembly and the stream event mapper) asks the dialect
what it says. The Chat Completions dialect is :data:`responseloop.chat.CHAT_COMPLETIONS`.
Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import attrs

from ._http import HttpResponse, ServerSentEvent
from ._json import JSON

__all__ = [
    "ModelTurn",
    "StreamDelta",
    "StreamReassembler",
    "ToolCall",
    "ToolCallDelta",
    "UpstreamDialect",
]


@attrs.frozen
class ToolCall:
    """One tool call the model asked for: its ``call_id``, tool ``name`` and raw ``arguments``."""

    call_id: str
    name: str
    arguments: str

    def parsed_arguments(self) -> JSON:
        """The arguments as JSON; text that is not JSON is passed on as the raw string, so
        the tool's own validation reports it (instead of silently running with ``{}``)."""
        if not self.arguments.strip():
            return {}
        try:
            return json.loads(self.arguments)
        except ValueError:
            return self.arguments


def _calls(value: Iterable[ToolCall]) -> tuple[ToolCall, ...]:
    return tuple(value)


def _logprobs(value: Iterable[Mapping[str, Any]]) -> tuple[Mapping[str, Any], ...]:
    return tuple(value)


@attrs.frozen
class ModelTurn:
    """What one completed model call said, whatever the dialect it was said in.

    Attributes:
        text: the answer's text (``""`` for none).
        refusal: the model's refusal (``""`` for none).
        reasoning: the reasoning it showed (``""`` for none).
        tool_calls: the tool calls it asked for, in its order.
        incomplete_reason: why it stopped short, in the Responses API's words
            (``"max_output_tokens"`` or ``"content_filter"``); ``None`` when it finished.
        usage: its token usage in Chat Completions' (``prompt_tokens``…) or the Responses
            API's (``input_tokens``…) spelling, or ``None`` when it reported none.
        logprobs: the logprobs of the answer's text tokens, in order, each in the Responses
            API's shape (``{"token", "logprob", "bytes", "top_logprobs": [...]}``); empty
            when the upstream sent none.
    """

    text: str = ""
    refusal: str = ""
    reasoning: str = ""
    tool_calls: Sequence[ToolCall] = attrs.field(default=(), converter=_calls)
    incomplete_reason: str | None = None
    usage: Mapping[str, Any] | None = None
    logprobs: Sequence[Mapping[str, Any]] = attrs.field(default=(), converter=_logprobs)


@attrs.frozen
class ToolCallDelta:
    """A piece of one tool call of a streamed model call.

    Attributes:
        index: which call of the turn it belongs to (the pieces of one call share it);
            ``None`` when the upstream did not say, which makes it a call of its own.
        call_id: the call's id, once the upstream sends it.
        name: the tool's name, once the upstream sends it (never empty).
        arguments: the next fragment of the call's arguments (``""`` for none).
    """

    index: int | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str = ""


def _deltas(value: Iterable[ToolCallDelta]) -> tuple[ToolCallDelta, ...]:
    return tuple(value)


@attrs.frozen
class StreamDelta:
    """What one event of a streamed model call adds to the turn: the next piece of each
    text (``""`` for none) and of each tool call, and the logprobs of the text's tokens
    it adds (shaped as :attr:`ModelTurn.logprobs`). An event that adds nothing (a usage
    report, a keep-alive) is the empty delta."""

    reasoning: str = ""
    text: str = ""
    refusal: str = ""
    tool_calls: Sequence[ToolCallDelta] = attrs.field(default=(), converter=_deltas)
    logprobs: Sequence[Mapping[str, Any]] = attrs.field(default=(), converter=_logprobs)


class StreamReassembler(Protocol):
    """Protocol: rebuilds the payload of one streamed model call from its server-sent
    events, fed in order as they arrive."""

    @property
    def done(self) -> bool:
        """Whether the stream has said its last word (Chat Completions' ``[DONE]``): the
        loop then tells the :class:`~responseloop.abc.HttpClient` to stop reading."""
        ...

    def feed(self, event: ServerSentEvent) -> JSON | None:
        """Take the next event; returns what the loop hands on as a ``MODEL_CHUNK`` event
        (the parsed chunk), or ``None`` for an event that carries none (the end marker).

        Raises:
            UpstreamProtocolError: the event is malformed, an in-band error, or follows
                the end of the stream.
        """
        ...

    def result(self) -> JSON:
        """The model step's payload, the same one :meth:`UpstreamDialect.model_reply` gives
        for the unstreamed call.

        Raises:
            UpstreamProtocolError: the stream ended before its last event, or its reply
                holds no answer.
        """
        ...


class UpstreamDialect(Protocol):
    """Protocol: the format an upstream speaks, for the loop and the Responses assembly.

    The loop validates each model call's reply with it (:meth:`model_reply`, or a
    :meth:`stream_reassembler` for a streamed call) and stores what it returns as the
    model step's payload; the assembly and the stream event mapper read that payload back
    through :meth:`turn`, :meth:`stream_delta` and :meth:`told_tool_outputs`. Building
    the requests is the :class:`~responseloop.abc.Transition`'s part. The default is
    :data:`responseloop.chat.CHAT_COMPLETIONS`; see "Adding an upstream dialect" in the
    concepts guide.
    """

    def model_reply(self, response: HttpResponse) -> JSON:
        """The model step's payload for the upstream's 2xx reply to an unstreamed call.

        Raises:
            UpstreamProtocolError: the reply is not what the dialect answers with (not
                JSON, or without an answer).
        """
        ...

    def stream_reassembler(self) -> StreamReassembler:
        """A fresh reassembler for one streamed call."""
        ...

    def turn(self, payload: JSON) -> ModelTurn:
        """What the completed model step whose payload is ``payload`` said."""
        ...

    def stream_delta(self, chunk: JSON) -> StreamDelta:
        """What ``chunk`` (a ``MODEL_CHUNK`` event's data) adds to its model call."""
        ...

    def told_tool_outputs(self, request: Mapping[str, Any]) -> Mapping[str, str]:
        """What the model call whose request payload is ``request`` told the model each
        earlier tool call returned, by ``call_id`` (the last answer under an id wins)."""
        ...
