"""A stored response: its record, its status and how it is finished or reopened; and a
stored conversation, the ordered view over responses and added items that it is.

Every class here is a frozen attrs value: build new ones with :func:`attrs.evolve`.
This module is pure: it imports nothing that does I/O (a test keeps it so).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ._json import JSON, _frozen_mapping

__all__ = [
    "ConversationContents",
    "ConversationEntry",
    "ConversationRecord",
    "ResponseRecord",
    "ResponseStatus",
    "ResponseUpdate",
]


class ResponseStatus(enum.StrEnum):
    """The status of a whole response, as the Responses API spells it."""

    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    INCOMPLETE = "incomplete"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """Whether the response is finished (successfully or not)."""
        return self not in (ResponseStatus.QUEUED, ResponseStatus.IN_PROGRESS)


@attrs.frozen
class ResponseRecord:
    """A stored response: the request as received, who asked, and how it ended.

    ``request`` is the ``/v1/responses`` body (never the caller's API key); a turn that
    continued another also carries, under ``responseloop_conversation``, the conversation
    the turn after it continues (see :func:`~responseloop.openresponses.stored_request`).
    ``response`` is the assembled Response JSON once finalised. ``caller`` is the owner
    identity the host uses for access checks.

    ``store`` is the request's ``store`` flag. ``store=False`` keeps the response only
    while it runs (its steps are what a resuming worker needs): finalising it deletes the
    record and every step, so afterwards it can be neither retrieved nor continued with
    ``previous_response_id``. The caller gets the assembled JSON from the run itself.
    """

    id: str
    request: Mapping[str, Any] = attrs.field(converter=_frozen_mapping)
    model: str | None = None
    caller: str | None = None
    status: ResponseStatus = ResponseStatus.IN_PROGRESS
    created_at: int = 0
    response: JSON = None
    store: bool = True


@attrs.frozen
class ResponseUpdate:
    """A change of a stored response's outcome, as :meth:`ResponseStore.update_response`
    takes it: :meth:`finished` records how it ended, :meth:`reopened` makes a finished
    response run again."""

    status: ResponseStatus = attrs.field()
    response: JSON = None

    @classmethod
    def finished(cls, status: ResponseStatus, response: JSON) -> ResponseUpdate:
        """The response ended with terminal ``status`` and the assembled ``response`` JSON."""
        if not status.is_terminal:
            raise ValueError(f"a finished response has a terminal status, not {status.value}")
        return cls(status, response)

    @classmethod
    def reopened(cls) -> ResponseUpdate:
        """The response runs again (``in_progress``, no assembled JSON): a host's retry of
        a response that failed on a retryable upstream error."""
        return cls(ResponseStatus.IN_PROGRESS)

    @property
    def finishes(self) -> bool:
        """Whether this update finishes the response (else it reopens it)."""
        return self.status.is_terminal

    @status.validator
    def _check(self, attribute: attrs.Attribute[ResponseStatus], value: ResponseStatus) -> None:
        if not value.is_terminal and (
            value is not ResponseStatus.IN_PROGRESS or self.response is not None
        ):
            raise ValueError("a reopened response is in_progress with no assembled JSON")


def _metadata(value: Mapping[str, str]) -> Mapping[str, str]:
    return _frozen_mapping(dict(value))


@attrs.frozen
class ConversationRecord:
    """A stored conversation (``conv_…``): who owns it, when it was made, its metadata.

    ``caller`` is the owner identity, as on :class:`ResponseRecord`: another caller's
    conversation is not there for it. ``next_position`` is the position the next entry
    takes (entries are numbered from 0 and never renumbered), so it also says whether
    anything was appended since it was read. ``active_response`` is the response of the
    latest turn begun on the conversation (``None`` before the first): while that
    response has not ended, the conversation is in use.
    """

    id: str
    caller: str | None = None
    created_at: int = 0
    metadata: Mapping[str, str] = attrs.field(factory=dict, converter=_metadata)
    next_position: int = 0
    active_response: str | None = None


@attrs.frozen
class ConversationEntry:
    """One entry of a conversation, at ``position``: either a turn (``response_id``, whose
    stored input and output items it stands for: no second copy of them is kept) or one
    item added to the conversation directly (``item``, as listed, with its ``id``)."""

    position: int
    response_id: str | None = None
    item: Mapping[str, Any] | None = attrs.field(default=None)

    @item.validator
    def _check(self, attribute: attrs.Attribute[Any], value: Mapping[str, Any] | None) -> None:
        if (value is None) == (self.response_id is None):
            raise ValueError("a conversation entry is a response or an item, never both")


def _entries(value: Iterable[ConversationEntry]) -> tuple[ConversationEntry, ...]:
    return tuple(value)


def _ids(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


@attrs.frozen
class ConversationContents:
    """A conversation as read in one go: its record, its entries in position order, and
    the ids of the items of its responses that were deleted from it (``hidden``)."""

    record: ConversationRecord
    entries: tuple[ConversationEntry, ...] = attrs.field(converter=_entries)
    hidden: frozenset[str] = attrs.field(factory=frozenset, converter=_ids)
