"""What a model is told about the tool steps of its turn: dialect-neutral, pure, no I/O.

Every dialect answers a tool call with the same text, and the Responses assembly shows the
same text as the call's ``function_call_output``, so both read it from here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..abc._steps import ChainStep, StepState

__all__ = ["steps_by_call_id", "tool_output_text"]


def tool_output_text(step: ChainStep) -> str:
    """What the model is told a finished tool step returned: its output (a string as is,
    anything else as JSON), or an error object for a failed or cancelled step."""
    if step.state is StepState.COMPLETED:
        output = step.response_payload
        return output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
    message = (step.error or {}).get("message") or "the tool call did not finish"
    return json.dumps({"error": message}, ensure_ascii=False)


def steps_by_call_id(tool_steps: Sequence[ChainStep]) -> dict[str, list[ChainStep]]:
    """The tool steps of one model turn by the ``call_id`` they answer, in step order (a
    list, so an upstream that repeats a call id within a turn still pairs one to one)."""
    by_call: dict[str, list[ChainStep]] = {}
    for step in tool_steps:
        by_call.setdefault(str(step.request_payload.get("call_id")), []).append(step)
    return by_call
