"""Checks that what the server emits is valid on both wires it claims to speak.

Every Response and stream event must parse as the official ``openai`` SDK's type with no
field it does not know (``tests/openai_shapes.py``) AND validate under the Open Responses
OpenAPI (``tests/data/openresponses_openapi_2026-04-24.json``, source in
``tests/data/SOURCES.md``) with jsonschema. The validators are built once, at import.

Extension rule (a shared decision of the project): an item or event whose ``type`` the
spec does not define (``mcp_call``, ``custom_tool_call``, the ``response.mcp_call.*``
events, …) is checked by the SDK strictly and must carry the spec's generic fields (items
``id``, ``type``, and ``status`` where the SDK's type has one; events ``type``,
``sequence_number``); everything around it
still validates under the spec. Items get this from a generic extension member added to
the spec's ``ItemField`` union (it matches only types the union does not name). The two
profiles of reasoning text events (the SDK's ``response.reasoning_text.*`` and the spec's
``response.reasoning.*``) are each checked under the other side's name too, so both are
held to both schemas.

One correction of the spec (``_load_document``): the echoed ``json_schema`` text format's
``schema`` may be an object, not only null.

One documented difference: the ``error`` event carries the SDK's flat ``code``,
``message`` and ``param`` and the spec's required ``error`` object with the same values;
the SDK's type has no ``error`` field, so that one field is not counted as unknown there.
Likewise the token logprobs of ``response.output_text.delta``/``.done`` carry the
``bytes`` the spec's ``LogProb`` requires and the SDK's event ``Logprob`` lacks
(``tests.openai_shapes.sdk_view_of_event``).
"""

from __future__ import annotations

import json
import pathlib
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import jsonschema
import pydantic
import referencing
import referencing.jsonschema
from openai.types.responses import Response, ResponseOutputItem, ResponseStreamEvent

from tests.openai_shapes import assert_no_unknown_fields, sdk_view_of_event, validate_response

__all__ = [
    "check_emitted_compacted",
    "check_emitted_event",
    "check_emitted_response",
    "check_emitted_stream",
    "check_stream_grammar",
    "validate_ws_error",
]

_DOCUMENT_URI = "urn:openresponses:openapi:2026-04-24"
_SCHEMAS = "#/components/schemas/"


def _sdk_items_without_status() -> frozenset[str]:
    """The output item types whose SDK class declares no ``status`` field."""
    members = typing.get_args(ResponseOutputItem)
    if members and typing.get_origin(ResponseOutputItem) is typing.Annotated:
        members = typing.get_args(members[0])
    return frozenset(
        typing.get_args(member.model_fields["type"].annotation)[0]
        for member in members
        if "status" not in member.model_fields
    )


def _load_document() -> dict[str, Any]:
    path = pathlib.Path(__file__).parent / "data" / "openresponses_openapi_2026-04-24.json"
    document: dict[str, Any] = json.loads(path.read_text())
    schemas = document["components"]["schemas"]
    union = schemas["ItemField"]
    known = [
        schemas[member["$ref"].removeprefix(_SCHEMAS)]["properties"]["type"]["enum"][0]
        for member in union["oneOf"]
    ]
    # The extension rule, as one more member of the union: any other type, with the
    # spec's generic item fields (its own fields are the SDK's to check). Where the two
    # wires disagree the client's wins: an item kind whose SDK type has no ``status``
    # (``custom_tool_call``) cannot carry one without failing the SDK's check.
    schemas["ExtensionItem"] = {
        "type": "object",
        "required": ["id", "type"],
        "properties": {
            "id": {"type": "string"},
            "type": {"type": "string", "not": {"enum": known}},
            "status": {"type": "string"},
        },
        "if": {"properties": {"type": {"not": {"enum": sorted(_sdk_items_without_status())}}}},
        "then": {"required": ["status"]},
    }
    union["oneOf"] = [*union["oneOf"], {"$ref": _SCHEMAS + "ExtensionItem"}]
    # A defect of this version of the spec, corrected: the echoed json_schema text format
    # allows only a null ``schema`` (an opaque type lost in generation), yet the request's
    # format (JsonSchemaResponseFormatParam) is an object, and that is what is echoed.
    echoed = schemas["JsonSchemaResponseFormat"]["properties"]
    assert echoed["schema"] == {"anyOf": [{"type": "null"}]}, "the spec changed: re-check"
    echoed["schema"] = {"anyOf": [{"type": "object"}, {"type": "null"}]}
    return document


