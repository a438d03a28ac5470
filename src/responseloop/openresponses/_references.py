"""``item_reference`` input items naming items of any earlier stored response of the same
caller, as OpenAI resolves them (the Vercel AI SDK sends earlier assistant items this way,
with no ``previous_response_id``).

Pure: the service reads the records these functions ask for and hands them back. Item ids
are deterministic from their response's id (``<prefix>_<response id without resp_>_<place>``,
:func:`~._item_kinds.item_id`; input items ``<prefix>_<base>_in<index>``, see
:func:`~._items.input_items`), so the response holding an item is read off its id: no
index of items is kept anywhere.

The same reads restore what a client that replays history by itself left out of an item
of ours (:func:`restore_replayed`): fields it dropped, and the server-side ``mcp_call``
items of a model turn it replayed only part of.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import attrs

from ..abc._records import ResponseRecord
from ..exceptions import InvalidRequestError
from ._continuation import output_as_input
from ._items import input_items
from ._policy import submitted_body
from ._request import InputItem, ResponsesRequest, parse_input_item, parse_request

__all__ = [
    "MAX_REFERENCED_RESPONSES",
    "ModelTurns",
    "ReferableItems",
    "model_turns",
    "referable_items",
    "replayed_ids",
    "resolve_references",
    "responses_to_read",
    "restore_replayed",
    "too_many_responses",
    "unresolved_references",
]

MAX_REFERENCED_RESPONSES = 32
"""The most earlier responses one request's ``item_reference`` items may be read from."""

ReferableItems = Mapping[str, tuple[InputItem, ...]]
"""The items a reference to each id stands for (an output item may replay as several)."""

ModelTurns = Mapping[str, tuple[InputItem, ...]]
"""By output item id, the output items of the model turn that made it, in output order."""

# The places of output items with one number after the base (``msg_<base>_<seq>``); every
# other kind has the step's sequence and the call's index (``fc_<base>_<seq>_<idx>``), and
# ``fco`` may have either.
_ONE_PLACE_PREFIXES = frozenset({"msg", "rs"})
_INPUT_PLACE = re.compile(r"^in\d+$")


def unresolved_references(request: ResponsesRequest) -> tuple[tuple[int, str], ...]:
    """The ``(index, id)`` of each ``item_reference`` of ``request.input`` that the
    conversation it continues did not resolve, in input order."""
    return tuple(
        (index, str(item["id"]))
        for index, item in enumerate(request.input)
        if item["type"] == "item_reference"
    )


def responses_to_read(item_id: str) -> tuple[str, ...]:
    """The ids of the responses that may hold the item ``item_id``, the likeliest first
    (one for ids made with the default response ids; a second only when a custom response
    id ends in ``_<digits>`` could make the split ambiguous). Empty for an id no response
    of ours made.
    """
    prefix, _, rest = item_id.partition("_")
    parts = rest.split("_")
    if not prefix or len(parts) < 2:
        return ()
    if _INPUT_PLACE.match(parts[-1]):
        splits = [1]
    else:
        numeric = 0
        while numeric < min(2, len(parts) - 1) and parts[-1 - numeric].isdigit():
            numeric += 1
        splits = list(range(numeric, 0, -1))
        if prefix in _ONE_PLACE_PREFIXES:
            splits.reverse()
    return tuple(f"resp_{'_'.join(parts[:-places])}" for places in splits)


def referable_items(record: ResponseRecord | None, caller: str | None) -> ReferableItems:
    """Every item of ``record`` a request of ``caller`` may reference, by id: its output
    items and its input items (with the ids ``GET /responses/{id}/input_items`` lists).

    Nothing of a response that is missing, another caller's (so its ids look exactly like
    unknown ones), or stored with ``store: false``.
    """
    if record is None or record.caller != caller or not record.store:
        return {}
    items: dict[str, tuple[InputItem, ...]] = {}
    try:
        request = parse_request(submitted_body(record.request))
    except InvalidRequestError:
        request = None  # a record stored by another version: its input is not referable
    if request is not None:
        for listed in input_items(request, record.id):
            items[listed["id"]] = (parse_input_item(listed, "input"),)
    output = (record.response or {}).get("output")
    for item in output if isinstance(output, list) else ():
        if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
            continue
        try:
            items[item["id"]] = output_as_input({"output": [item]})
        except InvalidRequestError:
            continue  # an item that cannot be replayed cannot be referenced either
    return items


def resolve_references(request: ResponsesRequest, found: ReferableItems) -> ResponsesRequest:
    """``request`` with each ``item_reference`` replaced by the items ``found`` for its id.

    Raises:
        InvalidRequestError: a reference names no item found (``param`` is
            ``input[i].id``).
    """
    resolved: list[InputItem] = []
    for index, item in enumerate(request.input):
        if item["type"] != "item_reference":
            resolved.append(item)
            continue
        items = found.get(str(item["id"]))
        if items is None:
            raise _unknown_reference(request, index, str(item["id"]))
        resolved.extend(items)
    return attrs.evolve(request, input=tuple(resolved))


def _unknown_reference(request: ResponsesRequest, index: int, item_id: str) -> InvalidRequestError:
    """The error for a reference to an item no stored response of the caller holds."""
    return InvalidRequestError(
        f"item_reference {item_id!r} matches no stored item", param=f"{_param(request, index)}.id"
    )


