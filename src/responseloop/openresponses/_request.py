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
from ._json_types import type_name as _type_name
from ._mcp import McpDeclaration, parse_mcp_declaration

__all__ = [
    "HOSTED_TOOL_TYPES",
    "InputItem",
    "ResponsesRequest",
    "ToolChoice",
    "history_tools",
    "parse_metadata",
    "parse_request",
]

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
    "custom_tool_call",
    "custom_tool_call_output",
    "additional_tools",
    "reasoning",
    "mcp_call",
    "mcp_list_tools",
    "mcp_approval_request",
    "mcp_approval_response",
    "compaction",
    "compaction_trigger",
    "item_reference",
)
HOSTED_TOOL_TYPES: frozenset[str] = frozenset(
    {
        "web_search",
        "web_search_2025_08_26",
        "web_search_preview",
        "web_search_preview_2025_03_11",
        "image_generation",
        "file_search",
        "code_interpreter",
        "computer",
        "computer_use",
        "computer_use_preview",
        "local_shell",
        "shell",
        "apply_patch",
        "tool_search",
    }
)
"""Tool types a client declares for OpenAI to run (hosted tools). A server that does not
provide one skips or refuses its declaration (:attr:`WireOptions.hosted_tools`)."""
# Joins a namespace and a function name into the one name the upstream sees; two
# underscores, so the pair is recovered from the tool table, not by splitting.
_NAMESPACE_JOIN = "__"
# The tool kinds offered to the model as functions (a custom tool takes one string).
_FUNCTION_TOOL_TYPES = ("function", "custom")
_CUSTOM_INPUT = "input"
_REASONING_EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh", "max"})
_SERVICE_TIERS = frozenset({"auto", "default", "flex", "scale", "priority", "fast", "ultrafast"})
_UNSUPPORTED_FIELDS = {
    "prompt": "send the prompt's text as instructions and input",
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


def _declarations(value: Sequence[McpDeclaration]) -> tuple[McpDeclaration, ...]:
    return tuple(value)


@attrs.frozen
class ResponsesRequest:
    """A validated ``/v1/responses`` request. Build it with :func:`parse_request`.

    ``input`` holds this request's own items (a string input becomes one user message).
    ``history`` holds the items carried over from earlier turns by
    :func:`~responseloop.openresponses.continue_request`; the model sees
    :attr:`conversation`, which is both. ``tools`` are the client tools offered to the
    model, each as a function tool in Responses shape (``{"type": "function", "name",
    ...}``) named as the upstream sees it: a function of a ``namespace`` tool is named
    ``<namespace>__<name>`` and carries ``namespace`` and ``client_name``; a ``custom``
    (freeform) tool is a function of one string argument ``input`` and carries
    ``"custom": True``. ``mcp_servers`` are the request's ``mcp`` tools (MCP servers the
    request asks the server to run tools on; the operator decides where each runs).
    ``body`` is the body as received, kept for storage and for fields only the host cares
    about. ``compact_threshold`` is the ``compact_threshold`` of a ``context_management``
    compaction entry (compact mid-response once the context passes it), and
    ``compaction_trigger`` says the input ended with a ``compaction_trigger`` item (the
    response is one compaction of the conversation; the trigger is not kept in ``input``).
    """

    model: str
    input: tuple[InputItem, ...] = attrs.field(default=(), converter=_items)
    history: tuple[InputItem, ...] = attrs.field(default=(), converter=_items)
    instructions: str | None = None
    tools: tuple[Mapping[str, Any], ...] = attrs.field(default=(), converter=_tools)
    mcp_servers: tuple[McpDeclaration, ...] = attrs.field(default=(), converter=_declarations)
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
    conversation_id: str | None = None
    stream_options: Mapping[str, Any] | None = None
    compact_threshold: int | None = None
    compaction_trigger: bool = False
    body: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)

    @property
    def conversation(self) -> tuple[InputItem, ...]:
        """Everything the model is shown before this turn's work: history, then input."""
        return self.history + self.input

    @property
    def reasoning_summary(self) -> bool:
        """Whether the request asks for reasoning summaries (``reasoning.summary``)."""
        reasoning = self.reasoning or {}
        return reasoning.get("summary") is not None or reasoning.get("generate_summary") is not None

    @property
    def sealed_reasoning(self) -> bool:
        """Whether ``include`` asks for ``reasoning.encrypted_content``."""
        return "reasoning.encrypted_content" in self.include

    @property
    def tool_names(self) -> frozenset[str]:
        """Names of the request's client tools, as the upstream knows them."""
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

    def client_tool(self, name: str) -> Mapping[str, Any] | None:
        """The client tool the upstream knows as ``name`` (see :attr:`tools`), or ``None``."""
        for tool in self.tools:
            if tool["name"] == name:
                return tool
        return None

    def upstream_name(self, name: str, namespace: str | None) -> str:
        """The name the upstream knows the client tool ``name`` of ``namespace`` by."""
        return name if namespace is None else _joined(namespace, name)

    def input_param(self, index: int) -> str:
        """The ``param`` naming item ``index`` of :attr:`conversation` in an error: the
        request's own ``input[i]``, or ``previous_response_id`` for carried-over items."""
        if index < len(self.history):
            return "previous_response_id"
        return f"input[{index - len(self.history)}]"


