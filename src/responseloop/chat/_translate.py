"""Translation of a parsed Responses request into a Chat Completions body (DESIGN §5).

Pure: no I/O. The body is what the first model call sends; the transition adds the
conversation of later calls to it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..abc._tools import ToolSchema
from ..core._compaction import SUMMARY_PREFIX, compacted_window, summary_message
from ..core._tool_names import tool_name_clash
from ..exceptions import InvalidRequestError
from ..openresponses._mcp import answered_approvals, ran_approvals
from ..openresponses._request import InputItem, ResponsesRequest
from ..openresponses._sealing import reasoning_text

__all__ = [
    "MAX_UPSTREAM_CALL_ID",
    "chat_tool",
    "to_chat_body",
    "to_chat_messages",
    "upstream_call_id",
]

MAX_UPSTREAM_CALL_ID = 40
"""The longest tool call id sent upstream: OpenAI's Chat Completions (and Azure's) refuse
a ``tool_calls[].id`` longer than 40 characters."""


def upstream_call_id(call_id: str) -> str:
    """The id the upstream is shown for a call of the history, ``call_id`` (a client's, or
    ours: ``call_<response>_<turn>_<call>``, ``mcp_…``): as it is when it fits in
    :data:`MAX_UPSTREAM_CALL_ID`, else a digest of it that does. The upstream only needs
    the call and its answer to agree, and both go through here."""
    if len(call_id) <= MAX_UPSTREAM_CALL_ID:
        return call_id
    digest = hashlib.sha256(call_id.encode()).hexdigest()
    return f"call_{digest[: MAX_UPSTREAM_CALL_ID - 5]}"


def to_chat_body(
    request: ResponsesRequest,
    server_tools: Iterable[ToolSchema] = (),
    *,
    replay_reasoning_as: str | None = "reasoning_content",
) -> dict[str, Any]:
    """The Chat Completions body of the request's first model call.

    ``server_tools`` are the server-side tools resolved for the caller; they are offered to
    the model after the request's own function tools (only those an ``allowed_tools``
    ``tool_choice`` names, when it has one; its ``mode`` becomes the ``tool_choice``).
    ``include: ["message.output_text.logprobs"]`` or ``top_logprobs`` ask for
    ``logprobs``. Reasoning items of the conversation reach the model on the assistant
    message after them, in the field ``replay_reasoning_as`` (``None``: not at all).

    Raises:
        InvalidRequestError: a request tool has the name of a server-side tool, an
            ``item_reference`` could not be resolved, or a ``function_call_output`` answers
            no earlier ``function_call``.
    """
    return chat_body(
        request, server_tools, tools_come_later=False, replay_reasoning_as=replay_reasoning_as
    )


def chat_body(
    request: ResponsesRequest,
    server_tools: Iterable[ToolSchema],
    *,
    tools_come_later: bool,
    replay_reasoning_as: str | None = "reasoning_content",
) -> dict[str, Any]:
    """:func:`to_chat_body`; with ``tools_come_later`` the tool settings are kept even when
    no tool is offered yet, for a transition that adds the scope's tools to each call."""
    server = {tool.name: tool for tool in server_tools}
    clash = tool_name_clash([str(tool["name"]) for tool in request.tools], server)
    if clash is not None:
        raise clash
    body: dict[str, Any] = {
        "model": request.model,
        "messages": to_chat_messages(request, replay_reasoning_as=replay_reasoning_as),
    }
    allowed = request.allowed_tool_names
    tools = [chat_tool(tool) for tool in request.tools]
    tools += [tool._chat_tool for tool in server.values()]
    if allowed is not None and not tools_come_later:
        # The model is offered only the allowed subset (the transition narrows its own
        # calls the same way, so it keeps every tool here to name tools[i] in refusals).
        tools = [tool for tool in tools if tool["function"]["name"] in allowed]
    if tools:
        body["tools"] = tools
    if request.tool_choice is not None:
        body["tool_choice"] = _chat_tool_choice(request.tool_choice)
    if request.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = request.parallel_tool_calls
    if not tools and not tools_come_later:
        # Chat Completions rejects these without tools; the answer is the same without them.
        body.pop("tool_choice", None)
        body.pop("parallel_tool_calls", None)
    if request.max_output_tokens is not None:
        body["max_completion_tokens"] = request.max_output_tokens
    for field in (
        "temperature",
        "top_p",
        "presence_penalty",
        "frequency_penalty",
        "seed",
        "user",
        "safety_identifier",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
    ):
        value = getattr(request, field)
        if value is not None:
            body[field] = value
    if request.wants_logprobs:
        body["logprobs"] = True
    if request.top_logprobs is not None:
        body["logprobs"] = True  # chat only honours top_logprobs together with logprobs
        body["top_logprobs"] = request.top_logprobs
    text = request.text or {}
    if "format" in text:
        body["response_format"] = _response_format(text["format"])
    if "verbosity" in text:
        body["verbosity"] = text["verbosity"]
    effort = (request.reasoning or {}).get("effort")
    if effort is not None:
        body["reasoning_effort"] = effort
    if request.stream:
        body["stream"] = True
        # Without it a streamed upstream reports no usage, and the Response's usage is wrong.
        body["stream_options"] = {"include_usage": True}
    return body