_DOCUMENT = _load_document()
_REGISTRY: referencing.Registry[Any] = referencing.Registry().with_resource(
    _DOCUMENT_URI,
    referencing.Resource.from_contents(
        _DOCUMENT, default_specification=referencing.jsonschema.DRAFT202012
    ),
)


def _validator(schema_name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        {"$ref": f"{_DOCUMENT_URI}{_SCHEMAS}{schema_name}"}, registry=_REGISTRY
    )


_RESPONSE_VALIDATOR = _validator("ResponseResource")
_EVENT_VALIDATORS = {
    schema["properties"]["type"]["enum"][0]: _validator(name)
    for name, schema in _DOCUMENT["components"]["schemas"].items()
    if name.endswith("StreamingEvent")
}
_EVENT_ADAPTER: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)
# The same event under the SDK's name and the spec's (WireOptions.event_names).
_SDK_TO_SPEC = {
    "response.reasoning_text.delta": "response.reasoning.delta",
    "response.reasoning_text.done": "response.reasoning.done",
}
_SPEC_TO_SDK = {spec: sdk for sdk, spec in _SDK_TO_SPEC.items()}
TERMINAL_TYPES = frozenset({"response.completed", "response.incomplete", "response.failed"})


def _path(error: jsonschema.ValidationError) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)


def _spec_validate(
    validator: jsonschema.Draft202012Validator, obj: Mapping[str, Any], what: str
) -> None:
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.path)))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        assert best is not None
        raise AssertionError(
            f"{what} does not validate under the Open Responses OpenAPI at "
            f"'{_path(best) or '.'}': {best.message}"
        )


def check_emitted_response(obj: Mapping[str, Any]) -> Response:
    """Fail unless ``obj`` is a Response valid under the SDK (no unknown field) and under
    the spec's ``ResponseResource``; the AssertionError names the path that is wrong.
    Returns the SDK's parse of it."""
    assert isinstance(obj, Mapping), f"a Response must be an object, not {type(obj).__name__}"
    try:
        parsed = validate_response(dict(obj))
    except pydantic.ValidationError as exc:
        raise AssertionError(f"the SDK's Response rejects it: {exc}") from None
    except AssertionError as exc:
        raise AssertionError(f"Response: {exc}") from None
    _spec_validate(_RESPONSE_VALIDATOR, obj, "the Response")
    return parsed


_COMPACTED_VALIDATOR = _validator("CompactResource")


def check_emitted_compacted(obj: Mapping[str, Any]) -> None:
    """Fail unless ``obj`` is a ``response.compaction`` object (``POST
    /v1/responses/compact``) valid under the spec's ``CompactResource`` and, field by
    field, under the SDK's ``CompactedResponse``: its ``compaction`` items and usage with
    no unknown field. (The SDK types ``output`` as output items, whose message is an
    assistant's; OpenAI's compacted window lists the user's messages there, which the
    SDK builds without validating, so those are the spec's to check.)"""
    from openai.types.responses import CompactedResponse, ResponseCompactionItem, ResponseUsage

    assert isinstance(obj, Mapping), f"not an object: {type(obj).__name__}"
    _spec_validate(_COMPACTED_VALIDATOR, obj, "the compacted response")
    unknown = set(obj) - set(CompactedResponse.model_fields)
    assert not unknown, f"fields the SDK's CompactedResponse does not know: {sorted(unknown)}"
    assert obj["object"] == "response.compaction"
    compactions = [item for item in obj["output"] if item.get("type") == "compaction"]
    assert len(compactions) == 1, "a compacted window ends with one compaction item"
    assert obj["output"][-1] is compactions[0]
    for item in compactions:
        assert_no_unknown_fields(ResponseCompactionItem.model_validate(item))
    assert_no_unknown_fields(ResponseUsage.model_validate(obj["usage"]))
    for item in obj["output"][:-1]:
        assert (item.get("type"), item.get("role")) == ("message", "user"), item


def _sdk_event(event: Mapping[str, Any]) -> None:
    data = sdk_view_of_event(event)
    if data.get("type") in _SPEC_TO_SDK:
        data["type"] = _SPEC_TO_SDK[data["type"]]
    if data.get("type") == "error":
        data.pop("error", None)  # the spec's copy of the flat fields (module docstring)
    try:
        model = _EVENT_ADAPTER.validate_python(data)
    except pydantic.ValidationError as exc:
        raise AssertionError(f"the SDK's event types reject {event.get('type')!r}: {exc}") from None
    assert model.type == data["type"], f"the SDK read {event.get('type')!r} as {model.type!r}"
    try:
        assert_no_unknown_fields(model)
    except AssertionError as exc:
        raise AssertionError(f"{event.get('type')}: {exc}") from None


