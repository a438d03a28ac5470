"""Compaction: what a summary of the conversation is asked with, and how the upstream is
shown it in place of the conversation it stands for. Pure: no I/O.

A compaction is a call of the upstream model itself: the conversation so far, then one
user message holding the prompt (:data:`DEFAULT_COMPACTION_PROMPT`, or the operator's).
Its answer's text is the summary. Wherever the conversation is compacted (a
``compaction`` item sent back, or a compaction inside the loop) the upstream is shown a
*user* message, :func:`summary_message`: a user message because every chat upstream takes
one anywhere in the conversation (a system message after the first is refused by some,
and a mid-conversation assistant message would read as the model's own words).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "DEFAULT_COMPACTION_PROMPT",
    "SUMMARY_PREFIX",
    "compacted_window",
    "context_tokens",
    "is_summary_message",
    "summary_message",
    "summary_of",
]

DEFAULT_COMPACTION_PROMPT = (
    "You are performing a context checkpoint compaction. Write a handoff summary of the "
    "conversation above for another model that will continue the work without seeing "
    "it. Include: the user's goals and constraints, decisions made and why, what was "
    "done (tools called and what they returned that still matters), the current state, "
    "open questions, and the next steps. Keep exact names, identifiers, paths, numbers "
    "and error messages. Do not answer the user or continue the task: output only the "
    "summary."
)
"""The prompt a compaction asks the upstream with, after the conversation
(:attr:`~responseloop.openresponses.WireOptions.compaction_prompt` overrides it)."""

SUMMARY_PREFIX = "Summary of the earlier conversation:\n\n"
"""What the summary message the upstream is shown starts with."""


def summary_message(summary: str) -> dict[str, Any]:
    """The chat message that stands for a compacted conversation: a user message."""
    return {"role": "user", "content": SUMMARY_PREFIX + summary}


def is_summary_message(message: Mapping[str, Any]) -> bool:
    """Whether ``message`` is one :func:`summary_message` made."""
    content = message.get("content")
    return (
        message.get("role") == "user"
        and isinstance(content, str)
        and content.startswith(SUMMARY_PREFIX)
    )


def summary_of(completion: object) -> str:
    """The summary a compaction's chat.completion holds: its message's text."""
    if isinstance(completion, Mapping):
        choices = completion.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):
            message = choices[0].get("message")
            if isinstance(message, Mapping) and isinstance(message.get("content"), str):
                return str(message["content"])
    return ""


_KEPT_ROLES = frozenset({"system", "developer", "user"})


def compacted_window(messages: Sequence[Mapping[str, Any]], summary: str) -> list[dict[str, Any]]:
    """What a conversation of ``messages`` is once compacted into ``summary``: its
    instructions (system and developer messages) and the user's messages, in their order
    (earlier summaries left out: the new one covers them), then the summary. The
    model's turns and the tools' outputs are what the summary replaces."""
    kept = [
        dict(message)
        for message in messages
        if message.get("role") in _KEPT_ROLES and not is_summary_message(message)
    ]
    return [*kept, summary_message(summary)]


def context_tokens(completion: object, messages: Sequence[Mapping[str, Any]]) -> int:
    """How large the context of the call after ``completion`` is, in tokens: the
    upstream's own count, ``usage.total_tokens`` of its last call (its prompt and its
    answer, which the next call is sent back), or, when the upstream reported no usage,
    an estimate: the characters of ``messages`` (JSON) over four."""
    usage = completion.get("usage") if isinstance(completion, Mapping) else None
    if isinstance(usage, Mapping):
        total = usage.get("total_tokens")
        if isinstance(total, int) and not isinstance(total, bool):
            return total
        counts = [usage.get(k) for k in ("prompt_tokens", "completion_tokens")]
        ints = [c for c in counts if isinstance(c, int) and not isinstance(c, bool)]
        if ints:
            return sum(ints)
    return len(json.dumps(list(messages), ensure_ascii=False)) // 4
