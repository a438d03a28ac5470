"""Sealing of reasoning (``encrypted_content``): pure, so tested directly."""

from __future__ import annotations

import base64
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from responseloop.exceptions import InvalidRequestError
from responseloop.openresponses import open_reasoning_items, parse_request
from responseloop.openresponses._continuation import continue_conversation
from responseloop.openresponses._sealing import (
    SEAL_VERSION,
    SealError,
    open_reasoning,
    reasoning_text,
    seal_reasoning,
)

KEY = b"the operator's secret"


@given(text=st.text(), secret=st.binary(min_size=1), item_id=st.text())
def test_a_sealed_text_opens_to_itself_and_seals_the_same_way_again(
    text: str, secret: bytes, item_id: str
) -> None:
    blob = seal_reasoning(text, secret, item_id=item_id)
    assert open_reasoning(blob, secret) == text
    # Deterministic, so every assembly of one chain gives the same Response.
    assert seal_reasoning(text, secret, item_id=item_id) == blob
    # The text is not in the blob (checked for texts long enough not to occur by chance).
    assert len(text.encode()) < 8 or text.encode() not in base64.urlsafe_b64decode(blob)


def test_items_with_the_same_text_get_different_blobs() -> None:
    assert seal_reasoning("same", KEY, item_id="rs_a") != seal_reasoning(
        "same", KEY, item_id="rs_b"
    )


@given(text=st.text(min_size=1), data=st.data())
def test_any_altered_byte_makes_the_blob_not_open(text: str, data: st.DataObject) -> None:
    raw = bytearray(base64.urlsafe_b64decode(seal_reasoning(text, KEY)))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= data.draw(st.integers(1, 255))
    with pytest.raises(SealError):
        open_reasoning(base64.urlsafe_b64encode(bytes(raw)).decode(), KEY)


def test_a_blob_of_another_key_does_not_open() -> None:
    with pytest.raises(SealError, match="another key"):
        open_reasoning(seal_reasoning("thoughts", b"another secret"), KEY)


def test_a_blob_of_another_version_does_not_open() -> None:
    raw = base64.urlsafe_b64decode(seal_reasoning("thoughts", KEY))
    assert raw[0] == SEAL_VERSION
    other = base64.urlsafe_b64encode(bytes([SEAL_VERSION + 1]) + raw[1:]).decode()
    with pytest.raises(SealError, match="version 2"):
        open_reasoning(other, KEY)


@pytest.mark.parametrize("blob", ["", "not base64!", "AAAA", "gAAAAABk-openai-style-blob"])
def test_garbage_does_not_open(blob: str) -> None:
    with pytest.raises(SealError):
        open_reasoning(blob, KEY)


def _replayed(*items: dict[str, object]) -> dict[str, object]:
    return {"model": "m", "store": False, "input": [{"role": "user", "content": "q"}, *items]}


def test_opened_reasoning_becomes_the_items_text() -> None:
    blob = seal_reasoning("deep thought", KEY, item_id="rs_1")
    request = parse_request(
        _replayed({"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": blob})
    )
    opened = open_reasoning_items(request, KEY)
    assert "encrypted_content" not in opened.input[1]
    assert reasoning_text(opened.input[1]) == "deep thought"
    assert (
        open_reasoning_items(parse_request(_replayed()), None).input
        == parse_request(_replayed()).input
    )


@pytest.mark.parametrize("secret", [b"another secret", None], ids=["foreign", "no key"])
def test_a_blob_that_does_not_open_is_a_400_naming_it(secret: bytes | None) -> None:
    blob = seal_reasoning("deep thought", KEY)
    request = parse_request(
        _replayed({"type": "reasoning", "summary": [], "encrypted_content": blob})
    )
    with pytest.raises(InvalidRequestError) as caught:
        open_reasoning_items(request, secret)
    assert caught.value.param == "input[1].encrypted_content"


def test_a_stored_blob_that_no_longer_opens_gives_way_to_the_items_text() -> None:
    previous = {
        "output": [
            {
                "id": "rs_1",
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": "shown"}],
                "encrypted_content": seal_reasoning("shown", b"the old secret"),
            },
            {"id": "msg_1", "type": "message", "role": "assistant", "content": []},
        ]
    }
    request = continue_conversation((), previous, parse_request({"model": "m", "input": "next"}))
    opened = open_reasoning_items(request, KEY)
    assert reasoning_text(opened.history[0]) == "shown"
    assert "encrypted_content" not in opened.history[0]


def test_a_non_string_blob_is_a_400() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_request(_replayed({"type": "reasoning", "summary": [], "encrypted_content": 7}))
    assert caught.value.param == "input[1].encrypted_content"


def test_without_the_extra_a_service_with_a_key_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from responseloop import InMemoryStore, ResponsesService, UpstreamTarget
    from responseloop.openresponses import WireOptions
    from responseloop.testing import ScriptedChatModel

    # A None entry makes the import fail, as when cryptography is not installed.
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)
    with pytest.raises(RuntimeError, match=r"responseloop\[sealing\]"):
        ResponsesService(
            store=InMemoryStore(),
            http_client=ScriptedChatModel([]),
            upstream=UpstreamTarget("http://upstream.invalid"),
            wire=WireOptions(reasoning_key="k"),
        )
