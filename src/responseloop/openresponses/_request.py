"""Parsing and validation of a ``POST /v1/responses`` body into a frozen value.

Every field the Open Responses spec defines and the loop understands is checked here,
once; a bad body raises :class:`~responseloop.exceptions.InvalidRequestError` whose ``param`` names
the offending field the way OpenAI does (``input[2].call_id``, ``tools[0].name``,
``temperature``). Fields we do not understand are ignored, so newer clients keep working.
Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeAlias

import attrs

from ..exceptions import InvalidRequestError

__all__ = ["InputItem", "ResponsesRequest", "ToolChoice", "parse_request"]

InputItem: TypeAlias = Mapping[str, Any]
"""One validated input item, normalised: it always has a ``type``, and message content
is always a list of parts."""

ToolChoice: TypeAlias = str | Mapping[str, Any]
"""``"auto"``, ``"none"``, ``"required"``, ``{"type": "function", "name": ...}`` or
``{"type": "allowed_tools", "mode": ..., "tools": [{"type": "function", "name": ...}]}``."""

_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_MESSAGE_ROLES = frozenset({"user", "assistant", "system", "developer"})
_TEXT_PART_TYPES = frozenset({"input_text", "output_text"})
_PART_TYPES = frozenset({"input_text", "output_text", "refusal", "input_image", "input_file"})
_ITEM_TYPES = (
    "message",
    "function_call",
    "function_call_output",
    "reasoning",
    "mcp_call",
    "item_reference",
)
_REASONING_EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh", "max"})
_SERVICE_TIERS = frozenset({"auto", "default", "flex", "scale", "priority", "fast", "ultrafast"})
_UNSUPPORTED_FIELDS = {
    "conversation": "use previous_response_id to continue a conversation",
    "prompt": "send the prompt's text as instructions and input",
    "context_management": "compaction is not implemented; the conversation is sent whole",
    "moderation": "no moderation model runs here; moderate before or after the call",
    "prompt_cache_options": "prompt caching is the upstream's own; prompt_cache_key is passed on",
    "background_options": "a background response runs to its end as soon as it can",
    "image": "images are sent to the upstream as they are",
}
_SUPPORTED_INCLUDES: frozenset[str] = frozenset(
    {"message.output_text.logprobs", "reasoning.encrypted_content"}
)
"""The ``include`` values a request may name; any other is refused with ``include[i]``."""
_LOGPROBS_INCLUDE = "message.output_text.logprobs"
"""The ``include`` value that asks for the sampled tokens' logprobs on ``output_text``."""


def _items(value: Sequence[InputItem]) -> tuple[InputItem, ...]:
    return tuple(value)


def _tools(value: Sequence[Mapping[str, Any]]) -> tuple[Mapping[str, Any], ...]:
    return tuple(value)