def check_emitted_event(event: Mapping[str, Any]) -> None:
    """Fail unless ``event`` is a stream event valid under the SDK's ``ResponseStreamEvent``
    union (no unknown field) and under the spec's matching ``*StreamingEvent`` schema, or,
    for a type the spec does not define, carries its generic ``type`` and
    ``sequence_number``. A Response inside the event is checked as a Response."""
    assert isinstance(event, Mapping), f"an event must be an object, not {type(event).__name__}"
    kind = event.get("type")
    assert isinstance(kind, str), f"an event needs a string 'type', got {kind!r}"
    seq = event.get("sequence_number")
    valid_seq = isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0
    assert valid_seq, f"{kind}: sequence_number must be an integer >= 0, got {seq!r}"
    _sdk_event(event)
    spec_kind = _SDK_TO_SPEC.get(kind, kind)
    validator = _EVENT_VALIDATORS.get(spec_kind)
    if validator is not None:
        _spec_validate(validator, {**event, "type": spec_kind}, f"the {kind} event")
    if isinstance(event.get("response"), Mapping):
        try:
            check_emitted_response(event["response"])
        except AssertionError as exc:
            raise AssertionError(f"{kind}.response: {exc}") from None


# Deltas and their .done events: (family, field of the .done event with the whole text).
_DELTAS = {
    "response.output_text.delta": "output_text",
    "response.refusal.delta": "refusal",
    "response.reasoning_text.delta": "reasoning_text",
    "response.reasoning.delta": "reasoning_text",
    "response.reasoning_summary_text.delta": "summary_text",
    "response.function_call_arguments.delta": "arguments",
    "response.mcp_call_arguments.delta": "arguments",
    "response.custom_tool_call_input.delta": "input",
}
_DONES = {
    "response.output_text.done": ("output_text", "text"),
    "response.refusal.done": ("refusal", "refusal"),
    "response.reasoning_text.done": ("reasoning_text", "text"),
    "response.reasoning.done": ("reasoning_text", "text"),
    "response.reasoning_summary_text.done": ("summary_text", "text"),
    "response.function_call_arguments.done": ("arguments", "arguments"),
    "response.mcp_call_arguments.done": ("arguments", "arguments"),
    "response.custom_tool_call_input.done": ("input", "input"),
}


@attrs.define
class _ItemState:
    id: str
    type: str
    texts: dict[tuple[str, int], str] = attrs.Factory(dict)
    finished: dict[tuple[str, int], str] = attrs.Factory(dict)
    done: Mapping[str, Any] | None = None


def _text_key(event: Mapping[str, Any], family: str) -> tuple[str, int]:
    if family == "summary_text":
        return family, int(event["summary_index"])
    return family, int(event.get("content_index", 0))


def _check_done_item(state: _ItemState, item: Mapping[str, Any], where: str) -> None:
    assert (item.get("id"), item.get("type")) == (state.id, state.type), (
        f"{where}: output_item.done is {item.get('type')} {item.get('id')}, "
        f"but {state.type} {state.id} was added at this index"
    )
    for (family, index), text in state.finished.items():
        if family in ("output_text", "refusal", "reasoning_text"):
            parts = item.get("content") or []
            field = "refusal" if family == "refusal" else "text"
            got = parts[index].get(field) if index < len(parts) else None
            assert got == text, f"{where}.content[{index}].{field} is not the text its deltas made"
        elif family == "summary_text":
            parts = item.get("summary") or []
            got = parts[index].get("text") if index < len(parts) else None
            assert got == text, f"{where}.summary[{index}].text is not the text its deltas made"
        else:
            assert item.get(family) == text, (
                f"{where}.{family} is not what its deltas made: {item.get(family)!r} != {text!r}"
            )


