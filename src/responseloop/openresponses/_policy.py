"""The Open Responses policy of stored responses: what a retry, a finished record and a
continued conversation mean, decided over values the service read from its store.

Pure: the service reads the records and steps these functions ask for and writes what
they decide; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ..abc._records import ResponseRecord, ResponseStatus
from ..abc._steps import ChainStep, Complete, Fail, StepDescriptor, StepKind, StepState
from ..exceptions import InvalidRequestError, PreviousResponseNotFound
from ._continuation import continue_conversation
from ._request import InputItem, ResponsesRequest, parse_request

__all__ = [
    "MAX_CONVERSATION_TURNS",
    "RETRYABLE_UPSTREAM_STATUSES",
    "Conversation",
    "continue_turn",
    "earlier_turn_to_read",
    "is_retryable_failure",
    "previous_turn",
    "revival_step",
    "stored_outcome",
    "stored_request",
    "submitted_body",
]

RETRYABLE_UPSTREAM_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
"""Upstream HTTP statuses a later try may not meet again."""

MAX_CONVERSATION_TURNS = 1000
"""The most earlier turns one request may continue with ``previous_response_id``."""

# The key of a stored request that holds what the turn after it needs. Namespaced, so no
# Open Responses field is ever mistaken for it; a body that sends it has it dropped.
_CONVERSATION_KEY = "responseloop_conversation"


def is_retryable_failure(error: Mapping[str, Any]) -> bool:
    """Whether a failed model call (its stored ``error``) may succeed when tried again:
    an upstream error with a retryable status, or with none (a lost connection)."""
    if error.get("type") != "upstream_error":
        return False
    status = error.get("status")
    return status is None or status in RETRYABLE_UPSTREAM_STATUSES


def _failed_model_call(last_step: ChainStep | None) -> ChainStep | None:
    if (
        last_step is not None
        and last_step.kind is StepKind.MODEL_CALL
        and last_step.state is StepState.FAILED
    ):
        return last_step
    return None


def revival_step(status: ResponseStatus, last_step: ChainStep | None) -> StepDescriptor | None:
    """The model call that revives a stored response when a host retries it, or ``None``.

    A response revives when it failed on a retryable upstream error (429, 5xx, a lost
    connection) in its last top-level step: the retry runs it again from where it failed,
    a new model call with the same body replacing the failed one, and every completed
    step staying as it was. Anything else a retry answers as stored.

    Args:
        status: the stored response's status.
        last_step: the last step of its top-level chain (``None`` for an empty chain).
    """
    failed = _failed_model_call(last_step) if status is ResponseStatus.FAILED else None
    if failed is None or not is_retryable_failure(failed.error or {}):
        return None
    return StepDescriptor.model_call(failed.request_payload)


def stored_outcome(
    status: ResponseStatus, response: Mapping[str, Any] | None, last_step: ChainStep | None
) -> Complete | Fail | ResponseStatus:
    """What running a response that already ended answers with.

    A failure's outcome is rebuilt from its failed model call when that is its last
    top-level step, so its error (with the upstream's status) is the same every time;
    else from the stored Response's ``error``. Any other status is its own outcome.
    """
    if status is not ResponseStatus.FAILED:
        return status
    failed = _failed_model_call(last_step)
    if failed is not None and failed.error is not None:
        return Fail(failed.error)
    return Fail((response or {}).get("error") or {})


def _items(items: Sequence[InputItem]) -> tuple[InputItem, ...]:
    return tuple(items)


@attrs.frozen
class Conversation:
    """What a stored turn hands the turn after it.

    ``items`` are everything its model was shown before its own work (the earlier turns'
    inputs and outputs, then its input with ``item_reference`` items resolved); ``turns``
    counts the earlier turns it continued (0 for a conversation's first turn).
    """

    items: tuple[InputItem, ...] = attrs.field(converter=_items)
    turns: int = 0


def previous_turn(
    record: ResponseRecord | None, response_id: str, caller: str | None
) -> ResponseRecord:
    """``record`` (read as ``response_id``) if ``caller`` may continue it.

    Raises:
        PreviousResponseNotFound: it does not exist or is another caller's.
        InvalidRequestError: it has not ended
            (``param`` is ``previous_response_id``).
    """
    if record is None or record.caller != caller:
        raise PreviousResponseNotFound(response_id)
    if not record.status.is_terminal or record.response is None:
        raise InvalidRequestError(
            f"previous response {response_id!r} has not finished yet",
            param="previous_response_id",
        )
    if record.request.get("conversation") is not None:
        # Its history is its conversation's, read where it is (no copy is stored with it).
        raise InvalidRequestError(
            f"previous response {response_id!r} belongs to a conversation: continue it with"
            " 'conversation'",
            param="previous_response_id",
        )
    return record


def _recorded(record: ResponseRecord) -> Conversation | None:
    """The conversation ``record`` stored for the turn after it; ``None`` for a turn that
    continued another one and was stored without it (by an earlier responseloop)."""
    kept = record.request.get(_CONVERSATION_KEY)
    if isinstance(kept, Mapping):
        return Conversation(kept["items"], kept["turns"])
    request = parse_request(submitted_body(record.request))
    if request.previous_response_id is None:
        return Conversation(request.input, 0)
    return None


def earlier_turn_to_read(read: Sequence[ResponseRecord]) -> str | None:
    """The id of the next earlier turn to read to continue a conversation, or ``None``.

    ``read`` are the turns read so far, the newest (the request's previous turn) first.
    One suffices: each stored turn carries its conversation. Only turns stored without
    one send the reader on to the turn before them.

    Raises:
        InvalidRequestError: the conversation is longer than
            :data:`MAX_CONVERSATION_TURNS` turns.
    """
    oldest = read[-1]
    if _recorded(oldest) is not None:
        return None
    if len(read) >= MAX_CONVERSATION_TURNS:
        raise _too_long()
    return parse_request(submitted_body(oldest.request)).previous_response_id


def continue_turn(
    request: ResponsesRequest, read: Sequence[ResponseRecord]
) -> tuple[ResponsesRequest, Conversation | None]:
    """``request`` continued from the earlier turns ``read`` (newest first, as
    :func:`earlier_turn_to_read` asked for them), and the conversation to store with it.

    Without ``previous_response_id`` (``read`` empty) the request is its own and stores no
    conversation.

    Raises:
        InvalidRequestError: the conversation is too long, or a previous Response holds
            output that cannot be replayed (``param`` is ``previous_response_id``).
    """
    if not read:
        return request, None
    conversation = _recorded(read[-1])
    if conversation is None:
        raise ValueError("the oldest turn read must carry its conversation")
    for older, newer in zip(read[:0:-1], read[-2::-1], strict=True):
        turn = _continue(conversation, older, parse_request(submitted_body(newer.request)))
        conversation = Conversation(turn.conversation, conversation.turns + 1)
    if conversation.turns + 1 > MAX_CONVERSATION_TURNS:
        raise _too_long()
    continued = _continue(conversation, read[0], request)
    return continued, Conversation(continued.conversation, conversation.turns + 1)


def _continue(
    conversation: Conversation, previous: ResponseRecord, request: ResponsesRequest
) -> ResponsesRequest:
    return continue_conversation(conversation.items, previous.response or {}, request)


def _too_long() -> InvalidRequestError:
    return InvalidRequestError(
        "the conversation is too long to continue", param="previous_response_id"
    )


def stored_request(body: Mapping[str, Any], conversation: Conversation | None) -> dict[str, Any]:
    """The ``request`` to store for a response: the body as received, with the
    conversation the next turn continues when the body continued an earlier one."""
    stored = submitted_body(body)
    if conversation is not None:
        stored[_CONVERSATION_KEY] = {
            "turns": conversation.turns,
            "items": [dict(item) for item in conversation.items],
        }
    return stored


def submitted_body(stored: Mapping[str, Any]) -> dict[str, Any]:
    """The body as the caller sent it, from a stored ``request`` (what a retry of the same
    response must send again)."""
    return {key: value for key, value in stored.items() if key != _CONVERSATION_KEY}
