"""Bad input through the ASGI app: what the JSON parser accepts but no store or encoder can
hold (lone surrogates anywhere, NaN) is a 400 naming the ``param`` and nothing of it is
stored; a stored response holding such a string (from the model) can always be read back;
bodies over the cap are a 413 (in the ASGI app and the httpx2 transport); and
hypothesis-generated bodies never make a server error."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from responseloop import (
    InMemoryStore,
    ResponseLoopTransport,
    ResponseRecord,
    ResponsesService,
    UpstreamTarget,
    create_app,
)
from responseloop.adapters._body import unstorable
from responseloop.testing import ChatReply, ScriptedChatModel

BASE = "http://responseloop.test/v1"


class CountingStore(InMemoryStore):
    """An in-memory store that remembers every response created in it."""

    def __init__(self) -> None:
        super().__init__()
        self.created: list[str] = []

    async def create_response(self, record: ResponseRecord) -> None:
        self.created.append(record.id)
        await super().create_response(record)


def service_of(model: ScriptedChatModel, store: InMemoryStore | None = None) -> ResponsesService:
    return ResponsesService(
        store=store if store is not None else CountingStore(),
        http_client=model,
        upstream=UpstreamTarget("http://upstream.invalid/v1", "/chat/completions"),
    )


@asynccontextmanager
async def app_client(service: ResponsesService, **app: Any) -> AsyncIterator[httpx2.AsyncClient]:
    asgi = create_app(service, **app)
    async with asgi.lifespan():
        transport = httpx2.ASGITransport(app=asgi)
        async with httpx2.AsyncClient(transport=transport, base_url=BASE) as client:
            yield client


def raw(body: dict[str, Any]) -> bytes:
    # ensure_ascii (the default) writes a lone surrogate as the escape "\ud800", which
    # every JSON parser accepts: exactly what a client can send.
    return json.dumps(body).encode()


LONE = "\ud800"

SURROGATE_CASES = [
    ({"model": "m", "input": f"hi {LONE}"}, "input"),
    (
        {
            "model": "m",
            "input": [{"role": "user", "content": [{"type": "input_text", "text": LONE}]}],
        },
        "input[0].content[0].text",
    ),
    ({"model": "m", "input": "hi", "metadata": {"k": LONE}}, "metadata.k"),
    ({"model": "m", "input": "hi", "metadata": {LONE: "v"}}, "metadata"),
    ({"model": "m", "input": "hi", "metadata": {"odd key": LONE}}, 'metadata["odd key"]'),
    ({"model": "m", "input": "hi", "instructions": "be " + LONE}, "instructions"),
    (
        {
            "model": "m",
            "input": "hi",
            "tools": [
                {"type": "function", "name": "f", "description": LONE, "parameters": {}},
            ],
        },
        "tools[0].description",
    ),
    ({"model": LONE, "input": "hi"}, "model"),
]


@pytest.mark.parametrize(("body", "param"), SURROGATE_CASES)
@pytest.mark.parametrize("stream", [False, True])
async def test_a_lone_surrogate_anywhere_is_a_400_naming_the_param_and_nothing_is_stored(
    body: dict[str, Any], param: str, stream: bool
) -> None:
    store = CountingStore()
    async with app_client(service_of(ScriptedChatModel([]), store)) as client:
        answer = await client.post(
            "/responses",
            content=raw({**body, "stream": stream}),
            headers={"content-type": "application/json"},
        )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert "lone surrogate" in error["message"]
    assert store.created == []


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
async def test_a_number_json_does_not_have_is_a_400(constant: str) -> None:
    store = CountingStore()
    body = f'{{"model": "m", "input": "hi", "temperature": {constant}}}'.encode()
    async with app_client(service_of(ScriptedChatModel([]), store)) as client:
        answer = await client.post("/responses", content=body)
    assert answer.status_code == 400, answer.text
    assert "not valid JSON" in answer.json()["error"]["message"]
    assert store.created == []


async def test_a_stored_response_holding_a_lone_surrogate_from_the_model_is_readable() -> None:
    model = ScriptedChatModel([ChatReply.text(f"odd {LONE} text"), ChatReply.text(LONE)])
    async with app_client(service_of(model)) as client:
        created = await client.post("/responses", json={"model": "m", "input": "hi"})
        assert created.status_code == 200, created.text
        response_id = created.json()["id"]
        again = await client.get(f"/responses/{response_id}")
        items = await client.get(f"/responses/{response_id}/input_items")
        async with client.stream(
            "POST", "/responses", json={"model": "m", "input": "hi", "stream": True}
        ) as streamed:
            frames = [line async for line in streamed.aiter_lines()]
    for answer in (created, again, items):
        assert answer.status_code == 200
        json.loads(answer.content)  # UTF-8 JSON, the surrogate escaped
    text = again.json()["output"][0]["content"][0]["text"]
    assert text == f"odd {LONE} text"
    completed = [f for f in frames if f.startswith("data: ") and "response.completed" in f]
    assert json.loads(completed[0].removeprefix("data: "))["response"]["status"] == "completed"


async def test_a_declared_body_over_the_cap_is_a_413() -> None:
    store = CountingStore()
    async with app_client(service_of(ScriptedChatModel([]), store), max_body_bytes=64) as client:
        answer = await client.post("/responses", json={"model": "m", "input": "x" * 100})
        small = await client.post("/responses", json={"model": "m"})
    assert answer.status_code == 413
    assert "larger than 64 bytes" in answer.json()["error"]["message"]
    assert small.status_code == 400  # under the cap: read and answered on its merits
    assert store.created == []


async def test_the_transport_refuses_a_chunked_body_where_it_passes_the_cap() -> None:
    pulled: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for index in range(1000):
            pulled.append(index)
            yield b" " * 100

    transport = ResponseLoopTransport(service_of(ScriptedChatModel([])), max_body_bytes=1000)
    async with httpx2.AsyncClient(transport=transport, base_url=BASE) as client:
        answer = await client.post("/responses", content=chunks())
        declared = await client.post("/responses", content=b"{}" * 600)
    assert answer.status_code == 413
    assert len(pulled) <= 11  # cut off as it passed the cap, not read to its end
    assert declared.status_code == 413


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"a": [1, {"b": LONE}]}, "a[1].b"),
        ([float("nan")], "[0]"),
        ({"ok": "fine", "n": 1.5}, None),
        ({LONE: 1}, "body"),
    ],
)
def test_unstorable_names_the_first_offending_place(value: Any, where: str | None) -> None:
    found = unstorable(value)
    assert (found[0] if found is not None else None) == where


def test_a_deep_body_is_checked_without_recursion() -> None:
    deep: Any = LONE
    for _ in range(50_000):
        deep = [deep]
    found = unstorable({"input": deep})
    assert found is not None
    assert found[0].startswith("input[0][0]")


# Text with every code point, lone surrogates included (hypothesis leaves them out by default).
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=8)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | ANY_TEXT,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(ANY_TEXT, children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    [
        "model",
        "input",
        "instructions",
        "metadata",
        "tools",
        "tool_choice",
        "temperature",
        "max_output_tokens",
        "previous_response_id",
        "include",
        "text",
        "reasoning",
        "store",
        "stream",
        "truncation",
        "parallel_tool_calls",
    ]
)
BODIES = st.dictionaries(FIELDS, JSON_VALUES, max_size=6).map(
    lambda body: {"model": "m", "input": "hi", **body}
)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=BODIES)
async def test_hypothesis_bodies_are_never_a_server_error(body: dict[str, Any]) -> None:
    store = CountingStore()
    model = ScriptedChatModel([ChatReply.text("ok")] * 3)
    async with app_client(service_of(model, store)) as client:
        answer = await client.post("/responses", content=raw(body))
        assert answer.status_code < 500, answer.text
        # What the server says is always readable JSON: the body, or each event of a
        # stream (a valid body with "stream": true is answered with one).
        if answer.headers.get("content-type", "").startswith("text/event-stream"):
            data = [line for line in answer.text.splitlines() if line.startswith("data: ")]
            assert data
            for line in data:
                if line != "data: [DONE]":
                    json.loads(line.removeprefix("data: "))
        else:
            json.loads(answer.content)
        if answer.status_code == 400 and unstorable(body) is not None:
            assert store.created == []
        for response_id in store.created:
            again = await client.get(f"/responses/{response_id}")
            assert again.status_code == 200, again.text