def too_many_responses(request: ResponsesRequest, index: int) -> InvalidRequestError:
    """The error for references spanning more than :data:`MAX_REFERENCED_RESPONSES`."""
    return InvalidRequestError(
        f"item_reference items may name items of at most {MAX_REFERENCED_RESPONSES} "
        "earlier responses",
        param=f"{_param(request, index)}.id",
    )


def _param(request: ResponsesRequest, index: int) -> str:
    return request.input_param(len(request.history) + index)  # index is in request.input


def replayed_ids(request: ResponsesRequest) -> tuple[str, ...]:
    """The ids of the items of ``request.input`` (but ``item_reference`` items) that may be
    items of an earlier stored response, the last sent first: the order their responses
    are read in for :func:`restore_replayed`, so the latest turns are restored first when
    there are more than :data:`MAX_REFERENCED_RESPONSES` of them."""
    ids = [
        item["id"]
        for item in request.input
        if item["type"] != "item_reference" and isinstance(item.get("id"), str)
    ]
    return tuple(reversed(ids))


def model_turns(record: ResponseRecord | None, caller: str | None) -> ModelTurns:
    """The model turns of ``record``'s output, by the id of each output item in them (the
    items of one turn share the step's sequence, the first place after the base of their
    ids: ``fc_<base>_<seq>_<idx>``, ``msg_<base>_<seq>``).

    Nothing of a response that is missing, another caller's, or not stored, as
    :func:`referable_items`.
    """
    if record is None or record.caller != caller or not record.store:
        return {}
    base = record.id.removeprefix("resp_")
    output = (record.response or {}).get("output")
    turns: dict[str, list[InputItem]] = {}
    of_item: dict[str, str] = {}
    for item in output if isinstance(output, list) else ():
        if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
            continue
        prefix, _, rest = item["id"].partition("_")
        place = rest.removeprefix(f"{base}_") if rest.startswith(f"{base}_") else None
        if not prefix or not place or not place.split("_")[0].isdigit():
            continue  # not an id of ours for this response
        try:
            (replayed,) = output_as_input({"output": [item]})
        except (InvalidRequestError, ValueError):
            continue
        turn = place.split("_")[0]
        turns.setdefault(turn, []).append(replayed)
        of_item[item["id"]] = turn
    return {item_id: tuple(turns[turn]) for item_id, turn in of_item.items()}


def restore_replayed(
    request: ResponsesRequest, stored: ReferableItems, turns: ModelTurns
) -> ResponsesRequest:
    """``request`` with what a client replaying its history left out of our items put back
    (docs/compatibility.md, "Server-side tool calls on the wire"):

    - an input item whose id is a stored item's (``stored``, from :func:`referable_items`)
      and whose ``type`` is the same gets the fields it lacks or sends as ``null`` from
      the stored item; fields it sends are kept as sent, even when they differ (the
      client's edit wins);
    - an input item whose id is an output item of a stored model turn (``turns``, from
      :func:`model_turns`) gets that turn's server-side ``mcp_call`` items the request
      holds nowhere (by id, in its history or input) put back in their place: each
      before the first item of its turn replayed after it, or after the turn's last
      replayed item.

    Items with no id of ours, or of a response not in ``stored`` and ``turns``, are left
    exactly as sent. ``request`` itself when nothing was restored.
    """
    present = {item["id"] for item in request.conversation if isinstance(item.get("id"), str)}
    last_of_turn: dict[str, int] = {}  # the input index of each turn's last replayed item
    for index, item in enumerate(request.input):
        item_id = item.get("id")
        if item["type"] != "item_reference" and isinstance(item_id, str) and item_id in turns:
            last_of_turn[_turn_key(turns[item_id])] = index
    restored: list[InputItem] = []
    changed = False
    for index, item in enumerate(request.input):
        item_id = item.get("id")
        if item["type"] == "item_reference" or not isinstance(item_id, str):
            restored.append(item)
            continue
        turn = turns.get(item_id, ())
        place = next((i for i, t in enumerate(turn) if t.get("id") == item_id), len(turn))
        for missing in _left_out(turn[:place], present):
            restored.append(missing)
            present.add(missing["id"])
            changed = True
        filled = _filled(item, stored.get(item_id, ()))
        changed = changed or filled is not item
        restored.append(filled)
        if turn and last_of_turn.get(_turn_key(turn)) == index:
            for missing in _left_out(turn[place + 1 :], present):
                restored.append(missing)
                present.add(missing["id"])
                changed = True
    return attrs.evolve(request, input=tuple(restored)) if changed else request


def _turn_key(turn: tuple[InputItem, ...]) -> str:
    return str(turn[0]["id"])


def _left_out(items: tuple[InputItem, ...], present: set[str]) -> list[InputItem]:
    return [item for item in items if item["type"] == "mcp_call" and item["id"] not in present]


def _filled(item: InputItem, stored: tuple[InputItem, ...]) -> InputItem:
    """``item`` with the fields it lacks (or sends as null) taken from the one stored item
    of its id and type: clients replaying an ``mcp_call`` send its ``output`` as null or
    not at all, and no client clears a stored value to null on purpose."""
    if len(stored) != 1 or stored[0]["type"] != item["type"]:
        return item
    missing = {
        key: value
        for key, value in stored[0].items()
        if item.get(key) is None and value is not None
    }
    return {**item, **missing} if missing else item