def parse_request(
    body: object, *, hosted_tools: Literal["skip", "refuse"] = "skip"
) -> ResponsesRequest:
    """Validate a ``/v1/responses`` body (already decoded from JSON) into a value.

    ``hosted_tools`` says what a declaration of a hosted tool (:data:`HOSTED_TOOL_TYPES`)
    gets: ``"skip"`` (not offered to the model, nor listed in the Response's ``tools``) or
    ``"refuse"`` (a 400 naming ``tools[i].type``).

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
    conversation = _parse_conversation(body.get("conversation"))
    if conversation is not None and previous is not None:
        raise InvalidRequestError(
            "Mutually exclusive parameters: Ensure you are only providing one of:"
            " 'previous_response_id' or 'conversation'.",
            param="conversation",
        )
    if conversation is not None and body.get("store") is False:
        # A conversation is a view over its stored responses: an unstored one has no items
        # to show it.
        raise InvalidRequestError(
            "a response in a conversation is stored (its items are the conversation's)",
            param="store",
        )
    items = _parse_input(body.get("input"), required=previous is None and conversation is None)
    triggered = bool(items) and items[-1]["type"] == "compaction_trigger"
    for index, item in enumerate(items[:-1] if triggered else items):
        if item["type"] == "compaction_trigger":
            raise InvalidRequestError(
                "a compaction_trigger item must be the last input item",
                param=f"input[{index}].type",
            )
    if triggered:
        items = items[:-1]
    seen: set[str] = set()
    mcp_servers: list[McpDeclaration] = []
    tools = _parse_tools(body.get("tools"), "tools", hosted_tools, seen, mcp_servers)
    for index, item in enumerate(items):
        if item["type"] == "additional_tools":
            tools += _parse_tools(item["tools"], f"input[{index}].tools", hosted_tools, seen)
    _parse_client_metadata(body.get("client_metadata"))
    return ResponsesRequest(
        model=model,
        input=items,
        instructions=_optional_str(body, "instructions"),
        tools=tools,
        mcp_servers=mcp_servers,
        tool_choice=_parse_tool_choice(body.get("tool_choice"), mcp_servers),
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
        metadata=parse_metadata(body.get("metadata")),
        store=_default(_optional_bool(body, "store"), True),
        background=_optional_bool(body, "background") or False,
        truncation=_parse_truncation(body.get("truncation")),
        include=_parse_include(body.get("include")),
        previous_response_id=previous,
        conversation_id=conversation,
        stream_options=_parse_stream_options(body.get("stream_options")),
        compact_threshold=_parse_context_management(body.get("context_management")),
        compaction_trigger=triggered,
        body=dict(body),
    )


def _default(value: bool | None, default: bool) -> bool:
    return default if value is None else value


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
        parsed.update(_namespace(item, param))
        return {**_with_id(item, param), **parsed, "arguments": arguments}
    if item_type == "custom_tool_call":
        call_id = _required_str(item, "call_id", param)
        name = _required_str(item, "name", param)
        text = item.get("input")
        if not isinstance(text, str):
            raise InvalidRequestError(
                f"'input' must be a string, got {_type_name(text)}", param=f"{param}.input"
            )
        parsed = {"type": item_type, "call_id": call_id, "name": name, "input": text}
        return {**_with_id(item, param), **parsed, **_namespace(item, param)}
    if item_type in ("function_call_output", "custom_tool_call_output"):
        call_id = _required_str(item, "call_id", param)
        output = _parse_tool_output(item.get("output"), f"{param}.output")
        return {**_with_id(item, param), "type": item_type, "call_id": call_id, "output": output}
    if item_type == "additional_tools":
        if item.get("role", "developer") != "developer":
            raise InvalidRequestError(
                "additional_tools items have role 'developer'", param=f"{param}.role"
            )
        tools = item.get("tools")
        if not isinstance(tools, list):
            raise InvalidRequestError(
                f"'tools' must be an array, got {_type_name(tools)}", param=f"{param}.tools"
            )
        return {**_with_id(item, param), "type": item_type, "role": "developer", "tools": tools}
    if item_type == "reasoning":
        summary = item.get("summary", [])
        if not isinstance(summary, list):
            raise InvalidRequestError("'summary' must be an array", param=f"{param}.summary")
        parsed_reasoning: dict[str, Any] = {
            **_with_id(item, param),
            "type": "reasoning",
            "summary": list(summary),
        }
        content = item.get("content")
        if isinstance(content, list):
            # Only its reasoning text is read (to replay it); anything else is ignored.
            parsed_reasoning["content"] = [
                part
                for part in content
                if isinstance(part, Mapping) and part.get("type") == "reasoning_text"
            ]
        sealed = item.get("encrypted_content")
        if sealed is not None:
            if not isinstance(sealed, str):
                raise InvalidRequestError(
                    f"'encrypted_content' must be a string, got {_type_name(sealed)}",
                    param=f"{param}.encrypted_content",
                )
            parsed_reasoning["encrypted_content"] = sealed
        return parsed_reasoning
    if item_type == "mcp_call":
        return _parse_mcp_call(item, param)
    if item_type == "mcp_list_tools":
        return _parse_mcp_list_tools(item, param)
    if item_type == "mcp_approval_request":
        return _parse_mcp_approval_request(item, param)
    if item_type == "mcp_approval_response":
        return _parse_mcp_approval_response(item, param)
    if item_type == "item_reference":
        return {"type": "item_reference", "id": _required_str(item, "id", param)}
    if item_type == "compaction":
        parsed_compaction: dict[str, Any] = {
            **_with_id(item, param),
            "type": "compaction",
            "encrypted_content": _required_str(item, "encrypted_content", param),
        }
        created_by = item.get("created_by")
        if created_by is not None:
            if not isinstance(created_by, str):
                raise InvalidRequestError(
                    "'created_by' must be a string", param=f"{param}.created_by"
                )
            parsed_compaction["created_by"] = created_by
        return parsed_compaction
    if item_type == "compaction_trigger":
        return {**_with_id(item, param), "type": "compaction_trigger"}
    raise InvalidRequestError(
        f"input items of type {item_type!r} are not supported; supported: {list(_ITEM_TYPES)}",
        param=f"{param}.type",
    )


def _namespace(item: Mapping[str, Any], param: str) -> dict[str, Any]:
    namespace = item.get("namespace")
    if namespace is None:
        return {}
    if not isinstance(namespace, str) or not namespace:
        raise InvalidRequestError(
            "'namespace' must be a non-empty string", param=f"{param}.namespace"
        )
    return {"namespace": namespace}


def _parse_mcp_call(item: Mapping[str, Any], param: str) -> InputItem:
    """A server-side call sent back (an ``mcp_call`` output item replayed): the call and
    what it returned, which the model is shown as a tool call and its result."""
    parsed: dict[str, Any] = {
        "type": "mcp_call",
        "id": _required_str(item, "id", param),
        "server_label": _required_str(item, "server_label", param),
        "name": _required_str(item, "name", param),
    }
    arguments = item.get("arguments")
    if not isinstance(arguments, str):
        raise InvalidRequestError(
            f"'arguments' must be a string, got {_type_name(arguments)}", param=f"{param}.arguments"
        )
    parsed["arguments"] = arguments
    approval = item.get("approval_request_id")
    if approval is not None:
        if not isinstance(approval, str):
            raise InvalidRequestError(
                "'approval_request_id' must be a string", param=f"{param}.approval_request_id"
            )
        parsed["approval_request_id"] = approval
    # ``output`` and ``error`` are kept only when sent, so that one a client left out can
    # be told from a null and restored from the stored item (see ``_references``).
    if "output" in item:
        output = item["output"]
        if output is not None and not isinstance(output, str):
            raise InvalidRequestError(
                f"'output' must be a string or null, got {_type_name(output)}",
                param=f"{param}.output",
            )
        parsed["output"] = output
    if "error" in item:
        error = item["error"]
        if error is not None and not isinstance(error, Mapping | str):
            raise InvalidRequestError(
                f"'error' must be an object or null, got {_type_name(error)}",
                param=f"{param}.error",
            )
        parsed["error"] = error
    return parsed


def _parse_mcp_list_tools(item: Mapping[str, Any], param: str) -> InputItem:
    """The tools an MCP server listed in an earlier turn (an ``mcp_list_tools`` output item
    sent back): a later turn offers them without listing again."""
    tools = item.get("tools")
    if not isinstance(tools, list):
        raise InvalidRequestError(
            f"'tools' must be an array, got {_type_name(tools)}", param=f"{param}.tools"
        )
    listed: list[dict[str, Any]] = []
    for index, tool in enumerate(tools):
        tool_param = f"{param}.tools[{index}]"
        if not isinstance(tool, Mapping):
            raise InvalidRequestError("a listed tool must be an object", param=tool_param)
        name = _required_str(tool, "name", tool_param)
        schema = tool.get("input_schema")
        entry: dict[str, Any] = {
            "name": name,
            "input_schema": dict(schema) if isinstance(schema, Mapping) else {"type": "object"},
        }
        for field in ("description", "annotations"):
            if tool.get(field) is not None:
                entry[field] = tool[field]
        listed.append(entry)
    error = item.get("error")
    if error is not None and not isinstance(error, str):
        raise InvalidRequestError("'error' must be a string or null", param=f"{param}.error")
    return {
        "type": "mcp_list_tools",
        "id": _required_str(item, "id", param),
        "server_label": _required_str(item, "server_label", param),
        "tools": listed,
        **({"error": error} if error else {}),
    }


def _parse_mcp_approval_request(item: Mapping[str, Any], param: str) -> InputItem:
    """A call that waited for the client's approval (an ``mcp_approval_request`` output
    item sent back)."""
    arguments = item.get("arguments")
    if not isinstance(arguments, str):
        raise InvalidRequestError(
            f"'arguments' must be a string, got {_type_name(arguments)}", param=f"{param}.arguments"
        )
    return {
        "type": "mcp_approval_request",
        "id": _required_str(item, "id", param),
        "server_label": _required_str(item, "server_label", param),
        "name": _required_str(item, "name", param),
        "arguments": arguments,
    }


def _parse_mcp_approval_response(item: Mapping[str, Any], param: str) -> InputItem:
    """The client's answer to an ``mcp_approval_request``."""
    approve = item.get("approve")
    if not isinstance(approve, bool):
        raise InvalidRequestError("'approve' must be a boolean", param=f"{param}.approve")
    reason = item.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise InvalidRequestError("'reason' must be a string", param=f"{param}.reason")
    parsed: dict[str, Any] = {
        **_with_id(item, param),
        "type": "mcp_approval_response",
        "approval_request_id": _required_str(item, "approval_request_id", param),
        "approve": approve,
    }
    if reason:
        parsed["reason"] = reason
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


