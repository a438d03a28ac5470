"""The Conversations API (``/v1/conversations``) over a
:class:`~responseloop.abc.ConversationStore`.

A conversation is a caller's view over the stored item chains, not a second copy of them:
the store keeps, in order, references to the responses it is made of and the items added
to it directly; what is listed is read from those responses' stored input and output. A
response's items join the view once it ended ``completed`` or ``incomplete`` (a failed or
cancelled turn adds nothing: send its input again); one deleted with
``DELETE /v1/responses/{id}`` leaves the view too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from ._ids import random_id
from .abc._json import JSON
from .abc._protocols import ConversationStore, ResponseStore
from .abc._records import ConversationContents, ConversationRecord, ResponseRecord, ResponseStatus
from .exceptions import ConversationNotFound, InvalidRequestError, ResponseNotFound
from .openresponses._items import input_items, listed_item
from .openresponses._policy import submitted_body
from .openresponses._request import InputItem, parse_input_item, parse_metadata, parse_request

__all__ = ["MAX_ADDED_ITEMS", "ConversationItemNotFound", "ConversationTurn", "Conversations"]

MAX_ADDED_ITEMS = 20
"""The most items one call adds to a conversation (OpenAI's bound)."""

_SHOWN = (ResponseStatus.COMPLETED, ResponseStatus.INCOMPLETE)
"""The statuses of a response whose items are part of its conversation."""

_ID_PREFIXES = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "reasoning": "rs",
    "mcp_call": "mcp",
    "mcp_list_tools": "mcpl",
    "mcp_approval_request": "mcpr",
    "mcp_approval_response": "mcpa",
}


class ConversationItemNotFound(InvalidRequestError, LookupError):
    """No visible item of the conversation has that id: a 404."""

    http_status = 404

    def __init__(self, item_id: str) -> None:
        super().__init__(f"Item with id {item_id!r} not found.", param="item_id")


@attrs.frozen
class ConversationTurn:
    """What a response continuing a conversation starts from: the conversation's items as
    the model's history, and what the store must still find when the turn begins."""

    conversation_id: str
    history: tuple[InputItem, ...]
    expected_position: int
    active_response: str | None
    active_live: bool
    begun: bool = False
    """Whether the response holds its entry of the conversation already (a retry, or a
    recovery, of a response whose turn began)."""


def _new_conversation_id() -> str:
    return random_id("conv")