def check_emitted_stream(
    events: Sequence[Mapping[str, Any]], *, ended_with_done: bool, resumed: bool = False
) -> None:
    """Fail unless ``events`` (the stream's payloads in order, without the ``[DONE]``
    sentinel) is a stream of the spec's grammar whose every event passes
    :func:`check_emitted_event`, and the stream's last frame was ``data: [DONE]``.

    The grammar: a stream refused before it began is one ``error`` event; else the
    first event is ``response.created`` (``response.queued`` and
    ``response.in_progress`` may follow it); exactly one terminal event
    (``response.completed|incomplete|failed``, or an ``error`` event for a stream cut
    short) and it is the last; strictly increasing ``sequence_number``; an item's
    ``output_item.added`` comes before any other event of its ``output_index`` and nothing
    of that index after its ``output_item.done``; deltas concatenate to their ``.done``
    value, to the done item and to the item in the terminal Response.

    ``resumed``: the events follow an earlier part of the stream (``GET ?stream=true&
    starting_after=N``), so the stream need not start with ``response.created`` and may
    speak of items announced before it.
    """
    assert ended_with_done, "the stream did not end with 'data: [DONE]'"
    for index, event in enumerate(events):
        try:
            check_emitted_event(event)
        except AssertionError as exc:
            raise AssertionError(f"events[{index}]: {exc}") from None
    check_stream_grammar(events, resumed=resumed)


def check_stream_grammar(events: Sequence[Mapping[str, Any]], *, resumed: bool = False) -> None:
    """The grammar part of :func:`check_emitted_stream`, for events already checked one by
    one (``tests/wire_capture.py`` checks each as it is sent)."""
    assert events or resumed, "the stream has no events"
    if not events:
        return
    sequence = [int(event["sequence_number"]) for event in events]
    for index in range(1, len(sequence)):
        assert sequence[index] > sequence[index - 1], (
            f"events[{index}].sequence_number {sequence[index]} does not increase"
        )
    types = [str(event["type"]) for event in events]
    if types == ["error"]:
        return  # refused before it began (e.g. another worker runs the response)
    if not resumed:
        assert types[0] == "response.created", f"events[0] is {types[0]}, not response.created"
    ends = [i for i, t in enumerate(types) if t in TERMINAL_TYPES or t == "error"]
    assert ends == [len(events) - 1], (
        f"the stream needs exactly one terminal event and it last; terminal at {ends} of "
        f"{len(events)} events"
    )
    items: dict[int, _ItemState] = {}
    for index, event in enumerate(events[:-1]):
        kind = types[index]
        where = f"events[{index}] ({kind})"
        if "output_index" not in event:
            continue
        output_index = int(event["output_index"])
        if kind == "response.output_item.added":
            assert output_index not in items, f"{where}: output_index {output_index} added twice"
            item = event["item"]
            items[output_index] = _ItemState(str(item["id"]), str(item["type"]))
            continue
        state = items.get(output_index)
        if state is None:
            assert resumed, f"{where}: output_index {output_index} before its output_item.added"
            continue
        assert state.done is None, f"{where}: output_index {output_index} after its item was done"
        if "item_id" in event:
            assert event["item_id"] == state.id, f"{where}: item_id is not {state.id}"
        if kind in _DELTAS:
            key = _text_key(event, _DELTAS[kind])
            assert key not in state.finished, f"{where}: a delta after its .done"
            state.texts[key] = state.texts.get(key, "") + str(event["delta"])
        elif kind in _DONES:
            family, field = _DONES[kind]
            key = _text_key(event, family)
            assert key not in state.finished, f"{where}: a second .done"
            assert event[field] == state.texts.get(key, ""), (
                f"{where}.{field} is not the concatenation of its deltas"
            )
            state.finished[key] = str(event[field])
        elif kind == "response.output_item.done":
            _check_done_item(state, event["item"], where)
            state.done = event["item"]
    terminal = events[-1]
    if types[-1] == "error":
        return
    output = terminal["response"].get("output") or []
    by_id = {item.get("id"): item for item in output}
    for output_index, state in sorted(items.items()):
        if state.done is None:
            raise AssertionError(f"output_index {output_index} ({state.id}) was never done")
        final = by_id.get(state.id)
        if final is not None:
            assert final == state.done, (
                f"the terminal Response's item {state.id} is not its output_item.done item"
            )


_WS_ERROR_VALIDATOR = _validator("WebSocketErrorEvent")


def validate_ws_error(envelope: Mapping[str, Any]) -> None:
    """Fail unless ``envelope`` is a WebSocket mode error: the spec's
    ``WebSocketErrorEvent`` and the ``openai`` SDK's ``ResponseWsError`` (no unknown field)."""
    from openai.types.responses.responses_server_event import ResponseWsError

    _spec_validate(_WS_ERROR_VALIDATOR, envelope, "the WebSocket error")
    try:
        parsed = ResponseWsError.model_validate(dict(envelope))
    except pydantic.ValidationError as exc:
        raise AssertionError(f"the SDK's ResponseWsError rejects it: {exc}") from None
    assert_no_unknown_fields(parsed)