def _typed_entry(
    value: object, param: str, *, one: str, many: str, supported: Sequence[str]
) -> tuple[Mapping[str, Any], str]:
    """An entry of an array of typed objects (content parts, allowed tools): ``value``
    must be an object whose ``type`` is one of ``supported``; returns it and its type.
    ``one`` names an entry in the errors ("a content part"), ``many`` the entries."""
    if not isinstance(value, Mapping):
        raise InvalidRequestError(f"{one} must be an object, got {_type_name(value)}", param=param)
    kind = value.get("type")
    if isinstance(kind, str) and kind in supported:
        return value, kind
    raise InvalidRequestError(
        f"{many} of type {kind!r} are not supported; supported: {list(supported)}",
        param=f"{param}.type",
    )


def _parse_part(value: object, role: str, param: str) -> Mapping[str, Any]:
    part, part_type = _typed_entry(
        value, param, one="a content part", many="content parts", supported=sorted(_PART_TYPES)
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
        if isinstance(part, Mapping) and part.get("type") == "input_image":
            # Codex's view_image answers with one; the translation shows it to the model
            # in a user message after the tool messages, which carry text only.
            parts.append(_parse_image(part, part_param))
            continue
        if not isinstance(part, Mapping) or part.get("type") != "input_text":
            raise InvalidRequestError(
                "tool output parts must be input_text or input_image parts",
                param=part_param,
            )
        text = part.get("text")
        if not isinstance(text, str):
            raise InvalidRequestError("'text' must be a string", param=f"{part_param}.text")
        parts.append(_text_part(text))
    return parts


def _joined(namespace: str, name: str) -> str:
    """The name the upstream knows the function ``name`` of ``namespace`` by."""
    return f"{namespace}{_NAMESPACE_JOIN}{name}"


def _parse_tools(
    value: object,
    param: str,
    hosted: Literal["skip", "refuse"],
    seen: set[str],
    mcp_servers: list[McpDeclaration] | None = None,
) -> list[Mapping[str, Any]]:
    """The tools offered to the model (flattened, see :class:`ResponsesRequest`); the
    ``mcp`` tools go to ``mcp_servers`` (``None``: refused here)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequestError(f"'tools' must be an array, got {_type_name(value)}", param=param)
    offered: list[Mapping[str, Any]] = []
    for index, tool in enumerate(value):
        tool_param = f"{param}[{index}]"
        if not isinstance(tool, Mapping):
            raise InvalidRequestError(
                f"a tool must be an object, got {_type_name(tool)}", param=tool_param
            )
        kind = tool.get("type", "function")
        if kind in _FUNCTION_TOOL_TYPES:
            offered.append(_offered(_parse_function(tool, tool_param, kind), None))
            _check_unique(offered[-1], tool_param, seen)
        elif kind == "namespace":
            namespace, members = _parse_namespace(tool, tool_param)
            for member_index, member in enumerate(members):
                offered.append(_offered(member, namespace))
                _check_unique(offered[-1], f"{tool_param}.tools[{member_index}]", seen)
        elif kind == "mcp" and mcp_servers is not None:
            declaration = parse_mcp_declaration(tool, tool_param)
            if any(d.server_label == declaration.server_label for d in mcp_servers):
                raise InvalidRequestError(
                    f"two mcp tools have server_label {declaration.server_label!r}",
                    param=f"{tool_param}.server_label",
                )
            mcp_servers.append(declaration)
        elif kind in HOSTED_TOOL_TYPES and hosted == "skip":
            # Declared for OpenAI to run; this server has no such tool, so the model is
            # not offered it (Codex declares web_search whether or not it is wanted).
            continue
        else:
            reason = (
                "this server does not run hosted tools"
                if kind in HOSTED_TOOL_TYPES
                else "supported: 'function', 'custom', 'namespace', 'mcp' (in 'tools')"
            )
            raise InvalidRequestError(
                f"tools of type {kind!r} are not supported; {reason} (server-side tools "
                "are configured by the operator)",
                param=f"{tool_param}.type",
            )
    return offered


def _parse_namespace(tool: Mapping[str, Any], param: str) -> tuple[str, list[dict[str, Any]]]:
    """The name of a ``namespace`` tool and its parsed function and custom tools."""
    name = tool.get("name")
    if not isinstance(name, str) or not _TOOL_NAME.match(name):
        raise InvalidRequestError(
            "a namespace tool needs a 'name' of 1-64 letters, digits, '_' or '-'",
            param=f"{param}.name",
        )
    description = tool.get("description")
    if description is not None and not isinstance(description, str):
        raise InvalidRequestError("'description' must be a string", param=f"{param}.description")
    members = tool.get("tools")
    if not isinstance(members, list):
        raise InvalidRequestError(
            f"a namespace tool needs a 'tools' array, got {_type_name(members)}",
            param=f"{param}.tools",
        )
    parsed: list[dict[str, Any]] = []
    for index, member in enumerate(members):
        member_param = f"{param}.tools[{index}]"
        if not isinstance(member, Mapping) or member.get("type", "function") not in (
            _FUNCTION_TOOL_TYPES
        ):
            raise InvalidRequestError(
                "a namespace holds 'function' and 'custom' tools", param=f"{member_param}.type"
            )
        function = _parse_function(member, member_param, str(member.get("type", "function")))
        joined = _joined(name, function["name"])
        if len(joined) > 64:
            raise InvalidRequestError(
                f"the namespace and tool names joined ({joined}) are longer than the "
                "upstream's 64 characters",
                param=f"{member_param}.name",
            )
        parsed.append(function)
    return name, parsed


def _parse_function(tool: Mapping[str, Any], param: str, kind: str) -> dict[str, Any]:
    name = tool.get("name")
    if not isinstance(name, str) or not _TOOL_NAME.match(name):
        raise InvalidRequestError(
            f"a {kind} tool needs a 'name' of 1-64 letters, digits, '_' or '-'",
            param=f"{param}.name",
        )
    parsed: dict[str, Any] = {"type": kind, "name": name}
    description = tool.get("description")
    if description is not None:
        if not isinstance(description, str):
            raise InvalidRequestError(
                "'description' must be a string", param=f"{param}.description"
            )
        parsed["description"] = description
    if kind == "custom":
        fmt = tool.get("format")
        if fmt is not None:
            if not isinstance(fmt, Mapping) or fmt.get("type") not in ("text", "grammar"):
                raise InvalidRequestError(
                    'a custom tool\'s \'format\' is {"type": "text"} or a grammar',
                    param=f"{param}.format",
                )
            parsed["format"] = dict(fmt)
        return parsed
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
    return parsed


def _offered(tool: Mapping[str, Any], namespace: str | None) -> dict[str, Any]:
    """``tool`` (a parsed function or custom tool) as the function the model is offered."""
    name = str(tool["name"])
    offered: dict[str, Any] = {"type": "function", "name": name}
    if namespace is not None:
        offered.update(name=_joined(namespace, name), namespace=namespace, client_name=name)
    if tool["type"] == "custom":
        description = str(tool.get("description", ""))
        fmt = tool.get("format") or {}
        if fmt.get("type") == "grammar":
            # Chat functions take JSON; the grammar tells the model what the text must be.
            description += (
                f"\n\nThe '{_CUSTOM_INPUT}' argument is text in this "
                f"{fmt.get('syntax', '')} grammar:\n{fmt.get('definition', '')}"
            )
        offered.update(
            custom=True,
            description=description.strip(),
            parameters={
                "type": "object",
                "properties": {_CUSTOM_INPUT: {"type": "string"}},
                "required": [_CUSTOM_INPUT],
                "additionalProperties": False,
            },
        )
        return offered
    for field in ("description", "parameters", "strict"):
        if field in tool:
            offered[field] = tool[field]
    return offered


def history_tools(
    history: Sequence[InputItem], tools: Sequence[Mapping[str, Any]]
) -> tuple[Mapping[str, Any], ...]:
    """The tools the ``additional_tools`` items of ``history`` (earlier turns) offered that
    ``tools`` (the new request's) does not name: they stay offered for the conversation,
    and a tool the new request declares again is the new request's."""
    names = {str(tool["name"]) for tool in tools}
    found: list[Mapping[str, Any]] = []
    for item in history:
        if item["type"] != "additional_tools":
            continue
        for tool in _parse_tools(item["tools"], "previous_response_id", "skip", set()):
            if tool["name"] not in names:
                names.add(str(tool["name"]))
                found.append(tool)
    return tuple(found)


def _check_unique(tool: Mapping[str, Any], param: str, seen: set[str]) -> None:
    """``tool`` (as offered to the model) has a name no earlier tool has."""
    name = str(tool["name"])
    if name in seen:
        raise InvalidRequestError(f"two tools are named {name!r}", param=f"{param}.name")
    seen.add(name)


def _parse_context_management(value: object) -> int | None:
    """The ``compact_threshold`` of ``context_management``'s one ``compaction`` entry
    (``None``: no compaction mid-response). The threshold is required: this server does
    not know the model's context window, so it has no default to compact at."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidRequestError(
            f"'context_management' must be an array, got {_type_name(value)}",
            param="context_management",
        )
    threshold: int | None = None
    for index, entry in enumerate(value):
        param = f"context_management[{index}]"
        if not isinstance(entry, Mapping):
            raise InvalidRequestError("each entry must be an object", param=param)
        if entry.get("type") != "compaction":
            raise InvalidRequestError(
                f"context management of type {entry.get('type')!r} is not supported; "
                "supported: ['compaction']",
                param=f"{param}.type",
            )
        if threshold is not None:
            raise InvalidRequestError("only one compaction entry may be given", param=param)
        given = entry.get("compact_threshold")
        if isinstance(given, float) and given.is_integer():
            given = int(given)
        if isinstance(given, bool) or not isinstance(given, int) or given < 1:
            raise InvalidRequestError(
                "'compact_threshold' is required, a positive integer: this server does "
                "not know the model's context window to choose one",
                param=f"{param}.compact_threshold",
            )
        threshold = given
    return threshold


def _parse_client_metadata(value: object) -> None:
    # Codex sends its turn metadata here; the server has no use for it, only its shape
    # is checked so a typo is not silently taken for something else.
    if value is not None and not isinstance(value, Mapping):
        raise InvalidRequestError(
            f"'client_metadata' must be an object, got {_type_name(value)}",
            param="client_metadata",
        )


def _parse_tool_choice(
    value: object, mcp_servers: Sequence[McpDeclaration] = ()
) -> ToolChoice | None:
    if value is None:
        return None
    if isinstance(value, str):
        if value not in ("auto", "none", "required"):
            raise InvalidRequestError(
                f"'tool_choice' must be 'auto', 'none', 'required' or a function, got {value!r}",
                param="tool_choice",
            )
        return value
    if isinstance(value, Mapping) and value.get("type") in _FUNCTION_TOOL_TYPES:
        name = value.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequestError(
                "a function tool_choice needs the function's 'name'", param="tool_choice.name"
            )
        return {"type": "function", "name": name}
    if isinstance(value, Mapping) and value.get("type") == "allowed_tools":
        return _parse_allowed_tools(value)
    if isinstance(value, Mapping) and value.get("type") == "mcp":
        label = value.get("server_label")
        if not isinstance(label, str) or label not in {d.server_label for d in mcp_servers}:
            raise InvalidRequestError(
                "an mcp tool_choice needs the 'server_label' of an mcp tool of the request",
                param="tool_choice.server_label",
            )
        name = value.get("name")
        if name is not None and (not isinstance(name, str) or not name):
            raise InvalidRequestError("'name' must be a non-empty string", param="tool_choice.name")
        return {"type": "mcp", "server_label": label, **({"name": name} if name else {})}
    raise InvalidRequestError(
        "'tool_choice' must be 'auto', 'none', 'required', {\"type\": \"function\", "
        '"name": ...} or {"type": "allowed_tools", ...}',
        param="tool_choice",
    )


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
    for index, entry in enumerate(tools):
        param = f"tool_choice.tools[{index}]"
        tool, kind = _typed_entry(
            entry,
            param,
            one="an allowed tool",
            many="allowed tools",
            supported=_FUNCTION_TOOL_TYPES,
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


def _parse_conversation(value: object) -> str | None:
    """The id of the ``conversation`` field: a ``conv_…`` string or ``{"id": …}``."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        value = value.get("id")
        param = "conversation.id"
    else:
        param = "conversation"
    if not isinstance(value, str) or not value:
        raise InvalidRequestError(
            "'conversation' is a conversation id or an object with its 'id'", param=param
        )
    return value


def parse_metadata(value: object) -> Mapping[str, str] | None:
    """Validate ``metadata`` (at most 16 string keys of 64 characters, string values of
    512): the rule of a Response's and a conversation's alike. ``None`` for none."""
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
