"""Continuation of a conversation with ``previous_response_id`` (DESIGN §5).

Pure: the caller loads the previous turn from its store; this decides what the model is
shown. The conversation is the previous turn's whole conversation (its own history and
input), then the previous Response's output items, then the new input. Instructions are
not carried over: the new request's own ``instructions`` (or none) apply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ..exceptions import InvalidRequestError
from ._request import InputItem, ResponsesRequest, history_tools, parse_input_item

__all__ = ["continue_conversation", "continue_from", "continue_request", "output_as_input"]


def continue_request(
    previous_request: ResponsesRequest,
    previous_response: Mapping[str, Any],
    request: ResponsesRequest,
) -> ResponsesRequest:
    """``request`` continued from the previous turn.

    Args:
        previous_request: the previous turn's request, itself continued when it had a
            ``previous_response_id`` (so its :attr:`~ResponsesRequest.conversation` is the
            whole conversation so far; store ``history`` with it, or rebuild it this way).
        previous_response: the previous turn's Response JSON.
        request: the new request.

    Returns:
        ``request`` with ``history`` set to the earlier conversation, and its
        ``item_reference`` items replaced by the items they name.

    Raises:
        InvalidRequestError: the previous Response holds output items that cannot be
            replayed to the model (``param`` is ``previous_response_id``).
    """
    return continue_conversation(previous_request.conversation, previous_response, request)


def continue_conversation(
    conversation: Sequence[InputItem],
    previous_response: Mapping[str, Any],
    request: ResponsesRequest,
) -> ResponsesRequest:
    """``request`` continued from a previous turn whose model was shown ``conversation``
    (that turn's :attr:`~ResponsesRequest.conversation`, as stored with it) and answered
    ``previous_response``: :func:`continue_request` without the previous request.

    Raises:
        InvalidRequestError: as :func:`continue_request`.
    """
    return continue_from(tuple(conversation) + output_as_input(previous_response), request)


def continue_from(history: Sequence[InputItem], request: ResponsesRequest) -> ResponsesRequest:
    """``request`` after the items ``history`` (what the model was shown and answered
    before it, e.g. a conversation's items): ``history`` set, the ``item_reference`` items
    naming one of them replaced by it, and the tools its ``additional_tools`` offered kept
    offered."""
    history = tuple(history)
    by_id = {str(item["id"]): item for item in history if "id" in item}
    resolved = tuple(
        by_id.get(str(item["id"]), item) if item["type"] == "item_reference" else item
        for item in request.input
    )
    tools = request.tools + history_tools(history, request.tools)
    return attrs.evolve(request, history=history, input=resolved, tools=tools)


def output_as_input(response: Mapping[str, Any]) -> tuple[InputItem, ...]:
    """The ``output`` items of a Response as input items of a later request."""
    output = response.get("output")
    if not isinstance(output, list):
        raise InvalidRequestError(
            "the previous response has no output to continue from", param="previous_response_id"
        )
    items: list[InputItem] = []
    for item in output:
        try:
            items.append(parse_input_item(item, "previous_response_id"))
        except InvalidRequestError as exc:
            raise InvalidRequestError(
                f"the previous response cannot be continued: {exc.message}",
                param="previous_response_id",
            ) from exc
    return tuple(items)
