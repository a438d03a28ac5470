"""Checks for every object the server emits: a JSON Response, a stream event, a stream.

This small version checks against the openai SDK's types only (through
:mod:`tests.openai_shapes` and :mod:`tests.stream_checks`); the full one adds the Open
Responses OpenAPI.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tests.openai_shapes import assert_no_unknown_fields, validate_response
from tests.stream_checks import STREAM_EVENT, TERMINAL_TYPES, check_stream

__all__ = ["check_emitted_event", "check_emitted_response", "check_emitted_stream"]


def check_emitted_response(obj: Any) -> None:
    """Fail unless ``obj`` is a Response the SDK parses with no unknown field."""
    validate_response(obj)


def check_emitted_event(event: Any) -> None:
    """Fail unless ``event`` is a stream event the SDK parses with no unknown field."""
    model = STREAM_EVENT.validate_python(event)
    assert_no_unknown_fields(model)
    assert model.type == event["type"], event


def check_emitted_stream(events: Sequence[Any], *, ended_with_done: bool) -> None:
    """Fail unless ``events`` is one well-formed stream ending in its terminal Response.

    ``ended_with_done``: whether ``data: [DONE]`` followed the events (not judged here).
    """
    del ended_with_done
    assert events, "an empty stream"
    assert events[-1]["type"] in TERMINAL_TYPES, events[-1]["type"]
    check_stream(events, events[-1]["response"])
