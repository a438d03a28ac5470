"""A model's reply is stored as the text it arrived in and a tool's result as the text it
was checked as: the store takes each noted text instead of encoding the value again, and
no note outlives the run."""

from __future__ import annotations

import json

import pytest

from responseloop import InMemoryStore
from responseloop.abc import Complete, StepKind, _known_texts
from responseloop.testing import ChatReply, RecordingToolExecutor, ScriptedChatModel
from tests.loop_helpers import RESPONSE_ID, run


@pytest.fixture(autouse=True)
def no_notes_before() -> None:
    with _known_texts._LOCK:
        _known_texts._TEXTS.clear()


async def test_each_payload_is_stored_as_its_noted_text_and_no_note_is_left() -> None:
    store = InMemoryStore()
    tools = RecordingToolExecutor()
    tools.add("lookup", lambda arguments: {"found": "é", **arguments})
    model = ScriptedChatModel(
        [
            ChatReply.tool_call("lookup", {"i": 1}, call_id="c1", content="é"),
            ChatReply.text("fin é"),
        ]
    )

    outcome = await run(model, store=store, tools=tools)

    assert isinstance(outcome, Complete)
    assert not _known_texts._TEXTS  # every note was taken by the store's write
    chain = await store.list_chain(RESPONSE_ID, None)
    for step in chain:
        # White box: the text InMemoryStore keeps, as a durable store would keep it.
        text = store._steps[step.id].response
        payload = step.response_payload
        own = json.dumps(payload, ensure_ascii=False, allow_nan=False)  # the codec's encoding
        if step.kind is StepKind.MODEL_CALL:
            # ScriptedChatModel sends compact JSON, which the codec would not have written.
            arrived = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
            assert text == arrived != own
        else:
            assert text == own  # as _check_tool_output encoded it
        assert text is not None
        assert json.loads(text) == payload