def chat_tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    """A Responses function tool (``{"type": "function", "name", ...}``) in chat shape."""
    function: dict[str, Any] = {"name": tool["name"]}
    for field in ("description", "parameters", "strict"):
        if field in tool:
            function[field] = tool[field]
    return {"type": "function", "function": function}


def _chat_tool_choice(choice: str | Mapping[str, Any]) -> str | dict[str, Any]:
    if isinstance(choice, str):
        return choice
    if choice["type"] == "allowed_tools":
        # The subset is enforced by offering only it; the mode is the chat tool_choice.
        return str(choice["mode"])
    if choice["type"] == "mcp" and "name" not in choice:
        return "required"  # any tool of that server: the nearest chat has is any tool
    return {"type": "function", "function": {"name": choice["name"]}}


def _response_format(fmt: Mapping[str, Any]) -> dict[str, Any]:
    if fmt["type"] != "json_schema":
        return {"type": fmt["type"]}
    schema: dict[str, Any] = {"name": fmt["name"], "schema": dict(fmt["schema"])}
    for field in ("description", "strict"):
        if field in fmt:
            schema[field] = fmt[field]
    return {"type": "json_schema", "json_schema": schema}


def to_chat_messages(
    request: ResponsesRequest, *, replay_reasoning_as: str | None = "reasoning_content"
) -> list[dict[str, Any]]:
    """The chat messages of the request: ``instructions`` as the first system message,
    then every item of its conversation (history, then input). A reasoning item's text
    (see :func:`~responseloop.openresponses.open_reasoning_items` for sealed ones) goes on
    the assistant message that follows it, in the field ``replay_reasoning_as``; one that
    no assistant message follows is dropped (chat has no place for it).

    Raises:
        InvalidRequestError: see :func:`to_chat_body`.
    """
    messages: list[dict[str, Any]] = []
    if request.instructions:
        messages.append({"role": "system", "content": request.instructions})
    # The message the next function_call may join: an assistant message directly before.
    open_assistant: dict[str, Any] | None = None
    called: set[str] = set()
    # Images of tool outputs, shown in one user message once the tool messages of the
    # turn are all given (nothing may come between an assistant's calls and their outputs).
    images: list[dict[str, Any]] = []
    reasoning: list[str] = []  # reasoning items not yet placed on an assistant message
    compacted_at: int | None = None  # where the last compaction's summary stands
    conversation = request.conversation
    approvals = answered_approvals(conversation)
    ran_approved = ran_approvals(conversation)

    def place_reasoning(message: dict[str, Any]) -> None:
        if reasoning and replay_reasoning_as is not None:
            message.setdefault(replay_reasoning_as, "\n\n".join(reasoning))
        reasoning.clear()

    for index, item in enumerate(conversation):
        kind = item["type"]
        if images and kind not in ("function_call_output", "custom_tool_call_output"):
            messages.append({"role": "user", "content": images})
            images = []
        if kind == "message":
            message = _chat_message(item)
            messages.append(message)
            open_assistant = message if message["role"] == "assistant" else None
            if open_assistant is not None:
                place_reasoning(open_assistant)
            else:
                reasoning.clear()
        elif kind in ("function_call", "custom_tool_call"):
            # A custom tool is a function of one string argument upstream; a namespaced
            # call goes by the joined name the upstream was offered.
            arguments = (
                item["arguments"]
                if kind == "function_call"
                else compact_json({"input": item["input"]})
            )
            name = request.upstream_name(item["name"], item.get("namespace"))
            call = {
                "id": upstream_call_id(item["call_id"]),
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
            if open_assistant is None:
                open_assistant = {"role": "assistant", "content": None}
                messages.append(open_assistant)
            place_reasoning(open_assistant)
            open_assistant.setdefault("tool_calls", []).append(call)
            called.add(item["call_id"])
        elif kind in ("function_call_output", "custom_tool_call_output"):
            if item["call_id"] not in called:
                raise InvalidRequestError(
                    f"no tool call with call_id {item['call_id']!r} comes before this "
                    "output (continue the response with previous_response_id, or send the "
                    "function_call item too)",
                    param=f"{request.input_param(index)}.call_id",
                )
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": upstream_call_id(item["call_id"]),
                    "content": _tool_content(item["output"]),
                }
            )
            if not isinstance(item["output"], str):
                images += [_chat_part(p) for p in item["output"] if p["type"] == "input_image"]
            open_assistant = None
            reasoning.clear()
        elif kind == "reasoning":
            text = reasoning_text(item)
            if text:
                reasoning.append(text)
        elif kind == "mcp_call" or (
            kind == "mcp_approval_request" and item["id"] not in ran_approved
        ):
            # A call the server ran, sent back: the model sees it as it did when it ran,
            # its call then its result (the item's id stands for the lost call id). A call
            # that waited for approval: the call, then what came of the approval (its
            # result, which the approved call's step puts here before the next model call;
            # the refusal; or that nobody approved it).
            call = {
                "id": upstream_call_id(item["id"]),
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            if open_assistant is None:
                open_assistant = {"role": "assistant", "content": None}
                messages.append(open_assistant)
            place_reasoning(open_assistant)
            open_assistant.setdefault("tool_calls", []).append(call)
            outcome = (
                _mcp_output(item)
                if kind == "mcp_call"
                else _approval_outcome(approvals.get(item["id"]))
            )
            messages.append(
                {"role": "tool", "tool_call_id": upstream_call_id(item["id"]), "content": outcome}
            )
            open_assistant = None
        elif kind == "compaction":
            # The conversation it compacted, as its summary (opened by
            # open_compaction_items); a compaction ends any assistant turn before it.
            if not isinstance(item.get("summary"), str):
                raise InvalidRequestError(
                    "a compaction item must be opened before it is translated "
                    "(open_compaction_items)",
                    param=f"{request.input_param(index)}.encrypted_content",
                )
            compacted_at = len(messages)
            messages.append(summary_message(item["summary"]))
            open_assistant = None
            reasoning.clear()
        elif kind == "item_reference":
            raise InvalidRequestError(
                f"item_reference {item['id']!r} matches no item of the previous response",
                param=f"{request.input_param(index)}.id",
            )
        # A reasoning item does not close an assistant message, so calls after it still
        # join the message before it.
        # The tools of additional_tools items are offered with the request's (parse_request
        # adds them).
    if images:
        messages.append({"role": "user", "content": images})
    if compacted_at is not None:
        # What the last compaction summarised is gone from what the model is shown, as
        # inside a response: instructions and the user's messages stay, then the summary.
        before = messages[:compacted_at]
        summary = messages[compacted_at]["content"].removeprefix(SUMMARY_PREFIX)
        messages = compacted_window(before, summary) + messages[compacted_at + 1 :]
    return messages


def _chat_message(item: InputItem) -> dict[str, Any]:
    role = item["role"]
    parts: Sequence[Mapping[str, Any]] = item["content"]
    message: dict[str, Any] = {"role": role}
    if role == "assistant":
        texts = [p["text"] for p in parts if p["type"] in ("input_text", "output_text")]
        refusals = [p["refusal"] for p in parts if p["type"] == "refusal"]
        message["content"] = "".join(texts) if texts or not refusals else None
        if refusals:
            message["refusal"] = "".join(refusals)
        return message
    if all(p["type"] in ("input_text", "output_text", "refusal") for p in parts):
        message["content"] = "".join(_part_text(p) for p in parts)
        return message
    message["content"] = [_chat_part(p) for p in parts]
    return message


def _part_text(part: Mapping[str, Any]) -> str:
    return str(part["refusal"] if part["type"] == "refusal" else part["text"])


def _chat_part(part: Mapping[str, Any]) -> dict[str, Any]:
    kind = part["type"]
    if kind == "input_image":
        image: dict[str, Any] = {"url": part["image_url"]}
        if "detail" in part:
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        file = {key: part[key] for key in ("file_id", "filename", "file_data") if key in part}
        return {"type": "file", "file": file}
    return {"type": "text", "text": _part_text(part)}


def _approval_outcome(answer: Mapping[str, Any] | None) -> str:
    """What the model is told of a call that waited for approval, until it runs."""
    if answer is None:
        return compact_json({"error": "the call needed the user's approval and was not run"})
    if answer["approve"] is not True:
        refusal: dict[str, Any] = {"error": "the user refused this call"}
        if answer.get("reason"):
            refusal["reason"] = answer["reason"]
        return compact_json(refusal)
    return compact_json({"error": "the approved call did not run"})


def _mcp_output(item: InputItem) -> str:
    output = item.get("output")
    if isinstance(output, str):
        return output
    error = item.get("error")
    if error is None:
        return ""
    return error if isinstance(error, str) else compact_json(error)


def _tool_content(output: str | Sequence[Mapping[str, Any]]) -> str:
    if isinstance(output, str):
        return output
    text = "".join(str(part["text"]) for part in output if part["type"] == "input_text")
    if not text and output:
        return "(the image is in the next message)"
    return text


def compact_json(value: object) -> str:
    """``value`` as compact JSON text (how arguments and outputs travel as strings)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
