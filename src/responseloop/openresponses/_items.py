"""The input items of a stored request, as ``GET /v1/responses/{id}/input_items`` lists them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._request import ResponsesRequest

__all__ = ["input_items", "listed_item"]


def input_items(request: ResponsesRequest, response_id: str) -> list[dict[str, Any]]:
    """This turn's input items in the official SDK's ``ResponseItem`` shapes, in input order.

    Items without an id get a stable one derived from the response id and their position.
    ``item_reference`` items are listed as the items they resolved to when the request was
    continued, and left out otherwise (they carry nothing of their own).
    """
    base = response_id.removeprefix("resp_")
    items: list[dict[str, Any]] = []
    for index, item in enumerate(request.input):
        listed = _listed(item, f"{base}_in{index}")
        if listed is not None:
            items.append(listed)
    return items


def listed_item(item: Mapping[str, Any], suffix: str) -> dict[str, Any] | None:
    """One parsed input item in the SDK's listed shape (an item without an id gets one
    ending in ``suffix``), or ``None`` for a kind that lists as nothing of its own."""
    return _listed(item, suffix)


def _listed(item: Mapping[str, Any], suffix: str) -> dict[str, Any] | None:
    kind = item.get("type")
    if kind == "message":
        role = item["role"]
        content = [dict(part) for part in item["content"]]
        if role == "assistant":
            for part in content:
                if part.get("type") == "output_text":
                    part.setdefault("annotations", [])
        return {
            "id": item.get("id", f"msg_{suffix}"),
            "type": "message",
            "role": role,
            "content": content,
            "status": "completed",
        }
    if kind == "function_call":
        return {
            "id": item.get("id", f"fc_{suffix}"),
            "type": "function_call",
            "call_id": item["call_id"],
            "name": item["name"],
            "arguments": item["arguments"],
            "status": "completed",
        }
    if kind == "function_call_output":
        return {
            "id": item.get("id", f"fco_{suffix}"),
            "type": "function_call_output",
            "call_id": item["call_id"],
            "output": item["output"],
            "status": "completed",
        }
    if kind == "mcp_call":
        listed = {key: item[key] for key in ("id", "type", "server_label", "name", "arguments")}
        error = item.get("error")
        return {
            **listed,
            "output": item.get("output"),
            "error": error,
            "status": "completed" if error is None else "failed",
            **(
                {"approval_request_id": item["approval_request_id"]}
                if "approval_request_id" in item
                else {}
            ),
        }
    if kind == "mcp_list_tools":
        listing = {key: item[key] for key in ("id", "type", "server_label", "tools")}
        return {**listing, "error": item.get("error")}
    if kind == "mcp_approval_request":
        return {key: item[key] for key in ("id", "type", "server_label", "name", "arguments")}
    if kind == "mcp_approval_response":
        return {
            "id": item.get("id", f"mcpa_{suffix}"),
            "type": "mcp_approval_response",
            "approval_request_id": item["approval_request_id"],
            "approve": item["approve"],
            "reason": item.get("reason"),
        }
    if kind == "reasoning":
        reasoning: dict[str, Any] = {
            "id": item.get("id", f"rs_{suffix}"),
            "type": "reasoning",
            "summary": item["summary"],
        }
        # As sent: what replays the item (its text, its sealed blob) is listed back too.
        for field in ("content", "encrypted_content"):
            if field in item:
                reasoning[field] = item[field]
        return reasoning
    return None
