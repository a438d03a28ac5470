"""Assembly of the Response object from a chain of steps (DESIGN §7).

Pure: no I/O, and deterministic — ids derive from the response id and the steps'
sequences, so the same chain always assembles to the same JSON (a resumed or re-read
response never changes its item ids).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from ..abc._dialect import ModelTurn, ToolCall, UpstreamDialect
from ..abc._json import JSON
from ..abc._records import ResponseStatus
from ..abc._steps import ChainStep, Complete, Fail, StepKind, StepState
from ..core._compaction import summary_of
from ..core._tool_outputs import steps_by_call_id, tool_output_text
from ._dialects import default_dialect
from ._item_kinds import call_id, item_id
from ._mcp import conversation_listings, needs_approval, tool_allowed
from ._request import ResponsesRequest
from ._sealing import seal_compaction, seal_reasoning
from ._wire import WireOptions

__all__ = [
    "SDK_ERROR_CODES",
    "assemble_response",
    "custom_input",
    "output_items",
    "sdk_error",
    "sum_usage",
]

SDK_ERROR_CODES: frozenset[str] = frozenset(
    {
        "server_error",
        "rate_limit_exceeded",
        "invalid_prompt",
        "data_residency_mismatch",
        "bio_policy",
        "misalignment_policy_violation",
        "vector_store_timeout",
        "invalid_image",
        "invalid_image_format",
        "invalid_base64_image",
        "invalid_image_url",
        "image_too_large",
        "image_too_small",
        "image_parse_error",
        "image_content_policy_violation",
        "invalid_image_mode",
        "image_file_too_large",
        "unsupported_image_media_type",
        "empty_image_file",
        "failed_to_download_image",
        "image_file_not_found",
    }
)
"""The closed set of ``ResponseError.code`` values the official SDK (3.57) accepts."""


def assemble_response(
    chain: Sequence[ChainStep],
    request: ResponsesRequest,
    *,
    response_id: str,
    created_at: int,
    outcome: Complete | Fail | ResponseStatus,
    completed_at: int | None = None,
    dialect: UpstreamDialect | None = None,
    wire: WireOptions | None = None,
) -> dict[str, Any]:
    """The Response JSON of a response whose steps are ``chain``.

    Args:
        chain: the steps of the response. Output items come from its top-level steps
            (``scope is None``) in sequence order; ``usage`` sums every model call in it,
            so pass sub-agent steps too to count their tokens.
        request: the parsed request, whose settings the Response echoes.
        response_id: the ``resp_…`` id; item ids derive from it.
        created_at: unix seconds when the response was created.
        outcome: how the loop ended (:class:`Complete` or :class:`Fail`), or the status of
            a response that has not ended (``queued``, ``in_progress``) or was cancelled.
        completed_at: unix seconds when it completed, echoed on completed responses.
        dialect: the format of the model steps' payloads (the upstream's; default: Chat
            Completions).
        wire: how the wire is spoken (default: :class:`WireOptions`'s defaults).

    Returns:
        A dict that the official SDK's ``Response`` model parses, with no unknown fields.
        A completed response whose last model call stopped short (its
        :attr:`~responseloop.abc.ModelTurn.incomplete_reason`: ``max_output_tokens`` or
        ``content_filter``) is ``incomplete`` with ``incomplete_details.reason``. ``model``
        is the request's (the name the caller used), not the upstream's. Every field the
        Open Responses ``ResponseResource`` requires is present, with the effective value
        where the request left it out (see ``_SAMPLING_DEFAULTS``); ``store``,
        ``presence_penalty`` and ``frequency_penalty`` are the spec's only fields the SDK's
        ``Response`` does not declare (it keeps them as extras). ``output_text`` is not
        written: the SDK computes it from the output.
    """
    dialect = default_dialect(dialect)
    wire = wire or WireOptions()
    turns = _turns(chain, dialect)
    output, last_short = _output_items(
        chain, request, _id_base(response_id), turns, dialect, wire, settled_only=False
    )
    status, error, incomplete = _status(outcome, last_short)
    text = dict(request.text or {})
    text["format"] = _echo_format(text.get("format"))
    response: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status.value,
        "model": request.model,
        "output": output,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": request.instructions,
        "metadata": dict(request.metadata or {}),
        "tools": [_echo_tool(tool) for tool in request.tools],
        "tool_choice": _echo_tool_choice(request),
        "parallel_tool_calls": _default(request.parallel_tool_calls, True),
        "temperature": _or(request.temperature, "temperature"),
        "top_p": _or(request.top_p, "top_p"),
        "presence_penalty": _or(request.presence_penalty, "presence_penalty"),
        "frequency_penalty": _or(request.frequency_penalty, "frequency_penalty"),
        "top_logprobs": _or(request.top_logprobs, "top_logprobs"),
        "max_output_tokens": request.max_output_tokens,
        "max_tool_calls": request.max_tool_calls,
        "previous_response_id": request.previous_response_id,
        "text": text,
        # The spec requires both fields of an echoed reasoning object (null when not given).
        "reasoning": (
            {"effort": None, "summary": None, **request.reasoning}
            if request.reasoning is not None
            else None
        ),
        "background": request.background,
        "store": request.store,
        "truncation": request.truncation,
        "user": request.user,
        "safety_identifier": request.safety_identifier,
        "service_tier": request.service_tier or "default",
        "prompt_cache_key": request.prompt_cache_key,
        "prompt_cache_retention": request.prompt_cache_retention,
        "usage": _summed(turns[step.id].usage for step in chain if step.id in turns),
        # The spec requires the field on every Response: null until it completed.
        "completed_at": completed_at if status is ResponseStatus.COMPLETED else None,
    }
    if request.conversation_id is not None:
        response["conversation"] = {"id": request.conversation_id}
    return response


_SAMPLING_DEFAULTS: Mapping[str, float | int] = {
    "temperature": 1.0,
    "top_p": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "top_logprobs": 0,
}
"""What a Response echoes for a sampling setting the request left out: the value the
upstream uses then (OpenAI's documented defaults), since the spec types these fields as
numbers, never null."""


def _or(value: float | int | None, field: str) -> float | int:
    return _SAMPLING_DEFAULTS[field] if value is None else value


def _echo_format(fmt: Any) -> dict[str, Any]:
    """``text.format`` as the Response lists it: a ``json_schema`` format always carries
    ``description`` (null when not given) and ``strict`` (false when not given, the
    request's default), as the spec requires."""
    if fmt is None:
        return {"type": "text"}
    echoed = dict(fmt)
    if echoed.get("type") == "json_schema":
        echoed.setdefault("description", None)
        echoed.setdefault("strict", False)
    return echoed


_FUNCTION_TOOL_FIELDS = ("type", "name", "description", "parameters", "strict")


def _echo_tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    """A tool the model was offered as the Response lists it. The spec allows function
    tools only, each with ``description``, ``parameters`` and ``strict`` (null when the
    request left them out), so a namespace's functions are listed by their joined names
    and a custom tool as its function; hosted tools the model is not offered are not."""
    listed = {"description": None, "parameters": None, "strict": None}
    listed.update({k: v for k, v in tool.items() if k in _FUNCTION_TOOL_FIELDS})
    return listed


def _default(value: bool | None, default: bool) -> bool:
    return default if value is None else value


def _echo_tool_choice(request: ResponsesRequest) -> JSON:
    choice = request.tool_choice
    if choice is None:
        return "auto"
    if isinstance(choice, str):
        return choice
    if choice["type"] == "mcp":
        # As applied: the named tool, or any tool (the spec's tool_choice has no mcp kind).
        return {"type": "function", "name": choice["name"]} if "name" in choice else "required"
    return dict(choice)


def _id_base(response_id: str) -> str:
    return response_id.removeprefix("resp_")


_UPSTREAM_CALLS = (StepKind.MODEL_CALL, StepKind.COMPACTION)


def _is_done_model(step: ChainStep) -> bool:
    return step.kind in _UPSTREAM_CALLS and step.state is StepState.COMPLETED


def _turns(chain: Sequence[ChainStep], dialect: UpstreamDialect) -> dict[str, ModelTurn]:
    """What each completed call of the upstream of ``chain`` (model calls and
    compactions, whose usage counts too) said, by step id: read once per assembly,
    whatever reads it after."""
    return {step.id: dialect.turn(step.response_payload) for step in chain if _is_done_model(step)}


def _status(
    outcome: Complete | Fail | ResponseStatus, reason: str | None
) -> tuple[ResponseStatus, dict[str, Any] | None, dict[str, Any] | None]:
    if isinstance(outcome, Fail):
        return ResponseStatus.FAILED, sdk_error(outcome.error), None
    if isinstance(outcome, ResponseStatus):
        return outcome, None, None
    if reason is not None:
        return ResponseStatus.INCOMPLETE, None, {"reason": reason}
    return ResponseStatus.COMPLETED, None, None


def sdk_error(error: Mapping[str, Any]) -> dict[str, Any]:
    """A stored error (``{"type", "code", "message", …}``) as the SDK's ``ResponseError``:
    ``code`` in the SDK's closed set (``server_error`` when ours is not in it), our finer
    ``type``, ``message`` and ``param``; other keys are left out."""
    code = error.get("code")
    message = error.get("message")
    result: dict[str, Any] = {
        "code": code if code in SDK_ERROR_CODES else "server_error",
        "message": message if isinstance(message, str) else "the response failed",
    }
    for field in ("type", "param"):
        value = error.get(field)
        if isinstance(value, str):
            result[field] = value
    return result


def _rounds(steps: Sequence[ChainStep]) -> list[tuple[ChainStep, list[ChainStep]]]:
    """Each model step with the tool steps after it; a compaction after a round is not
    one of its tool steps (see :func:`_compactions_after`)."""
    rounds: list[tuple[ChainStep, list[ChainStep]]] = []
    for step in steps:
        if step.kind is StepKind.MODEL_CALL:
            rounds.append((step, []))
        elif rounds and step.kind is not StepKind.COMPACTION:
            rounds[-1][1].append(step)
    return rounds


def _compactions_after(steps: Sequence[ChainStep]) -> dict[str | None, list[ChainStep]]:
    """The compaction steps of ``steps`` by the id of the model step whose round they
    follow (``None``: before the first model call, as in a ``compaction_trigger``
    response)."""
    after: dict[str | None, list[ChainStep]] = {}
    last_model: str | None = None
    for step in steps:
        if step.kind is StepKind.MODEL_CALL:
            last_model = step.id
        elif step.kind is StepKind.COMPACTION:
            after.setdefault(last_model, []).append(step)
    return after


def _compaction_items(
    compactions: Sequence[ChainStep], base: str, wire: WireOptions
) -> list[dict[str, Any]]:
    """The ``compaction`` item of each completed compaction step: its summary, sealed
    under the operator's key for the compaction purpose.

    Raises:
        ValueError: the server has no sealing key (a service refuses such a request
            before it runs).
    """
    items: list[dict[str, Any]] = []
    for step in compactions:
        if step.state is not StepState.COMPLETED:
            continue
        if wire.reasoning_key is None:
            raise ValueError("a compaction item needs WireOptions.reasoning_key to seal it")
        id_ = item_id("compaction", base, step.sequence)
        summary = summary_of(step.response_payload)
        sealed = seal_compaction(summary, wire.reasoning_key, item_id=id_)
        items.append({"id": id_, "type": "compaction", "encrypted_content": sealed})
    return items


def output_items(
    chain: Sequence[ChainStep],
    request: ResponsesRequest,
    *,
    response_id: str,
    dialect: UpstreamDialect | None = None,
    wire: WireOptions | None = None,
) -> list[dict[str, Any]]:
    """The output items of a response that is still running: the settled prefix of what
    :func:`assemble_response` would give once it ends.

    Items of completed model calls are final as soon as the call completes; the
    ``function_call_output`` items of the latest turn are given in call order only up to
    the first call whose answer is not known yet (its tool step still running, or a call
    that has no step, whose answer only the next model call's messages tell). So the list
    only ever grows as the chain does, and every item in it is exactly the item the
    finished response will hold at the same index. The stream event mapper relies on it.
    """
    dialect = default_dialect(dialect)
    turns = _turns(chain, dialect)
    items, _short = _output_items(
        chain,
        request,
        _id_base(response_id),
        turns,
        dialect,
        wire or WireOptions(),
        settled_only=True,
    )
    return items


def _output_items(
    chain: Sequence[ChainStep],
    request: ResponsesRequest,
    base: str,
    turns: Mapping[str, ModelTurn],
    dialect: UpstreamDialect,
    wire: WireOptions,
    *,
    settled_only: bool,
) -> tuple[list[dict[str, Any]], str | None]:
    """The output items of the top-level steps of ``chain``, and why the last completed
    model call stopped short (``None`` when it did not).

    The one place an output item kind is made: a new kind (a hosted tool's call, say)
    adds its items here, in the order the Response lists them.
    """
    steps = sorted((s for s in chain if s.scope is None), key=lambda s: s.sequence)
    rounds = _rounds(steps)
    compactions = _compactions_after(steps)
    items: list[dict[str, Any]] = []
    last_short: str | None = None
    if request.mcp_servers:
        leading, settled = _leading_items(steps, base, wire, settled_only=settled_only)
        items += leading
        if not settled:
            return items, None
    items += _compaction_items(compactions.get(None, ()), base, wire)
    gated = _gated_tools(request, steps)
    for index, (model_step, tool_steps) in enumerate(rounds):
        if model_step.state is not StepState.COMPLETED:
            continue
        turn = turns[model_step.id]
        last_short = turn.incomplete_reason
        status = "incomplete" if turn.incomplete_reason is not None else "completed"
        seq = model_step.sequence
        calls = turn.tool_calls
        reasoning = turn.reasoning
        if reasoning:
            items.append(
                _reasoning_item(item_id("reasoning", base, seq), reasoning, status, request, wire)
            )
        content = _message_content(turn, final=not calls, logprobs=request.wants_logprobs)
        if content:
            items.append(
                {
                    "id": item_id("message", base, seq),
                    "type": "message",
                    "role": "assistant",
                    "status": status,
                    "content": content,
                }
            )
        later = rounds[index + 1][0] if index + 1 < len(rounds) else None
        compacted = compactions.get(model_step.id, [])
        # What the model was told of the calls: the next step sent the conversation (a
        # compaction sent it whole; the model call after it only its summary).
        teller = compacted[0] if compacted else later
        told = dialect.told_tool_outputs(teller.request_payload) if teller is not None else {}
        answers = _call_answers(calls, tool_steps, request, teller, told, settled_only, gated)
        if wire.server_tool_items == "mcp_call":
            items += _mcp_turn_items(calls, answers, request, base, seq, wire, gated)
        else:
            items += [
                _approval_item(call, gated, base, seq, i)
                if answer == _AWAITS_APPROVAL
                else _call_item(call, request, base, seq, i)
                for i, (call, answer) in enumerate(zip(calls, answers, strict=True))
            ]
            items += _call_outputs(answers, base, seq)
        if compacted and not (settled_only and _UNSETTLED in answers):
            items += _compaction_items(compacted, base, wire)
    return items, last_short


def _leading_items(
    steps: Sequence[ChainStep], base: str, wire: WireOptions, *, settled_only: bool
) -> tuple[list[dict[str, Any]], bool]:
    """The items of the steps before the first model call (request-declared MCP): an
    ``mcp_list_tools`` item per listing, then an ``mcp_call`` item per approved call; and
    whether they are all settled (``settled_only``: the list stops at the first that is
    not)."""
    items: list[dict[str, Any]] = []
    for step in steps:
        if step.kind is StepKind.MODEL_CALL:
            break
        if not step.state.is_terminal:
            if settled_only:
                return items, False
            continue
        label = str(step.request_payload.get("server_label") or wire.server_label)
        if step.kind is StepKind.TOOL_LISTING:
            listing = step.response_payload if isinstance(step.response_payload, Mapping) else {}
            completed = step.state is StepState.COMPLETED
            items.append(
                {
                    "id": item_id("mcp_list_tools", base, step.sequence),
                    "type": "mcp_list_tools",
                    "server_label": label,
                    "tools": [dict(t) for t in listing.get("tools") or []] if completed else [],
                    "error": None
                    if completed
                    else str((step.error or {}).get("message") or "the listing did not finish"),
                }
            )
        elif step.is_tool:
            items.append(_approved_call_item(step, label, base))
    return items, True


def _approved_call_item(step: ChainStep, label: str, base: str) -> dict[str, Any]:
    """The ``mcp_call`` item of a call the client approved, run before the model call."""
    payload = step.request_payload
    arguments = payload.get("arguments")
    text = tool_output_text(step)
    item: dict[str, Any] = {
        "id": item_id("mcp_call", base, step.sequence),
        "type": "mcp_call",
        "server_label": label,
        "name": str(payload.get("name")),
        "arguments": str(payload.get("raw_arguments", json.dumps(arguments))),
        "approval_request_id": payload.get("approval_request_id"),
        "output": text,
        "error": None,
        "status": "completed",
    }
    if step.state is not StepState.COMPLETED:
        item["status"] = "failed" if step.state is StepState.FAILED else "incomplete"
        item["error"] = {
            "type": "mcp_tool_execution_error",
            "content": [{"type": "text", "text": text}],
        }
    return item


def _gated_tools(request: ResponsesRequest, steps: Sequence[ChainStep]) -> dict[str, str]:
    """The tools of the request's MCP servers whose calls wait for approval, each with
    its server's label: from what the servers listed in this response, or earlier in the
    conversation."""
    if not request.mcp_servers:
        return {}
    listings = conversation_listings(request.conversation)
    for step in steps:
        if step.kind is StepKind.MODEL_CALL:
            break
        if step.kind is StepKind.TOOL_LISTING and step.state is StepState.COMPLETED:
            payload = step.response_payload
            if isinstance(payload, Mapping):
                label = str(step.request_payload.get("server_label"))
                listings[label] = [dict(t) for t in payload.get("tools") or []]
    gated: dict[str, str] = {}
    for declaration in request.mcp_servers:
        for tool in listings.get(declaration.server_label, []):
            if tool_allowed(declaration, tool) and needs_approval(declaration, tool):
                gated.setdefault(str(tool.get("name")), declaration.server_label)
    return gated


def _approval_item(
    call: ToolCall, gated: Mapping[str, str], base: str, seq: int, call_index: int
) -> dict[str, Any]:
    """The ``mcp_approval_request`` of a call that waits for the client's approval."""
    return {
        "id": item_id("mcp_approval_request", base, seq, call_index),
        "type": "mcp_approval_request",
        "server_label": gated[call.name],
        "name": call.name,
        "arguments": call.arguments,
    }


def _call_item(
    call: ToolCall, request: ResponsesRequest, base: str, seq: int, call_index: int
) -> dict[str, Any]:
    """The item of one tool call: a ``custom_tool_call`` for a client custom tool (its
    one string argument is the item's ``input``), else a ``function_call``, which names a
    namespaced client function by its own name and ``namespace``. Its ``call_id`` is ours
    (:func:`~._item_kinds.call_id`), not the upstream's: it names its response, as the
    item id does."""
    tool = request.client_tool(call.name) or {}
    name = str(tool.get("client_name", call.name))
    namespace = {"namespace": tool["namespace"]} if "namespace" in tool else {}
    if tool.get("custom"):
        return {
            "id": item_id("custom_tool_call", base, seq, call_index),
            "type": "custom_tool_call",
            "call_id": call_id(base, seq, call_index),
            "name": name,
            **namespace,
            "input": custom_input(call.arguments),
        }  # no status: the SDK's Response declares custom_tool_call output items without it
    return {
        "id": item_id("function_call", base, seq, call_index),
        "type": "function_call",
        "call_id": call_id(base, seq, call_index),
        "name": name,
        **namespace,
        "arguments": call.arguments,
        "status": "completed",
    }


def custom_input(arguments: str) -> str:
    """The text a custom tool is called with, from the arguments of the function the
    upstream called (``{"input": text}``); arguments of any other shape are the text."""
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return arguments
    if isinstance(parsed, Mapping) and isinstance(parsed.get("input"), str):
        return str(parsed["input"])
    return arguments


def _reasoning_item(
    id_: str, reasoning: str, status: str, request: ResponsesRequest, wire: WireOptions
) -> dict[str, Any]:
    """The reasoning item of a model turn. Asked for a summary, the reasoning is the
    summary (open models show their reasoning whole, and clients render the summary) and
    not repeated as ``content``; sealed when ``include`` asks and the server has a key."""
    item: dict[str, Any] = {"id": id_, "type": "reasoning"}
    if request.reasoning_summary:
        item["summary"] = [{"type": "summary_text", "text": reasoning}]
    else:
        item["summary"] = []
        item["content"] = [{"type": "reasoning_text", "text": reasoning}]
    if request.sealed_reasoning and wire.reasoning_key is not None:
        item["encrypted_content"] = seal_reasoning(reasoning, wire.reasoning_key, item_id=id_)
    item["status"] = status
    return item


@attrs.frozen
class _Answer:
    """What a server-side call of a turn came to: the text the model was told, and the
    tool step that ran it (``None`` when no step ran it: the next model call's request
    told the model, or nothing did)."""

    text: str
    step: ChainStep | None = None
    run: bool = True

    @property
    def status(self) -> str:
        if self.step is None:
            return "completed" if self.run else "incomplete"
        return {StepState.COMPLETED: "completed", StepState.FAILED: "failed"}.get(
            self.step.state, "incomplete"
        )


_UNSETTLED = "unsettled"
"""A server-side call whose answer may still come or change (``settled_only``)."""
_AWAITS_APPROVAL = "awaits approval"
"""A call of a request-declared MCP tool that waits for the client's approval."""


def _call_answers(
    calls: Sequence[ToolCall],
    tool_steps: Sequence[ChainStep],
    request: ResponsesRequest,
    next_model: ChainStep | None,
    told: Mapping[str, str],
    settled_only: bool,
    gated: Mapping[str, str],
) -> list[_Answer | str | None]:
    """Per call of one model turn, in call order: its :class:`_Answer` (a server-side
    call that ended), ``None`` (a client function call, which the client answers, or a
    server-side call still running in a finished assembly), or :data:`_UNSETTLED` (with
    ``settled_only``: its answer may still come or change). ``told`` is what the next
    model call's request told the model of each call, by call id."""
    by_call = steps_by_call_id(tool_steps)
    answers: list[_Answer | str | None] = []
    for call in calls:
        queue = by_call.get(call.call_id)
        step = queue.pop(0) if queue else None
        if step is not None:
            if not step.state.is_terminal:
                answers.append(_UNSETTLED if settled_only else None)
            else:
                answers.append(_Answer(tool_output_text(step), step))
        elif call.name in request.callable_client_tool_names:
            answers.append(None)
        elif call.name in gated and next_model is None:
            answers.append(_AWAITS_APPROVAL)  # never run here: the client approves it
        elif settled_only and next_model is None:
            answers.append(_UNSETTLED)  # its step may not have started, or the next call tells it
        elif call.call_id in told:
            answers.append(_Answer(told[call.call_id]))
        else:
            answers.append(_Answer('{"error": "the tool call was not run"}', run=False))
    return answers


def _call_outputs(
    answers: Sequence[_Answer | str | None],
    base: str,
    seq: int,
) -> list[dict[str, Any]]:
    """The ``function_call_output`` items of one model turn (``server_tool_items=
    "function_call"``), in call order: what each server-side call returned, or what the
    model was told instead of running it; the list stops at the first unsettled call."""
    outputs: list[dict[str, Any]] = []
    for call_index, answer in enumerate(answers):
        if answer == _UNSETTLED:
            break
        if not isinstance(answer, _Answer):
            continue
        if answer.step is not None:
            output_id = item_id("function_call_output", base, answer.step.sequence)
        else:
            output_id = item_id("function_call_output", base, seq, call_index)
        outputs.append(
            {
                "id": output_id,
                "type": "function_call_output",
                "call_id": call_id(base, seq, call_index),
                "output": answer.text,
                "status": "completed"
                if answer.step is None or answer.step.state is StepState.COMPLETED
                else "incomplete",
            }
        )
    return outputs


def _mcp_turn_items(
    calls: Sequence[ToolCall],
    answers: Sequence[_Answer | str | None],
    request: ResponsesRequest,
    base: str,
    seq: int,
    wire: WireOptions,
    gated: Mapping[str, str],
) -> list[dict[str, Any]]:
    """The call items of one model turn (``server_tool_items="mcp_call"``), in call order:
    a client call's ``function_call``, a server-side call's ``mcp_call`` holding its
    output. The list stops at the first unsettled call (its item, and every later one,
    comes once it is answered), so an item is only ever given in its final shape."""
    items: list[dict[str, Any]] = []
    for call_index, (call, answer) in enumerate(zip(calls, answers, strict=True)):
        if answer == _UNSETTLED:
            break
        if answer == _AWAITS_APPROVAL:
            items.append(_approval_item(call, gated, base, seq, call_index))
            continue
        if call.name in request.callable_client_tool_names and not isinstance(answer, _Answer):
            items.append(_call_item(call, request, base, seq, call_index))
            continue
        label = wire.server_label
        if isinstance(answer, _Answer) and answer.step is not None:
            label = str(answer.step.request_payload.get("server_label") or label)
        item: dict[str, Any] = {
            "id": item_id("mcp_call", base, seq, call_index),
            "type": "mcp_call",
            "server_label": label,
            "name": call.name,
            "arguments": call.arguments,
            "output": None,
            "error": None,
            "status": "in_progress",
        }
        if isinstance(answer, _Answer):
            # The output is what the model was told, even when the tool failed, so a client
            # that replays the item shows the model the same conversation; ``error`` marks
            # the failure in the SDK's shape.
            item.update(output=answer.text, status=answer.status)
            if answer.status != "completed":
                item["error"] = {
                    "type": "mcp_tool_execution_error",
                    "content": [{"type": "text", "text": answer.text}],
                }
        items.append(item)
    return items


def _message_content(turn: ModelTurn, *, final: bool, logprobs: bool) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    text, refusal = turn.text, turn.refusal
    has_refusal = bool(refusal)
    # A final answer always gets its message (even empty); a turn that only calls tools
    # gets one only when the model also said something.
    if text or (final and not has_refusal):
        part: dict[str, Any] = {"type": "output_text", "text": text, "annotations": []}
        if logprobs:  # include: ["message.output_text.logprobs"]
            part["logprobs"] = [dict(entry) for entry in turn.logprobs]
        parts.append(part)
    if has_refusal:
        parts.append({"type": "refusal", "refusal": refusal})
    return parts


def sum_usage(completions: Iterable[JSON]) -> dict[str, Any] | None:
    """The usage of chat.completions summed into the Responses shape, or ``None`` when
    none of them reported usage. Accepts chat (``prompt_tokens``) and Responses
    (``input_tokens``) spellings; detail counts are summed too, not last-value-wins."""
    return _summed(
        completion.get("usage") if isinstance(completion, Mapping) else None
        for completion in completions
    )


def _summed(usages: Iterable[object]) -> dict[str, Any] | None:
    totals = {"input": 0, "output": 0, "total": 0, "cached": 0, "cache_write": 0, "reasoning": 0}
    seen = False
    for usage in usages:
        if not isinstance(usage, Mapping):
            continue
        seen = True
        input_tokens = _count(usage, "prompt_tokens", "input_tokens")
        output_tokens = _count(usage, "completion_tokens", "output_tokens")
        totals["input"] += input_tokens
        totals["output"] += output_tokens
        totals["total"] += _count(usage, "total_tokens") or input_tokens + output_tokens
        input_details = _details(usage, "prompt_tokens_details", "input_tokens_details")
        output_details = _details(usage, "completion_tokens_details", "output_tokens_details")
        totals["cached"] += _count(input_details, "cached_tokens")
        totals["cache_write"] += _count(
            input_details, "cache_write_tokens", "cache_creation_tokens"
        )
        totals["reasoning"] += _count(output_details, "reasoning_tokens")
    if not seen:
        return None
    return {
        "input_tokens": totals["input"],
        "input_tokens_details": {
            "cached_tokens": totals["cached"],
            "cache_write_tokens": totals["cache_write"],
        },
        "output_tokens": totals["output"],
        "output_tokens_details": {"reasoning_tokens": totals["reasoning"]},
        "total_tokens": totals["total"],
    }


def _count(usage: Mapping[str, Any], *fields: str) -> int:
    for field in fields:
        value = usage.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return 0


def _details(usage: Mapping[str, Any], *fields: str) -> Mapping[str, Any]:
    for field in fields:
        value = usage.get(field)
        if isinstance(value, Mapping):
            return value
    return {}