class Conversations:
    """The conversations of a :class:`~responseloop.ResponsesService`'s callers.

    Every method takes the ``caller`` identity: another caller's conversation raises
    :class:`ConversationNotFound`, exactly like an unknown id. Answers are JSON in the
    ``openai`` SDK's shapes (``Conversation``, ``ConversationItemList``,
    ``ConversationItem``, ``ConversationDeletedResource``).
    """

    def __init__(
        self,
        store: ResponseStore,
        clock: Callable[[], int],
        *,
        new_conversation_id: Callable[[], str] = _new_conversation_id,
    ) -> None:
        self._responses = store
        self._store = store if isinstance(store, ConversationStore) else None
        self._clock = clock
        self._new_id = new_conversation_id

    @property
    def kept(self) -> bool:
        """Whether the store keeps conversations (a :class:`ConversationStore`)."""
        return self._store is not None

    def _conversations(self) -> ConversationStore:
        if self._store is None:
            raise InvalidRequestError(
                "this server's store keeps no conversations", param="conversation"
            )
        return self._store

    async def create(self, body: Mapping[str, Any], *, caller: str | None) -> dict[str, Any]:
        """``POST /v1/conversations``: a new conversation with ``items`` and ``metadata``."""
        store = self._conversations()
        metadata = parse_metadata(body.get("metadata")) or {}
        raw = body.get("items")
        items = [] if raw is None else _added(raw, allow_empty=True)
        record = ConversationRecord(
            self._new_id(), caller=caller, created_at=self._clock(), metadata=metadata
        )
        await store.create_conversation(record, items)
        return conversation_object(record)

    async def retrieve(self, conversation_id: str, *, caller: str | None) -> dict[str, Any]:
        """``GET /v1/conversations/{id}``."""
        return conversation_object(await self._owned(conversation_id, caller))

    async def update(
        self, conversation_id: str, body: Mapping[str, Any], *, caller: str | None
    ) -> dict[str, Any]:
        """``POST /v1/conversations/{id}``: replace its ``metadata`` (``null`` clears it)."""
        if "metadata" not in body:
            raise InvalidRequestError("'metadata' is required", param="metadata")
        metadata = parse_metadata(body["metadata"]) or {}
        await self._owned(conversation_id, caller)
        record = await self._conversations().update_conversation(conversation_id, metadata)
        return conversation_object(record)

    async def delete(self, conversation_id: str, *, caller: str | None) -> dict[str, Any]:
        """``DELETE /v1/conversations/{id}``: the conversation and its items go for every
        reader; the responses it referenced stay (``DELETE /v1/responses/{id}`` each)."""
        await self._owned(conversation_id, caller)
        await self._conversations().delete_conversation(conversation_id)
        return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}

    async def add_items(
        self, conversation_id: str, body: Mapping[str, Any], *, caller: str | None
    ) -> dict[str, Any]:
        """``POST /v1/conversations/{id}/items``: append up to 20 items, each given an id
        of its own; refused (:class:`ConversationLocked`) while a response runs on it."""
        items = _added(body.get("items"), allow_empty=False)
        await self._owned(conversation_id, caller)
        await self._conversations().add_conversation_items(conversation_id, items)
        return item_list(items, has_more=False)

    async def list_items(
        self, conversation_id: str, query: Mapping[str, str], *, caller: str | None
    ) -> dict[str, Any]:
        """``GET /v1/conversations/{id}/items``: a page of its items (``after``, ``limit``
        1 to 100, default 20, ``order`` ``desc`` by default)."""
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise InvalidRequestError("order must be 'asc' or 'desc'", param="order")
        try:
            limit = int(query.get("limit", "20"))
        except ValueError:
            raise InvalidRequestError("limit must be an integer", param="limit") from None
        if not 1 <= limit <= 100:
            raise InvalidRequestError("limit must be between 1 and 100", param="limit")
        items = await self.items(await self._contents(conversation_id, caller))
        if order == "desc":
            items.reverse()
        after = query.get("after")
        if after is not None:
            ids = [item["id"] for item in items]
            items = items[ids.index(after) + 1 :] if after in ids else []
        return item_list(items[:limit], has_more=len(items) > limit)

    async def retrieve_item(
        self, conversation_id: str, item_id: str, *, caller: str | None
    ) -> dict[str, Any]:
        """``GET /v1/conversations/{id}/items/{item_id}``."""
        for item in await self.items(await self._contents(conversation_id, caller)):
            if item["id"] == item_id:
                return item
        raise ConversationItemNotFound(item_id)

    async def delete_item(
        self, conversation_id: str, item_id: str, *, caller: str | None
    ) -> dict[str, Any]:
        """``DELETE /v1/conversations/{id}/items/{item_id}``: the item leaves the
        conversation (an item of a response stays in that response); answers the
        conversation. Refused (:class:`ConversationLocked`) while a response runs on it,
        as adding items is: the running turn was prepared on the items as they stood."""
        contents = await self._contents(conversation_id, caller)
        if all(item["id"] != item_id for item in await self.items(contents)):
            raise ConversationItemNotFound(item_id)
        await self._conversations().delete_conversation_item(conversation_id, item_id)
        return conversation_object(contents.record)

    # -- the turns of responses ------------------------------------------------------------

    async def turn(
        self, conversation_id: str, *, caller: str | None, response_id: str
    ) -> ConversationTurn:
        """What response ``response_id`` continuing the conversation starts from: its
        items before that response's own turn (all of them for a new response).

        Raises:
            ConversationNotFound: no such conversation for ``caller``.
            InvalidRequestError: an item cannot be replayed to the model.
        """
        contents = await self._contents(conversation_id, caller)
        records = await self._records(contents, until=response_id)
        history: list[InputItem] = []
        for item in _visible(contents, records, until=response_id):
            try:
                history.append(parse_input_item(item, "conversation"))
            except InvalidRequestError as exc:
                raise InvalidRequestError(
                    f"the conversation cannot be continued: {exc.message}", param="conversation"
                ) from exc
        active = contents.record.active_response
        active_record = records.get(active) if active is not None else None
        if active is not None and active != response_id and active not in records:
            active_record = await self._find(active)
        return ConversationTurn(
            conversation_id,
            tuple(history),
            contents.record.next_position,
            active,
            active_record is not None and not active_record.status.is_terminal,
            any(entry.response_id == response_id for entry in contents.entries),
        )

    async def begin(self, turn: ConversationTurn, response_id: str) -> None:
        """Make ``response_id`` the conversation's turn
        (:meth:`~responseloop.abc.ConversationStore.begin_conversation_turn`).

        Raises:
            ConversationLocked: another response runs on it, or it changed since read.
            ConversationNotFound: it was deleted meanwhile.
        """
        await self._conversations().begin_conversation_turn(
            turn.conversation_id, response_id, expected_position=turn.expected_position
        )

    async def items(self, contents: ConversationContents) -> list[dict[str, Any]]:
        """Every visible item of a conversation, oldest first."""
        return _visible(contents, await self._records(contents, until=None), until=None)

    # -- machinery -------------------------------------------------------------------------

    async def _owned(self, conversation_id: str, caller: str | None) -> ConversationRecord:
        record = await self._conversations().get_conversation(conversation_id)
        if record.caller != caller:
            raise ConversationNotFound(conversation_id)  # another caller's is not there
        return record

    async def _contents(self, conversation_id: str, caller: str | None) -> ConversationContents:
        contents = await self._conversations().list_conversation(conversation_id)
        if contents.record.caller != caller:
            raise ConversationNotFound(conversation_id)
        return contents

    async def _records(
        self, contents: ConversationContents, *, until: str | None
    ) -> dict[str, ResponseRecord | None]:
        """The stored responses of the conversation's turns (before ``until``'s), one read
        each."""
        records: dict[str, ResponseRecord | None] = {}
        for entry in contents.entries:
            if entry.response_id is None:
                continue
            if entry.response_id == until:
                break
            record = await self._find(entry.response_id)
            if record is not None and record.caller != contents.record.caller:
                record = None  # never another caller's items, whatever the entry says
            records[entry.response_id] = record
        return records

    async def _find(self, response_id: str) -> ResponseRecord | None:
        try:
            return await self._responses.get_response(response_id)
        except ResponseNotFound:
            return None


