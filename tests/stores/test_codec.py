"""The store codec: a request's text joined from its messages' known texts is exactly what
encoding it whole gives."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from responseloop.exceptions import StoreError
from responseloop.stores import _codec
from responseloop.stores._codec import decode, encode

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
messages = st.dictionaries(st.text(max_size=8), values, max_size=4)
requests = st.fixed_dictionaries(
    {"model": st.text(max_size=8), "messages": st.lists(messages, min_size=0, max_size=20)},
    optional={"tools": values, "stream": st.booleans()},
)


def whole(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    if _codec._SURROGATE.search(text):
        text = json.dumps(value, ensure_ascii=True, allow_nan=False)
    return text


@settings(max_examples=300)
@given(requests)
def test_a_request_encodes_to_the_same_text_whatever_the_codec_knew(request: Any) -> None:
    first = encode(request)
    assert first == whole(request)
    # The next call's request: the same message objects and one more.
    extended = {**request, "messages": [*request["messages"], {"role": "user", "content": "x"}]}
    assert encode(extended) == whole(extended)
    assert decode(encode(extended)) == json.loads(whole(extended))


def test_a_lone_surrogate_in_a_known_message_is_kept_escaped() -> None:
    odd = {"role": "user", "content": "\ud800"}
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}] * 9 + [odd]}
    text = encode(request)
    assert "\\ud800" in text
    assert decode(text) == request
    assert encode(request) == text  # the second time, from the known texts


def test_a_message_json_cannot_carry_is_refused() -> None:
    request = {"model": "m", "messages": [{"role": "user"}] * 9 + [{"content": float("nan")}]}
    with pytest.raises(StoreError, match="not JSON-serialisable"):
        encode(request)


def test_the_known_texts_are_bounded() -> None:
    for _ in range(3):
        encode({"model": "m", "messages": [{"n": n} for n in range(3000)]})
    assert len(_codec._MESSAGE_TEXTS) <= _codec._MESSAGE_TEXTS_LIMIT
