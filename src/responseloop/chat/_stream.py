"""Reassembly of a streamed chat completion into the body the unstreamed call returns.

Pure: chunks in, one ``chat.completion`` dict out, no I/O. :class:`ChatStreamAssembler`
takes the stream's ``data`` payloads one at a time (so the client can hand each event on as
it arrives), and :func:`assemble_chat_completion` is the one-shot form.

The rules, per choice ``index``:

* ``content``, ``refusal``, ``reasoning_content`` and ``reasoning`` are the concatenation
  of their deltas; a key appears in the message only if some delta carried it. An empty
  ``content`` next to tool calls becomes ``null``, as in the unstreamed body: upstreams
  (vLLM, SGLang) open every stream with ``content: ""`` even when the reply is only calls.
* ``tool_calls`` are merged by their ``index``: ``id`` and ``type`` from the first delta that
  has them, ``function.name`` and ``function.arguments`` concatenated (as the official SDK's
  own accumulator does), listed in index order.
* ``finish_reason`` is the last one sent; ``logprobs`` (present when the chunks carry the
  key) has its token lists concatenated.

At the top level, ``id``, ``created``, ``model``, ``system_fingerprint`` and ``service_tier``
keep the last value sent, and ``usage`` is the last usage chunk's (``stream_options:
{"include_usage": true}`` sends it after the finish, with an empty ``choices``).

Anything that is not a chat-completion chunk raises :class:`UpstreamProtocolError`, and so
does :meth:`ChatStreamAssembler.result` for a stream that ended before its last event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ..abc._json import JSON, parse_json
from ..exceptions import UpstreamProtocolError

__all__ = ["DONE", "ChatStreamAssembler", "assemble_chat_completion"]

DONE = "[DONE]"
"""The ``data`` of the event that ends a chat-completions stream."""

_TEXT_FIELDS = ("content", "refusal", "reasoning_content", "reasoning")
_TOP_LEVEL = ("id", "created", "model", "system_fingerprint", "service_tier")


@attrs.define
class _ToolCall:
    index: int
    id: str | None = None
    type: str | None = None
    name: list[str] = attrs.Factory(list)
    arguments: list[str] = attrs.Factory(list)

    def add(self, delta: Mapping[str, Any]) -> None:
        if self.id is None and delta.get("id"):
            self.id = _string(delta["id"], "tool_calls[].id")
        if self.type is None and delta.get("type"):
            self.type = _string(delta["type"], "tool_calls[].type")
        function = delta.get("function")
        if function is None:
            return
        if not isinstance(function, Mapping):
            raise UpstreamProtocolError("a tool call delta's function is not an object")
        if function.get("name") is not None:
            self.name.append(_string(function["name"], "tool_calls[].function.name"))
        if function.get("arguments") is not None:
            self.arguments.append(_string(function["arguments"], "tool_calls[].function.arguments"))

    def build(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type or "function",
            "function": {"name": "".join(self.name), "arguments": "".join(self.arguments)},
        }


@attrs.define
class _Choice:
    index: int
    role: str | None = None
    texts: dict[str, list[str]] = attrs.Factory(dict)
    tool_calls: dict[int, _ToolCall] = attrs.Factory(dict)
    finish_reason: str | None = None
    logprobs: dict[str, list[Any]] | None = None
    has_logprobs: bool = False

    def add(self, choice: Mapping[str, Any]) -> None:
        delta = choice.get("delta")
        if delta is None:
            delta = {}
        if not isinstance(delta, Mapping):
            raise UpstreamProtocolError("a choice's delta is not an object")
        if self.role is None and delta.get("role"):
            self.role = _string(delta["role"], "delta.role")
        for field in _TEXT_FIELDS:
            value = delta.get(field)
            if value is not None:
                self.texts.setdefault(field, []).append(_string(value, f"delta.{field}"))
        calls = delta.get("tool_calls")
        if calls is not None:
            if not isinstance(calls, list):
                raise UpstreamProtocolError("delta.tool_calls is not a list")
            for call in calls:
                index = call.get("index") if isinstance(call, Mapping) else None
                if not isinstance(index, int) or isinstance(index, bool) or index < 0:
                    raise UpstreamProtocolError("a tool call delta has no valid index")
                self.tool_calls.setdefault(index, _ToolCall(index)).add(call)
        finish = choice.get("finish_reason")
        if finish is not None:
            self.finish_reason = _string(finish, "finish_reason")
        if "logprobs" in choice:
            self.has_logprobs = True
            self._add_logprobs(choice["logprobs"])

    def _add_logprobs(self, logprobs: object) -> None:
        if logprobs is None:
            return
        if not isinstance(logprobs, Mapping):
            raise UpstreamProtocolError("a choice's logprobs is not an object")
        merged = self.logprobs if self.logprobs is not None else {}
        for key, value in logprobs.items():
            if isinstance(value, list):
                merged.setdefault(key, []).extend(value)
        self.logprobs = merged

    def build(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": self.role or "assistant"}
        content = "".join(self.texts["content"]) if "content" in self.texts else None
        if content == "" and self.tool_calls:
            content = None
        message["content"] = content
        for field in _TEXT_FIELDS[1:]:
            if field in self.texts:
                message[field] = "".join(self.texts[field])
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i].build() for i in sorted(self.tool_calls)]
        built = {"index": self.index, "message": message, "finish_reason": self.finish_reason}
        if self.has_logprobs:
            built["logprobs"] = self.logprobs
        return built


def _string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise UpstreamProtocolError(f"{where} in a stream chunk is not a string")
    return value


class ChatStreamAssembler:
    """Rebuilds one chat.completion from the ``data`` of its stream's events, in order.

    Feed each event with :meth:`add_data` (or parsed chunks with :meth:`add_chunk`), then
    call :meth:`result`. Once :attr:`done` is true the stream has said its last word.
    """

    def __init__(self) -> None:
        self._top: dict[str, Any] = {}
        self._choices: dict[int, _Choice] = {}
        self._usage: JSON = None
        self._chunks = 0
        self.done = False
        """Whether the ``[DONE]`` event has been seen."""

    def add_data(self, data: str) -> JSON:
        """Take the ``data`` of one event; returns the parsed chunk (``None`` for ``[DONE]``).

        Raises:
            UpstreamProtocolError: the data is not JSON, not a chunk, an in-band error, or
                follows ``[DONE]``.
        """
        if self.done:
            raise UpstreamProtocolError("the stream went on after [DONE]")
        if data.strip() == DONE:
            self.done = True
            return None
        try:
            chunk = parse_json(data)
        except ValueError as exc:
            raise UpstreamProtocolError(f"a stream event is not JSON: {exc}") from None
        self.add_chunk(chunk)
        return chunk

    def add_chunk(self, chunk: JSON) -> None:
        """Take one parsed ``chat.completion.chunk``."""
        if not isinstance(chunk, Mapping):
            raise UpstreamProtocolError("a stream chunk is not a JSON object")
        if "error" in chunk:
            raise UpstreamProtocolError(_describe_error(chunk["error"]))
        if chunk.get("object") == "":
            # Azure's asynchronous content filter interleaves annotation-only chunks with
            # an empty object type; they carry nothing of the message (the SDK skips them).
            return
        self._chunks += 1
        for key in _TOP_LEVEL:
            if chunk.get(key) is not None:
                self._top[key] = chunk[key]
        if chunk.get("usage") is not None:
            if not isinstance(chunk["usage"], Mapping):
                raise UpstreamProtocolError("a stream chunk's usage is not an object")
            self._usage = dict(chunk["usage"])
        choices = chunk.get("choices")
        if choices is None:
            choices = []
        if not isinstance(choices, list):
            raise UpstreamProtocolError("a stream chunk's choices is not a list")
        for choice in choices:
            index = choice.get("index", 0) if isinstance(choice, Mapping) else None
            if not isinstance(index, int) or isinstance(index, bool) or index < 0:
                raise UpstreamProtocolError("a stream chunk has a choice without a valid index")
            assert isinstance(choice, Mapping)
            self._choices.setdefault(index, _Choice(index)).add(choice)

    @property
    def finished(self) -> bool:
        """Whether the stream may end here: ``[DONE]`` was seen, or every choice finished."""
        if self.done:
            return True
        return bool(self._choices) and all(
            choice.finish_reason is not None for choice in self._choices.values()
        )

    def result(self) -> dict[str, Any]:
        """The reassembled ``chat.completion``.

        Raises:
            UpstreamProtocolError: the stream ended before its last event, or had no chunk.
        """
        if self._chunks == 0:
            raise UpstreamProtocolError("the stream carried no chat-completion chunk")
        if not self.finished:
            raise UpstreamProtocolError(
                "the stream ended before [DONE] with a choice still unfinished"
            )
        body: dict[str, Any] = {
            "id": self._top.get("id"),
            "object": "chat.completion",
            "created": self._top.get("created"),
            "model": self._top.get("model"),
            "choices": [self._choices[i].build() for i in sorted(self._choices)],
        }
        for key in ("system_fingerprint", "service_tier"):
            if key in self._top:
                body[key] = self._top[key]
        if self._usage is not None:
            body["usage"] = self._usage
        return body


def _describe_error(error: object) -> str:
    # Only the provider's stable identifiers go in the message: the text may echo the
    # prompt or a key, and error messages are persisted on the step.
    if isinstance(error, Mapping):
        parts = [
            f"{key}={error[key]}" for key in ("type", "code") if isinstance(error.get(key), str)
        ]
        if parts:
            return "the upstream reported an error mid-stream (" + ", ".join(parts) + ")"
    return "the upstream reported an error mid-stream"


def assemble_chat_completion(chunks: Iterable[JSON]) -> dict[str, Any]:
    """The chat.completion that ``chunks`` (parsed ``chat.completion.chunk`` objects, in
    order, without the final ``[DONE]``) add up to.

    Raises:
        UpstreamProtocolError: a chunk is malformed, or the chunks stop before every
            choice has its finish reason.
    """
    assembler = ChatStreamAssembler()
    for chunk in chunks:
        assembler.add_chunk(chunk)
    return assembler.result()
