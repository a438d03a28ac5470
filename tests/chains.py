"""Builders of chat completions and chains, and a pure driver of a transition.

The driver plays the loop's part without I/O: it asks the transition for the next action,
"runs" each step from a script (model replies) and a table of tool functions, and appends
the finished steps, so transition rules and assembly can be tested on exact chains.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from responseloop import LoopConfig
from responseloop.abc import (
    JSON,
    AppendSteps,
    ChainStep,
    Complete,
    Fail,
    Scope,
    StepKind,
    StepState,
    ToolSchema,
    Transition,
)

__all__ = [
    "ModelError",
    "completion",
    "drive",
    "model_step",
    "scope_with",
    "tool_step",
]

USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


def completion(
    content: str | None = None,
    *,
    calls: Iterable[tuple[str, str, JSON]] = (),
    finish_reason: str | None = None,
    usage: Mapping[str, Any] | None = USAGE,
    **message_fields: Any,
) -> dict[str, Any]:
    """A chat.completion; ``calls`` are ``(call_id, name, arguments)`` (arguments as JSON,
    or already a string)."""
    message: dict[str, Any] = {"role": "assistant", "content": content, **message_fields}
    tool_calls = [
        {
            "id": call_id,
            "type": "function",
            "function": {
                "name": name,
                "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
            },
        }
        for call_id, name, arguments in calls
    ]
    if tool_calls:
        message["tool_calls"] = tool_calls
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "upstream-model",
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish_reason or ("tool_calls" if tool_calls else "stop"),
            }
        ],
    }
    if usage is not None:
        body["usage"] = dict(usage)
    return body


def model_step(
    sequence: int,
    reply: JSON,
    *,
    request: Mapping[str, Any] | None = None,
    state: StepState = StepState.COMPLETED,
    error: Mapping[str, Any] | None = None,
    scope: str | None = None,
) -> ChainStep:
    """A model-call step; ``reply`` is its chat.completion."""
    return ChainStep(
        id=f"step-{sequence}",
        kind=StepKind.MODEL_CALL,
        state=state,
        sequence=sequence,
        request_payload=request or {"model": "m", "messages": []},
        response_payload=reply if state is StepState.COMPLETED else None,
        error=error,
        scope=scope,
    )


def tool_step(
    sequence: int,
    name: str,
    call_id: str,
    result: JSON = None,
    *,
    arguments: JSON = None,
    state: StepState = StepState.COMPLETED,
    error: Mapping[str, Any] | None = None,
) -> ChainStep:
    """A tool-call step for call ``call_id`` of tool ``name``."""
    return ChainStep(
        id=f"step-{sequence}",
        kind=StepKind.TOOL_CALL,
        state=state,
        sequence=sequence,
        request_payload={"name": name, "call_id": call_id, "arguments": arguments or {}},
        response_payload=result if state is StepState.COMPLETED else None,
        error=error,
    )


def scope_with(*names: str) -> Scope:
    """A top-level scope offering server-side tools ``names``."""
    return Scope("resp_test", None, 0, {name: ToolSchema(name) for name in names})


@attrs.frozen
class ModelError:
    """A scripted model reply that fails the model call with ``error``."""

    error: Mapping[str, Any]


ToolFunction = Callable[[JSON], JSON]


def _succeed(arguments: JSON) -> JSON:
    return {"ok": True}


def drive(
    transition: Transition,
    replies: Sequence[Mapping[str, Any] | ModelError],
    *,
    scope: Scope,
    tools: Mapping[str, ToolFunction] | None = None,
    config: LoopConfig | None = None,
    max_decisions: int = 100,
    listings: Mapping[str, JSON | Exception] | None = None,
) -> tuple[list[ChainStep], Complete | Fail]:
    """Run ``transition`` to its decision, answering model calls (and compactions) from
    ``replies`` in order (a final ``"done"`` text once they run out), tool calls with
    ``tools`` (a function that raises fails its step) and tool listings with
    ``listings`` by server label (an exception fails the listing). Tool steps keep the
    payload the transition gave them. Raises ``AssertionError`` when it does not terminate."""
    config = config or LoopConfig()
    tools = tools or {}
    script = list(replies)
    chain: list[ChainStep] = []
    for _ in range(max_decisions):
        action = transition.decide(chain, scope, config)
        if not isinstance(action, AppendSteps):
            return chain, action
        for descriptor in action.steps:
            sequence = len(chain) + 1
            payload = descriptor.request_payload
            if descriptor.kind in (StepKind.MODEL_CALL, StepKind.COMPACTION):
                # A compaction is a call of the model too: it takes the next reply.
                reply = script.pop(0) if script else completion("done")
                if isinstance(reply, ModelError):
                    step = model_step(
                        sequence, None, request=payload, state=StepState.FAILED, error=reply.error
                    )
                else:
                    step = model_step(sequence, reply, request=payload)
                chain.append(attrs.evolve(step, kind=descriptor.kind))
                continue
            if descriptor.kind is StepKind.TOOL_LISTING:
                label = str(payload["server_label"])
                listed = (listings or {})[label]
                failed = isinstance(listed, Exception)
                chain.append(
                    ChainStep(
                        id=f"step-{sequence}",
                        kind=StepKind.TOOL_LISTING,
                        state=StepState.FAILED if failed else StepState.COMPLETED,
                        sequence=sequence,
                        request_payload=payload,
                        response_payload=None if isinstance(listed, Exception) else listed,
                        error={"type": "tool_error", "code": "server_error", "message": str(listed)}
                        if failed
                        else None,
                    )
                )
                continue
            name, call_id = str(payload["name"]), str(payload["call_id"])
            assert name in scope.tools, f"the transition ran {name!r}, not a server tool"
            function = tools.get(name, _succeed)
            try:
                result = function(payload["arguments"])
            except Exception as exc:
                error = {"type": "tool_error", "code": "server_error", "message": str(exc)}
                failed_step = tool_step(
                    sequence,
                    name,
                    call_id,
                    arguments=payload["arguments"],
                    state=StepState.FAILED,
                    error=error,
                )
                chain.append(attrs.evolve(failed_step, request_payload=payload))
            else:
                done = tool_step(sequence, name, call_id, result, arguments=payload["arguments"])
                chain.append(attrs.evolve(done, request_payload=payload))
    raise AssertionError(f"no decision after {max_decisions} actions")
