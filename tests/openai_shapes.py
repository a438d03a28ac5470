"""Checks that our JSON is exactly what the official ``openai`` SDK parses.

The SDK's pydantic models accept unknown fields silently (they land in ``model_extra``),
so a plain ``model_validate`` would not notice a misspelt or invented field. These helpers
walk the parsed model and fail on any field the SDK does not know (except the three the
Open Responses spec requires on a Response, :data:`SPEC_ONLY_RESPONSE_FIELDS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import pydantic
from openai.types.responses import Response

__all__ = [
    "SPEC_ONLY_RESPONSE_FIELDS",
    "assert_no_unknown_fields",
    "sdk_view_of_event",
    "validate_response",
    "validate_strict",
]

_M = TypeVar("_M", bound=pydantic.BaseModel)

SPEC_ONLY_RESPONSE_FIELDS = frozenset({"store", "presence_penalty", "frequency_penalty"})
"""Fields the Open Responses spec requires on every Response that the SDK's ``Response``
does not declare (it keeps them as extras): the only unknown fields allowed, and only on
a Response."""


def _walk(value: object, path: str, unknown: list[str]) -> None:
    if isinstance(value, pydantic.BaseModel):
        spec_only = SPEC_ONLY_RESPONSE_FIELDS if isinstance(value, Response) else frozenset()
        for key in value.model_extra or {}:
            if key not in spec_only:
                unknown.append(f"{path}.{key}" if path else key)
        for name in type(value).model_fields:
            _walk(getattr(value, name), f"{path}.{name}" if path else name, unknown)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _walk(item, f"{path}[{index}]", unknown)
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk(item, f"{path}.{key}", unknown)


def assert_no_unknown_fields(model: pydantic.BaseModel) -> None:
    """Fail when ``model`` or any model nested in it holds a field its class does not declare."""
    unknown: list[str] = []
    _walk(model, "", unknown)
    assert not unknown, f"fields the SDK does not know: {unknown}"


_LOGPROB_EVENTS = frozenset({"response.output_text.delta", "response.output_text.done"})


def sdk_view_of_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """``event`` without the fields the spec requires and the SDK's event type does not
    declare, for the strict SDK check: the ``bytes`` of each token logprob (and of its
    ``top_logprobs``) on ``response.output_text.delta``/``.done``. The spec's ``LogProb``
    requires them, the SDK's event ``Logprob`` lacks them (its pydantic model keeps them
    as an extra), so the server sends them and only this check looks past them."""
    data = dict(event)
    if data.get("type") in _LOGPROB_EVENTS and isinstance(data.get("logprobs"), list):
        data["logprobs"] = [_without_bytes(entry) for entry in data["logprobs"]]
    return data


def _without_bytes(entry: Any) -> Any:
    if not isinstance(entry, Mapping):
        return entry
    stripped = {key: value for key, value in entry.items() if key != "bytes"}
    if isinstance(stripped.get("top_logprobs"), list):
        stripped["top_logprobs"] = [_without_bytes(top) for top in stripped["top_logprobs"]]
    return stripped


def validate_strict(model_type: type[_M], data: Any) -> _M:
    """``model_type.model_validate(data)``, failing on unknown fields anywhere inside."""
    model = model_type.model_validate(data)
    assert_no_unknown_fields(model)
    return model


def validate_response(data: Any) -> Response:
    """Parse ``data`` as the SDK's ``Response``, failing on any field it does not know."""
    return validate_strict(Response, data)
