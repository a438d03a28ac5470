"""The output item kinds of a Response: one table, the seam a new kind extends. Pure.

Each kind says how its items are named (the id prefix, so the assembly and the stream
event mapper give one item the same id) and how ``response.output_item.added`` shows an
item of it before it is done. The items themselves are made in one place, the assembly's
``_output_items``, from the chain; the stream event mapper announces and closes whatever
that makes, so a kind whose items have no stream events of their own (no deltas) needs
nothing more on the stream.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

__all__ = [
    "CALL_ID_PREFIX",
    "OUTPUT_ITEM_KINDS",
    "OutputItemKind",
    "call_id",
    "in_progress",
    "item_id",
]


def _shown_whole(item: Mapping[str, Any]) -> dict[str, Any]:
    return {**item, "status": "in_progress"}


@attrs.frozen
class OutputItemKind:
    """How the Responses wire treats the output items of one ``type``.

    Attributes:
        id_prefix: what its item ids start with (``msg`` in ``msg_<response>_<step>``).
        in_progress: the item as ``response.output_item.added`` shows it, given the
            finished item (texts empty, ``status: in_progress``).
    """

    id_prefix: str
    in_progress: Callable[[Mapping[str, Any]], dict[str, Any]] = _shown_whole


def _message(item: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": item["id"],
        "type": "message",
        "role": "assistant",
        "status": "in_progress",
        "content": [],
    }


def _reasoning(item: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": item["id"],
        "type": "reasoning",
        "summary": [],
        "content": [],
        "status": "in_progress",
    }


def _function_call(item: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": item["id"],
        "type": "function_call",
        "call_id": item["call_id"],
        "name": item["name"],
        **({"namespace": item["namespace"]} if "namespace" in item else {}),
        "arguments": "",
        "status": "in_progress",
    }


def _custom_tool_call(item: Mapping[str, Any]) -> dict[str, Any]:
    namespace = {"namespace": item["namespace"]} if "namespace" in item else {}
    return {
        "id": item["id"],
        "type": "custom_tool_call",
        "call_id": item["call_id"],
        "name": item["name"],
        **namespace,
        "input": "",
    }


def _mcp_call(item: Mapping[str, Any]) -> dict[str, Any]:
    # Announced before its arguments are streamed and its tool has answered.
    return {**item, "arguments": "", "output": None, "error": None, "status": "in_progress"}


def _mcp_list_tools(item: Mapping[str, Any]) -> dict[str, Any]:
    # Announced before the server answered: no tools yet (the SDK's item has no status).
    return {**item, "tools": [], "error": None}


def _as_is(item: Mapping[str, Any]) -> dict[str, Any]:
    return dict(item)  # whole when announced (the SDK's item has no status)


OUTPUT_ITEM_KINDS: Mapping[str, OutputItemKind] = {
    "reasoning": OutputItemKind("rs", _reasoning),
    "message": OutputItemKind("msg", _message),
    "function_call": OutputItemKind("fc", _function_call),
    "function_call_output": OutputItemKind("fco"),
    "custom_tool_call": OutputItemKind("ctc", _custom_tool_call),
    "mcp_call": OutputItemKind("mcp", _mcp_call),
    "mcp_list_tools": OutputItemKind("mcpl", _mcp_list_tools),
    "mcp_approval_request": OutputItemKind("mcpr", _as_is),
    "compaction": OutputItemKind("cmp", _as_is),
}
"""Every output item kind a Response may hold, by ``type``."""


def item_id(kind: str, base: str, *place: int) -> str:
    """The id of the item of ``kind`` at ``place`` (the step's sequence, then the call's
    index in its turn) in the response whose id, without ``resp_``, is ``base``."""
    return "_".join([OUTPUT_ITEM_KINDS[kind].id_prefix, base, *(str(p) for p in place)])


CALL_ID_PREFIX = "call"
"""What the ``call_id`` of a call item the server makes starts with."""


def call_id(base: str, seq: int, call_index: int) -> str:
    """The ``call_id`` the wire gives the call at ``call_index`` of the model turn of
    step ``seq`` in the response whose id, without ``resp_``, is ``base``
    (``call_<base>_<seq>_<idx>``): self-locating like an item id, so a replay that carries
    only call ids (pydantic-ai's default) still names the stored turn it replays. The
    upstream's own id of the call stays inside the loop (its steps are matched by it)."""
    return "_".join([CALL_ID_PREFIX, base, str(seq), str(call_index)])


def in_progress(item: Mapping[str, Any]) -> dict[str, Any]:
    """``item`` as ``response.output_item.added`` shows it."""
    kind = OUTPUT_ITEM_KINDS.get(item["type"])
    return kind.in_progress(item) if kind is not None else _shown_whole(item)