@attrs.frozen
class ResponsesRequest:
    """A validated ``/v1/responses`` request. Build it with :func:`parse_request`.

    ``input`` holds this request's own items (a string input becomes one user message).
    ``history`` holds the items carried over from earlier turns by
    :func:`~responseloop.openresponses.continue_request`; the model sees
    :attr:`conversation`, which is both. ``tools`` are the request's function tools in
    Responses shape (``{"type": "function", "name", ...}``). ``body`` is the body as
    received, kept for storage and for fields only the host cares about.
    """

    model: str
    input: tuple[InputItem, ...] = attrs.field(default=(), converter=_items)
    history: tuple[InputItem, ...] = attrs.field(default=(), converter=_items)
    instructions: str | None = None
    tools: tuple[Mapping[str, Any], ...] = attrs.field(default=(), converter=_tools)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = None
    max_tool_calls: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_logprobs: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    user: str | None = None
    safety_identifier: str | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    text: Mapping[str, Any] | None = None
    reasoning: Mapping[str, Any] | None = None
    stream: bool = False
    metadata: Mapping[str, str] | None = None
    store: bool = True
    background: bool = False
    truncation: Literal["auto", "disabled"] = "disabled"
    include: tuple[str, ...] = ()
    previous_response_id: str | None = None
    stream_options: Mapping[str, Any] | None = None
    body: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)

    @property
    def conversation(self) -> tuple[InputItem, ...]:
        """Everything the model is shown before this turn's work: history, then input."""
        return self.history + self.input

    @property
    def tool_names(self) -> frozenset[str]:
        """Names of the request's client function tools."""
        return frozenset(str(tool["name"]) for tool in self.tools)

    @property
    def allowed_tool_names(self) -> tuple[str, ...] | None:
        """The tool names an ``allowed_tools`` ``tool_choice`` lets the model call (client
        and server-side tools alike), in the order given; ``None`` when every tool may be
        called."""
        choice = self.tool_choice
        if not isinstance(choice, Mapping) or choice.get("type") != "allowed_tools":
            return None
        return tuple(str(tool["name"]) for tool in choice["tools"])

    @property
    def callable_client_tool_names(self) -> frozenset[str]:
        """Names of the client function tools the model may call: :attr:`tool_names`,
        narrowed by an ``allowed_tools`` choice. A call of any other client tool is
        refused like a call of an unknown tool."""
        allowed = self.allowed_tool_names
        return self.tool_names if allowed is None else self.tool_names & frozenset(allowed)

    @property
    def wants_logprobs(self) -> bool:
        """Whether ``include`` asks for logprobs on the ``output_text`` parts."""
        return _LOGPROBS_INCLUDE in self.include

    def input_param(self, index: int) -> str:
        """The ``param`` naming item ``index`` of :attr:`conversation` in an error: the
        request's own ``input[i]``, or ``previous_response_id`` for carried-over items."""
        if index < len(self.history):
            return "previous_response_id"
        return f"input[{index - len(self.history)}]"


def parse_request(body: object) -> ResponsesRequest:
    """Validate a ``/v1/responses`` body (already decoded from JSON) into a value.

    Raises:
        InvalidRequestError: the body is not a JSON object or a field is malformed;
            ``param`` names the field.
    """
    if not isinstance(body, Mapping):
        raise InvalidRequestError("the request body must be a JSON object", param=None)
    for field, advice in _UNSUPPORTED_FIELDS.items():
        if body.get(field) is not None:
            raise InvalidRequestError(f"{field!r} is not supported; {advice}", param=field)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError(
            "'model' is required and must be a non-empty string", param="model"
        )
    previous = _optional_str(body, "previous_response_id")
    return ResponsesRequest(
        model=model,
        input=_parse_input(body.get("input"), required=previous is None),
        instructions=_optional_str(body, "instructions"),
        tools=_parse_tools(body.get("tools")),
        tool_choice=_parse_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=_optional_bool(body, "parallel_tool_calls"),
        max_output_tokens=_optional_int(body, "max_output_tokens", minimum=1),
        max_tool_calls=_optional_int(body, "max_tool_calls", minimum=1),
        temperature=_optional_number(body, "temperature", 0.0, 2.0),
        top_p=_optional_number(body, "top_p", 0.0, 1.0),
        top_logprobs=_optional_int(body, "top_logprobs", minimum=0, maximum=20),
        presence_penalty=_optional_number(body, "presence_penalty", -2.0, 2.0),
        frequency_penalty=_optional_number(body, "frequency_penalty", -2.0, 2.0),
        seed=_optional_int(body, "seed"),
        user=_optional_str(body, "user"),
        safety_identifier=_optional_str(body, "safety_identifier"),
        service_tier=_optional_choice(body, "service_tier", _SERVICE_TIERS),
        prompt_cache_key=_optional_str(body, "prompt_cache_key"),
        prompt_cache_retention=_optional_choice(
            body, "prompt_cache_retention", frozenset({"in_memory", "24h"})
        ),
        text=_parse_text(body.get("text")),
        reasoning=_parse_reasoning(body.get("reasoning")),
        stream=_optional_bool(body, "stream") or False,
        metadata=_parse_metadata(body.get("metadata")),
        store=_default(_optional_bool(body, "store"), True),
        background=_optional_bool(body, "background") or False,
        truncation=_parse_truncation(body.get("truncation")),
        include=_parse_include(body.get("include")),
        previous_response_id=previous,
        stream_options=_parse_stream_options(body.get("stream_options")),
        body=dict(body),
    )


