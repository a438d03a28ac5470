"""``item_reference`` input items naming items of any earlier stored response of the same
caller, as OpenAI resolves them (the Vercel AI SDK sends earlier assistant items this way,
with no ``previous_response_id``).

Pure: the service reads the records these functions ask for and hands them back. Item ids
are deterministic from their response's id (``<prefix>_<response id without resp_>_<place>``,
:func:`~._item_kinds.item_id`; input items ``<prefix>_<base>_in<index>``, see
:func:`~._items.input_items`), so the response holding an item is read off its id: no
index of items is kept anywhere.
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
    "ReferableItems",
    "referable_items",
    "resolve_references",
    "responses_to_read",
    "too_many_responses",
    "unresolved_references",
]

MAX_REFERENCED_RESPONSES = 32
"""The most earlier responses one request's ``item_reference`` items may be read from."""

ReferableItems = Mapping[str, tuple[InputItem, ...]]
"""The items a reference to each id stands for (an output item may replay as several)."""

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
