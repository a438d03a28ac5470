"""How a server speaks the Responses wire where clients differ: one frozen value. Pure.

The loop's results are the same whatever these say; only how they are shown (and which
request declarations are accepted) changes. The defaults are what the clients people build
on (the ``openai`` SDKs, the Agents SDK, pydantic-ai, langchain, the AI SDK, Codex) accept.
"""

from __future__ import annotations

from typing import Literal

import attrs

from ..core._compaction import DEFAULT_COMPACTION_PROMPT

__all__ = ["WireOptions"]


def _key(value: bytes | str | None) -> bytes | None:
    if isinstance(value, str):
        return value.encode()
    return value


@attrs.frozen
class WireOptions:
    """The choices of how responses, events and requests are spoken on the wire.

    Attributes:
        server_tool_items: how a call of a server-side tool appears in ``output``:
            ``"mcp_call"`` (one ``mcp_call`` item holding the call and its output, which
            every client framework shows and never runs itself) or ``"function_call"``
            (a ``function_call`` item and a ``function_call_output`` item, as in 0.1).
        server_label: the ``server_label`` of an ``mcp_call`` item for a server-side
            tool that is not from an MCP server of its own.
        event_names: the names of the reasoning text events: ``"openai"`` (the SDKs'
            ``response.reasoning_text.*``) or ``"openresponses"`` (the spec's
            ``response.reasoning.*``).
        hosted_tools: what a request declaring a hosted tool the server does not provide
            (``web_search``, ``image_generation``, …) gets: ``"skip"`` (the declaration is
            not offered to the model) or ``"refuse"`` (a 400 naming it).
        reasoning_key: the secret that seals ``reasoning.encrypted_content`` and opens it
            when a client sends it back (any length; text is UTF-8 encoded; needs the
            ``sealing`` extra). ``None``: ``encrypted_content`` is left out, even when
            ``include`` asks for it, and any blob sent back is refused (400).
        replay_reasoning_as: the field of an assistant message that carries reasoning
            sent back by the client to the upstream (``reasoning_content``); ``None``
            sends none (for upstreams that reject it).
        compaction_prompt: what a compaction asks the upstream model, after the
            conversation (:data:`~responseloop.core.DEFAULT_COMPACTION_PROMPT` by
            default). Compaction summaries are sealed with ``reasoning_key`` (under a key
            of their own derived from it), so compaction needs it.
    """

    server_tool_items: Literal["mcp_call", "function_call"] = "mcp_call"
    server_label: str = "responseloop"
    event_names: Literal["openai", "openresponses"] = "openai"
    hosted_tools: Literal["skip", "refuse"] = "skip"
    reasoning_key: bytes | None = attrs.field(default=None, converter=_key, repr=False)
    replay_reasoning_as: str | None = "reasoning_content"
    compaction_prompt: str = DEFAULT_COMPACTION_PROMPT