def _default(value: bool | None, default: bool) -> bool:
    return default if value is None else value


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _optional_str(body: Mapping[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is None or isinstance(value, str):
        return value
    raise InvalidRequestError(f"'{field}' must be a string, got {_type_name(value)}", param=field)


def _optional_bool(body: Mapping[str, Any], field: str) -> bool | None:
    value = body.get(field)
    if value is None or isinstance(value, bool):
        return value
    raise InvalidRequestError(f"'{field}' must be a boolean, got {_type_name(value)}", param=field)


def _optional_choice(body: Mapping[str, Any], field: str, choices: frozenset[str]) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or value not in choices:
        raise InvalidRequestError(
            f"'{field}' must be one of {sorted(choices)}, got {value!r}", param=field
        )
    return value


def _optional_int(
    body: Mapping[str, Any], field: str, *, minimum: int | None = None, maximum: int | None = None
) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError(
            f"'{field}' must be an integer, got {_type_name(value)}", param=field
        )
    if minimum is not None and value < minimum:
        raise InvalidRequestError(f"'{field}' must be >= {minimum}, got {value}", param=field)
    if maximum is not None and value > maximum:
        raise InvalidRequestError(f"'{field}' must be <= {maximum}, got {value}", param=field)
    return value


def _optional_number(
    body: Mapping[str, Any], field: str, minimum: float, maximum: float
) -> float | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequestError(
            f"'{field}' must be a number, got {_type_name(value)}", param=field
        )
    if not minimum <= value <= maximum:
        raise InvalidRequestError(
            f"'{field}' must be between {minimum:g} and {maximum:g}, got {value}", param=field
        )
    return value


def _parse_input(value: object, *, required: bool) -> tuple[InputItem, ...]:
    if value is None:
        if required:
            raise InvalidRequestError(
                "'input' is required (a string or an array of items) unless "
                "previous_response_id is given",
                param="input",
            )
        return ()
    if isinstance(value, str):
        return ({"type": "message", "role": "user", "content": [_text_part(value)]},)
    if not isinstance(value, list):
        raise InvalidRequestError(
            f"'input' must be a string or an array of items, got {_type_name(value)}", param="input"
        )
    return tuple(parse_input_item(item, f"input[{index}]") for index, item in enumerate(value))


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "input_text", "text": text}


def parse_input_item(item: object, param: str) -> InputItem:
    """Validate one input item; ``param`` is its path for errors (``input[3]``)."""
    if not isinstance(item, Mapping):
        raise InvalidRequestError(
            f"each input item must be a JSON object, got {_type_name(item)}", param=param
        )
    item_type = item.get("type")
    if item_type is None and "role" in item:
        item_type = "message"  # the spec's "easy" message form has no type
    if item_type is None and "id" in item and len(item) == 1:
        item_type = "item_reference"
    if not isinstance(item_type, str):
        raise InvalidRequestError("input item is missing its 'type'", param=f"{param}.type")
    if item_type == "message":
        return _parse_message(item, param)
    if item_type == "function_call":
        call_id = _required_str(item, "call_id", param)
        name = _required_str(item, "name", param)
        arguments = item.get("arguments")
        if not isinstance(arguments, str):
            raise InvalidRequestError(
                f"'arguments' must be a JSON string, got {_type_name(arguments)}",
                param=f"{param}.arguments",
            )
        parsed = {"type": "function_call", "call_id": call_id, "name": name}
        return {**_with_id(item, param), **parsed, "arguments": arguments}
    if item_type == "function_call_output":
        call_id = _required_str(item, "call_id", param)
        output = _parse_tool_output(item.get("output"), f"{param}.output")
        return {**_with_id(item, param), "type": item_type, "call_id": call_id, "output": output}
    if item_type == "reasoning":
        summary = item.get("summary", [])
        if not isinstance(summary, list):
            raise InvalidRequestError("'summary' must be an array", param=f"{param}.summary")
        return {**_with_id(item, param), "type": "reasoning", "summary": list(summary)}
    if item_type == "mcp_call":
        return _parse_mcp_call(item, param)
    if item_type == "item_reference":
        return {"type": "item_reference", "id": _required_str(item, "id", param)}
    raise InvalidRequestError(
        f"input items of type {item_type!r} are not supported; supported: {list(_ITEM_TYPES)}",
        param=f"{param}.type",
    )


def _parse_mcp_call(item: Mapping[str, Any], param: str) -> InputItem:
    """A server-side call sent back (an ``mcp_call`` output item replayed): the call and
    what it returned, which the model is shown as a tool call and its result."""
    parsed: dict[str, Any] = {
        "type": "mcp_call",
        "id": _required_str(item, "id", param),
        "server_label": _required_str(item, "server_label", param),
        "name": _required_str(item, "name", param),
    }
    for field in ("arguments", "output"):
        value = item.get(field)
        if not isinstance(value, str) and not (field == "output" and value is None):
            raise InvalidRequestError(
                f"'{field}' must be a string, got {_type_name(value)}", param=f"{param}.{field}"
            )
        parsed[field] = value
    error = item.get("error")
    if error is not None and not isinstance(error, Mapping | str):
        raise InvalidRequestError(
            f"'error' must be an object or null, got {_type_name(error)}",
            param=f"{param}.error",
        )
    parsed["error"] = error
    return parsed


def _with_id(item: Mapping[str, Any], param: str) -> dict[str, Any]:
    item_id = item.get("id")
    if item_id is None:
        return {}
    if not isinstance(item_id, str):
        raise InvalidRequestError("'id' must be a string", param=f"{param}.id")
    return {"id": item_id}


def _required_str(item: Mapping[str, Any], field: str, param: str) -> str:
    value = item.get(field)
    if not isinstance(value, str) or not value:
        raise InvalidRequestError(
            f"'{field}' is required and must be a non-empty string", param=f"{param}.{field}"
        )
    return value


def _parse_message(item: Mapping[str, Any], param: str) -> InputItem:
    role = item.get("role")
    if role not in _MESSAGE_ROLES:
        raise InvalidRequestError(
            f"message 'role' must be one of {sorted(_MESSAGE_ROLES)}, got {role!r}",
            param=f"{param}.role",
        )
    content = item.get("content")
    if isinstance(content, str):
        parts: list[Mapping[str, Any]] = [
            {"type": "output_text" if role == "assistant" else "input_text", "text": content}
        ]
    elif isinstance(content, list):
        parts = [
            _parse_part(part, str(role), f"{param}.content[{index}]")
            for index, part in enumerate(content)
        ]
    else:
        raise InvalidRequestError(
            f"message 'content' must be a string or an array of parts, got {_type_name(content)}",
            param=f"{param}.content",
        )
    return {**_with_id(item, param), "type": "message", "role": role, "content": parts}


def _parse_part(part: object, role: str, param: str) -> Mapping[str, Any]:
    if not isinstance(part, Mapping):
        raise InvalidRequestError(
            f"a content part must be an object, got {_type_name(part)}", param=param
        )
    part_type = part.get("type")
    if part_type not in _PART_TYPES:
        raise InvalidRequestError(
            f"content parts of type {part_type!r} are not supported; "
            f"supported: {sorted(_PART_TYPES)}",
            param=f"{param}.type",
        )
    if part_type in _TEXT_PART_TYPES:
        text = part.get("text")
        if not isinstance(text, str):
            raise InvalidRequestError("'text' must be a string", param=f"{param}.text")
        return {"type": part_type, "text": text}
    if part_type == "refusal":
        refusal = part.get("refusal")
        if not isinstance(refusal, str):
            raise InvalidRequestError("'refusal' must be a string", param=f"{param}.refusal")
        return {"type": "refusal", "refusal": refusal}
    if role != "user":
        raise InvalidRequestError(
            f"{part_type} parts are only supported in user messages", param=f"{param}.type"
        )
    if part_type == "input_image":
        return _parse_image(part, param)
    return _parse_file(part, param)


def _parse_image(part: Mapping[str, Any], param: str) -> Mapping[str, Any]:
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        raise InvalidRequestError(
            "input_image needs an 'image_url' (a URL or a data: URL); file_id images are "
            "not supported",
            param=f"{param}.image_url",
        )
    detail = part.get("detail")
    if detail is not None and detail not in ("low", "high", "auto"):
        raise InvalidRequestError(
            f"'detail' must be 'low', 'high' or 'auto', got {detail!r}", param=f"{param}.detail"
        )
    image: dict[str, Any] = {"type": "input_image", "image_url": url}
    if detail is not None:
        image["detail"] = detail
    return image


def _parse_file(part: Mapping[str, Any], param: str) -> Mapping[str, Any]:
    file: dict[str, Any] = {"type": "input_file"}
    for field in ("file_id", "filename", "file_data"):
        value = part.get(field)
        if value is None:
            continue
        if not isinstance(value, str):
            raise InvalidRequestError(f"'{field}' must be a string", param=f"{param}.{field}")
        file[field] = value
    if part.get("file_url") is not None:
        raise InvalidRequestError(
            "input_file by 'file_url' is not supported; send 'file_data' or 'file_id'",
            param=f"{param}.file_url",
        )
    if "file_id" not in file and "file_data" not in file:
        raise InvalidRequestError(
            "input_file needs 'file_data' or 'file_id'", param=f"{param}.file_data"
        )
    return file


def _parse_tool_output(output: object, param: str) -> str | list[Mapping[str, Any]]:
    if isinstance(output, str):
        return output
    if not isinstance(output, list):
        raise InvalidRequestError(
            f"'output' must be a string or an array of parts, got {_type_name(output)}", param=param
        )
    parts: list[Mapping[str, Any]] = []
    for index, part in enumerate(output):
        part_param = f"{param}[{index}]"
        if not isinstance(part, Mapping) or part.get("type") != "input_text":
            raise InvalidRequestError(
                "function_call_output parts must be input_text parts (chat tool messages "
                "carry text only)",
                param=part_param,
            )
        text = part.get("text")
        if not isinstance(text, str):
            raise InvalidRequestError("'text' must be a string", param=f"{part_param}.text")
        parts.append(_text_part(text))
    return parts


def _parse_tools(value: object) -> tuple[Mapping[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidRequestError(
            f"'tools' must be an array, got {_type_name(value)}", param="tools"
        )
    tools: list[Mapping[str, Any]] = []
    seen: set[str] = set()
    for index, tool in enumerate(value):
        param = f"tools[{index}]"
        if not isinstance(tool, Mapping):
            raise InvalidRequestError(
                f"a tool must be an object, got {_type_name(tool)}", param=param
            )
        if tool.get("type", "function") != "function":
            raise InvalidRequestError(
                f"tools of type {tool.get('type')!r} are not supported; only 'function' tools "
                "are (server-side tools are configured by the operator)",
                param=f"{param}.type",
            )
        name = tool.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            raise InvalidRequestError(
                "a function tool needs a 'name' of 1-64 letters, digits, '_' or '-'",
                param=f"{param}.name",
            )
        if name in seen:
            raise InvalidRequestError(f"two tools are named {name!r}", param=f"{param}.name")
        seen.add(name)
        parsed: dict[str, Any] = {"type": "function", "name": name}
        description = tool.get("description")
        if description is not None:
            if not isinstance(description, str):
                raise InvalidRequestError(
                    "'description' must be a string", param=f"{param}.description"
                )
            parsed["description"] = description
        parameters = tool.get("parameters")
        if parameters is not None:
            if not isinstance(parameters, Mapping):
                raise InvalidRequestError(
                    "'parameters' must be a JSON Schema object", param=f"{param}.parameters"
                )
            parsed["parameters"] = dict(parameters)
        strict = tool.get("strict")
        if strict is not None:
            if not isinstance(strict, bool):
                raise InvalidRequestError("'strict' must be a boolean", param=f"{param}.strict")
            parsed["strict"] = strict
        tools.append(parsed)
    return tuple(tools)


def _parse_tool_choice(value: object) -> ToolChoice | None:
    if value is None:
        return None
    if isinstance(value, str):
        if value not in ("auto", "none", "required"):
            raise InvalidRequestError(
                f"'tool_choice' must be 'auto', 'none', 'required' or a function, got {value!r}",
                param="tool_choice",
            )
        return value
    if isinstance(value, Mapping) and value.get("type") == "function":
        name = value.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequestError(
                "a function tool_choice needs the function's 'name'", param="tool_choice.name"
            )
        return {"type": "function", "name": name}
    if isinstance(value, Mapping) and value.get("type") == "allowed_tools":
        return _parse_allowed_tools(value)
    raise InvalidRequestError(
        "'tool_choice' must be 'auto', 'none', 'required', {\"type\": \"function\", "
        '"name": ...} or {"type": "allowed_tools", ...}',
        param="tool_choice",
    )


_ALLOWED_TOOL_TYPES = ("function", "custom")


def _parse_allowed_tools(value: Mapping[str, Any]) -> Mapping[str, Any]:
    """An ``allowed_tools`` choice, echoed as sent. Its names are checked against the
    tools when the scope's server-side tools are known (the transition's refusal)."""
    mode = value.get("mode", "auto")
    if mode not in ("auto", "required", "none"):
        raise InvalidRequestError(
            f"'tool_choice.mode' must be 'auto', 'required' or 'none', got {mode!r}",
            param="tool_choice.mode",
        )
    tools = value.get("tools")
    if not isinstance(tools, list) or not tools:
        raise InvalidRequestError(
            "an allowed_tools tool_choice needs a non-empty 'tools' array",
            param="tool_choice.tools",
        )
    if len(tools) > 128:
        raise InvalidRequestError(
            "an allowed_tools tool_choice may list at most 128 tools", param="tool_choice.tools"
        )
    allowed: list[dict[str, Any]] = []
    for index, tool in enumerate(tools):
        param = f"tool_choice.tools[{index}]"
        if not isinstance(tool, Mapping):
            raise InvalidRequestError(
                f"an allowed tool must be an object, got {_type_name(tool)}", param=param
            )
        kind = tool.get("type")
        if kind not in _ALLOWED_TOOL_TYPES:
            raise InvalidRequestError(
                f"allowed tools of type {kind!r} are not supported; supported: "
                f"{list(_ALLOWED_TOOL_TYPES)}",
                param=f"{param}.type",
            )
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequestError(
                "an allowed tool needs the tool's 'name'", param=f"{param}.name"
            )
        allowed.append({"type": kind, "name": name})
    return {"type": "allowed_tools", "mode": mode, "tools": allowed}


def _parse_text(value: object) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidRequestError(
            f"'text' must be an object, got {_type_name(value)}", param="text"
        )
    text: dict[str, Any] = {}
    fmt = value.get("format")
    if fmt is not None:
        text["format"] = _parse_format(fmt)
    verbosity = value.get("verbosity")
    if verbosity is not None:
        if verbosity not in ("low", "medium", "high"):
            raise InvalidRequestError(
                f"'verbosity' must be 'low', 'medium' or 'high', got {verbosity!r}",
                param="text.verbosity",
            )
        text["verbosity"] = verbosity
    return text


def _parse_format(fmt: object) -> Mapping[str, Any]:
    if not isinstance(fmt, Mapping):
        raise InvalidRequestError("'text.format' must be an object", param="text.format")
    kind = fmt.get("type")
    if kind in ("text", "json_object"):
        return {"type": kind}
    if kind != "json_schema":
        raise InvalidRequestError(
            f"'text.format.type' must be 'text', 'json_object' or 'json_schema', got {kind!r}",
            param="text.format.type",
        )
    name = fmt.get("name")
    if not isinstance(name, str) or not _TOOL_NAME.match(name):
        raise InvalidRequestError(
            "a json_schema format needs a 'name' of 1-64 letters, digits, '_' or '-'",
            param="text.format.name",
        )
    schema = fmt.get("schema")
    if not isinstance(schema, Mapping):
        raise InvalidRequestError(
            "a json_schema format needs a 'schema' object", param="text.format.schema"
        )
    parsed: dict[str, Any] = {"type": "json_schema", "name": name, "schema": dict(schema)}
    description = fmt.get("description")
    if description is not None:
        if not isinstance(description, str):
            raise InvalidRequestError(
                "'description' must be a string", param="text.format.description"
            )
        parsed["description"] = description
    strict = fmt.get("strict")
    if strict is not None:
        if not isinstance(strict, bool):
            raise InvalidRequestError("'strict' must be a boolean", param="text.format.strict")
        parsed["strict"] = strict
    return parsed


def _parse_reasoning(value: object) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidRequestError(
            f"'reasoning' must be an object, got {_type_name(value)}", param="reasoning"
        )
    reasoning: dict[str, Any] = {}
    effort = value.get("effort")
    if effort is not None:
        if effort not in _REASONING_EFFORTS:
            raise InvalidRequestError(
                f"'reasoning.effort' must be one of {sorted(_REASONING_EFFORTS)}, got {effort!r}",
                param="reasoning.effort",
            )
        reasoning["effort"] = effort
    for field in ("summary", "generate_summary"):
        summary = value.get(field)
        if summary is not None:
            if summary not in ("auto", "concise", "detailed"):
                raise InvalidRequestError(
                    f"'reasoning.{field}' must be 'auto', 'concise' or 'detailed'",
                    param=f"reasoning.{field}",
                )
            reasoning[field] = summary
    return reasoning


def _parse_metadata(value: object) -> Mapping[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidRequestError(
            f"'metadata' must be an object, got {_type_name(value)}", param="metadata"
        )
    if len(value) > 16:
        raise InvalidRequestError("'metadata' may have at most 16 keys", param="metadata")
    for key, item in value.items():
        if not isinstance(key, str) or len(key) > 64:
            raise InvalidRequestError(
                "metadata keys are strings of at most 64 characters", param="metadata"
            )
        if not isinstance(item, str) or len(item) > 512:
            raise InvalidRequestError(
                "metadata values are strings of at most 512 characters", param=f"metadata.{key}"
            )
    return dict(value)


def _parse_truncation(value: object) -> Literal["auto", "disabled"]:
    if value is None or value == "disabled":
        return "disabled"
    if value == "auto":
        # "auto" promises the conversation is cut to fit the model's context window; the
        # window is the upstream's, unknown here, so the promise could not be kept.
        raise InvalidRequestError(
            "truncation 'auto' is not supported: the upstream's context window is not "
            "known here, so nothing can be cut to fit it; send 'disabled' (the default) "
            "and shorten the input yourself",
            param="truncation",
        )
    raise InvalidRequestError(
        f"'truncation' must be 'auto' or 'disabled', got {value!r}", param="truncation"
    )


def _parse_include(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(entry, str) for entry in value):
        raise InvalidRequestError("'include' must be an array of strings", param="include")
    for index, entry in enumerate(value):
        if entry not in _SUPPORTED_INCLUDES:
            raise InvalidRequestError(
                f"include value {entry!r} is not supported; supported: "
                f"{sorted(_SUPPORTED_INCLUDES)}",
                param=f"include[{index}]",
            )
    return tuple(value)


def _parse_stream_options(value: object) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidRequestError(
            f"'stream_options' must be an object, got {_type_name(value)}",
            param="stream_options",
        )
    options: dict[str, Any] = {}
    obfuscation = value.get("include_obfuscation")
    if obfuscation is not None:
        if not isinstance(obfuscation, bool):
            raise InvalidRequestError(
                "'include_obfuscation' must be a boolean",
                param="stream_options.include_obfuscation",
            )
        # Either value is honoured: events never carry obfuscation padding, which only
        # hides payload sizes and changes nothing a client reads.
        options["include_obfuscation"] = obfuscation
    return options