def conversation_object(record: ConversationRecord) -> dict[str, Any]:
    """The SDK's ``Conversation`` of ``record``."""
    return {
        "id": record.id,
        "object": "conversation",
        "created_at": record.created_at,
        "metadata": dict(record.metadata),
    }


def item_list(items: Sequence[Mapping[str, Any]], *, has_more: bool) -> dict[str, Any]:
    """The SDK's ``ConversationItemList`` of ``items`` (``first_id``/``last_id`` null when
    empty, as ``/v1/responses/{id}/input_items`` answers)."""
    return {
        "object": "list",
        "data": [dict(item) for item in items],
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": has_more,
    }


def response_items(record: ResponseRecord | None) -> list[dict[str, Any]]:
    """The items a stored response gives its conversation: its own input items, then its
    output, once it ended ``completed`` or ``incomplete``; none otherwise."""
    if record is None or record.status not in _SHOWN or not isinstance(record.response, Mapping):
        return []
    listed = input_items(parse_request(submitted_body(record.request)), record.id)
    output = record.response.get("output")
    if isinstance(output, list):
        listed += [dict(item) for item in output if isinstance(item, Mapping)]
    return listed


def _visible(
    contents: ConversationContents,
    records: Mapping[str, ResponseRecord | None],
    *,
    until: str | None,
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for entry in contents.entries:
        if entry.response_id is not None:
            if entry.response_id == until:
                break
            listed = response_items(records.get(entry.response_id))
        else:
            listed = [dict(entry.item or {})]
        items += [item for item in listed if item.get("id") not in contents.hidden]
    return items


def _added(raw: JSON, *, allow_empty: bool) -> list[dict[str, Any]]:
    """The items of an ``items`` field, validated and in their listed shape, each with an
    id of its own (so no two items of a conversation share one)."""
    if not isinstance(raw, list):
        raise InvalidRequestError("'items' must be an array of items", param="items")
    if not raw and not allow_empty:
        raise InvalidRequestError("'items' must hold at least one item", param="items")
    if len(raw) > MAX_ADDED_ITEMS:
        raise InvalidRequestError(
            f"at most {MAX_ADDED_ITEMS} items may be added at a time", param="items"
        )
    added: list[dict[str, Any]] = []
    for index, value in enumerate(raw):
        param = f"items[{index}]"
        item = parse_input_item(value, param)
        prefix = _ID_PREFIXES.get(str(item["type"]))
        listed = None if prefix is None else listed_item({**item, "id": random_id(prefix)}, "")
        if listed is None:
            raise InvalidRequestError(
                f"items of type {item['type']!r} cannot be added to a conversation",
                param=f"{param}.type",
            )
        added.append(listed)
    return added
