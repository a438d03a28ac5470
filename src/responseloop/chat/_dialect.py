"""The Chat Completions dialect: how a ``chat.completion`` reply is validated, how its
stream is reassembled, and what its payload says. Pure: no I/O.

This is the :class:`~responseloop.abc.UpstreamDialect` the loop and the Responses assembly
use by default (:data:`CHAT_COMPLETIONS`). A model step's payload is the
``chat.completion`` body, unstreamed or reassembled from its chunks.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any

from ..abc._dialect import ModelTurn, StreamDelta, ToolCallDelta
from ..abc._http import HttpResponse, ServerSentEvent
from ..abc._json import JSON, parse_json
from ..abc._known_texts import remember_text
from ..exceptions import UpstreamProtocolError
from ._stream import ChatStreamAssembler
from ._transition import first_choice, model_message, tool_calls_of

__all__ = ["CHAT_COMPLETIONS", "ChatCompletionsDialect", "ChatStreamReassembler"]

# Chat's finish reasons that end a turn short, in the Responses API's words.
_INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


def require_message(completion: JSON) -> JSON:
    """``completion`` itself, once it is known to be a chat.completion with a message: an
    empty ``choices`` would otherwise complete the response with an empty answer.

    Raises:
        UpstreamProtocolError: there is no ``choices[0].message``.
    """
    if not isinstance(first_choice(completion).get("message"), Mapping):
        raise UpstreamProtocolError("the model's reply has no choices[0].message")
    return completion


class ChatStreamReassembler:
    """A :class:`~responseloop.abc.StreamReassembler` of one chat-completions stream, over
    :class:`~responseloop.chat.ChatStreamAssembler`."""

    def __init__(self) -> None:
        self._assembler = ChatStreamAssembler()

    @property
    def done(self) -> bool:
        """Whether the ``[DONE]`` event has been seen."""
        return self._assembler.done

    def feed(self, event: ServerSentEvent) -> JSON | None:
        """Take one event; returns its parsed chunk (``None`` for ``[DONE]``).

        Raises:
            UpstreamProtocolError: an ``error`` event, or a ``message`` event whose data is
                not a valid chunk or follows ``[DONE]``.
        """
        if event.event == "error":
            raise UpstreamProtocolError("the upstream sent an error event mid-stream")
        if event.event == "message":
            return self._assembler.add_data(event.data)
        # A named event is no part of a chat completion; what JSON it carries is handed on
        # as it always was, and the event mapper finds no delta in it.
        try:
            return event.json()
        except ValueError:
            return None

    def result(self) -> JSON:
        """The reassembled ``chat.completion``.

        Raises:
            UpstreamProtocolError: the stream ended before its last event, had no chunk, or
                has no ``choices[0].message``.
        """
        return require_message(self._assembler.result())


class ChatCompletionsDialect:
    """The :class:`~responseloop.abc.UpstreamDialect` of an OpenAI-compatible
    ``/chat/completions`` upstream (vLLM, SGLang, llama.cpp, Ollama, OpenAI, Azure…).

    Use the instance :data:`CHAT_COMPLETIONS`; the class holds no state.
    """

    def __repr__(self) -> str:
        return "CHAT_COMPLETIONS"

    def model_reply(self, response: HttpResponse) -> JSON:
        """The ``chat.completion`` of an unstreamed reply.

        Raises:
            UpstreamProtocolError: the body is not JSON, or has no ``choices[0].message``.
        """
        content = response.content
        text: str | None = None
        if json.detect_encoding(content) == "utf-8":  # not UTF-16 or -32, nor a BOM
            # Encoded surrogates fail here and json.loads lets them through: no text noted.
            with contextlib.suppress(UnicodeDecodeError):
                text = content.decode("utf-8")
        try:
            completion = parse_json(content if text is None else text)
        except ValueError as exc:
            raise UpstreamProtocolError(f"the model's reply is not JSON: {exc}") from exc
        completion = require_message(completion)
        if text is not None and type(completion) is dict:
            remember_text(completion, text)  # the store keeps the reply's own text
        return completion

    def stream_reassembler(self) -> ChatStreamReassembler:
        """A fresh reassembler of one chat-completions stream."""
        return ChatStreamReassembler()

    def turn(self, payload: JSON) -> ModelTurn:
        """What the ``chat.completion`` ``payload`` says (its first choice)."""
        message = model_message(payload)
        finish = first_choice(payload).get("finish_reason")
        usage = payload.get("usage") if isinstance(payload, Mapping) else None
        refusal = message.get("refusal")
        return ModelTurn(
            text=_text_of(message.get("content")),
            refusal=refusal if isinstance(refusal, str) else "",
            reasoning=_reasoning_text(message),
            tool_calls=tool_calls_of(payload),
            incomplete_reason=_INCOMPLETE_REASONS.get(finish) if isinstance(finish, str) else None,
            usage=usage if isinstance(usage, Mapping) else None,
            logprobs=_text_logprobs(first_choice(payload)),
        )

    def stream_delta(self, chunk: JSON) -> StreamDelta:
        """What the ``delta`` of the first choice of a ``chat.completion.chunk`` adds
        (usage-only chunks add nothing)."""
        choice = _first_chunk_choice(chunk)
        delta = choice.get("delta") if choice is not None else None
        if choice is None or not isinstance(delta, Mapping):
            return StreamDelta()
        calls = delta.get("tool_calls")
        return StreamDelta(
            reasoning=_reasoning_text(delta),
            text=_text_field(delta, "content"),
            refusal=_text_field(delta, "refusal"),
            tool_calls=[
                _call_delta(call)
                for call in (calls if isinstance(calls, list) else [])
                if isinstance(call, Mapping)
            ],
            logprobs=_text_logprobs(choice),
        )

    def told_tool_outputs(self, request: Mapping[str, Any]) -> dict[str, str]:
        """The ``tool`` messages of a chat request, by ``tool_call_id``."""
        messages = request.get("messages")
        told: dict[str, str] = {}
        for message in messages if isinstance(messages, list) else []:
            if isinstance(message, Mapping) and message.get("role") == "tool":
                content = message.get("content")
                if isinstance(content, str):
                    told[str(message.get("tool_call_id"))] = content
        return told


CHAT_COMPLETIONS = ChatCompletionsDialect()
"""The Chat Completions dialect: the default of the loop and of the Responses assembly."""


def _text_of(content: object) -> str:
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, Mapping) and part.get("type") in ("text", "output_text")
        )
    return content if isinstance(content, str) else ""


def _reasoning_text(message: Mapping[str, Any]) -> str:
    for field in ("reasoning_content", "reasoning"):
        value = message.get(field)
        if isinstance(value, str) and value:
            return value
    return ""


def _first_chunk_choice(chunk: JSON) -> Mapping[str, Any] | None:
    choices = chunk.get("choices") if isinstance(chunk, Mapping) else None
    for choice in choices if isinstance(choices, list) else []:
        if isinstance(choice, Mapping) and choice.get("index", 0) == 0:
            return choice
    return None


def _text_logprobs(choice: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The logprobs of a chat choice's text tokens (``logprobs.content``) in the Responses
    shape. Chat allows ``bytes: null``; the Responses ``Logprob`` requires the bytes, so
    they are the token's UTF-8 then. Entries that are not logprobs are skipped."""
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, Mapping) else None
    result: list[dict[str, Any]] = []
    for entry in content if isinstance(content, list) else []:
        token = _token_logprob(entry)
        if token is None:
            continue
        tops = entry.get("top_logprobs")
        top_list = tops if isinstance(tops, list) else []
        token["top_logprobs"] = [t for t in map(_token_logprob, top_list) if t is not None]
        result.append(token)
    return result


def _token_logprob(entry: object) -> dict[str, Any] | None:
    if not isinstance(entry, Mapping):
        return None
    token, logprob = entry.get("token"), entry.get("logprob")
    if not isinstance(token, str) or isinstance(logprob, bool):
        return None
    if not isinstance(logprob, int | float):
        return None
    raw = entry.get("bytes")
    if isinstance(raw, list) and all(isinstance(b, int) and not isinstance(b, bool) for b in raw):
        data = list(raw)
    else:
        data = list(token.encode("utf-8"))
    return {"token": token, "logprob": float(logprob), "bytes": data}


def _text_field(delta: Mapping[str, Any], field: str) -> str:
    value = delta.get(field)
    return value if isinstance(value, str) else ""


def _call_delta(call: Mapping[str, Any]) -> ToolCallDelta:
    index = call.get("index")
    function = call.get("function")
    function = function if isinstance(function, Mapping) else {}
    name = function.get("name")
    arguments = function.get("arguments")
    call_id = call.get("id")
    return ToolCallDelta(
        index=index if isinstance(index, int) else None,
        call_id=call_id if isinstance(call_id, str) else None,
        name=name if isinstance(name, str) and name else None,
        arguments=arguments if isinstance(arguments, str) else "",
    )
