"""Fuzzing ``POST /v1/responses`` through ResponseLoopTransport.

Whatever the body (arbitrary bytes, arbitrary JSON, a near-valid Responses body with one
field corrupted), the answer is a 200 or a 4xx with an OpenAI-style error, never a 5xx and
never an exception; a corrupted field is named in ``param``; and an invalid body never
reaches the upstream.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import anyio
import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from responseloop import InMemoryStore, ResponseLoopTransport, ResponsesService, UpstreamTarget
from responseloop.testing import ChatReply, ScriptedChatModel

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)

RESPONSES_FIELDS = [
    "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls",
    "max_output_tokens", "max_tool_calls", "temperature", "top_p", "top_logprobs", "seed",
    "user", "metadata", "store", "stream", "text", "reasoning", "truncation", "include",
    "previous_response_id", "background", "service_tier",
]  # fmt: skip

# Arbitrary JSON, and objects whose keys are the real fields with arbitrary values (so the
# fuzzer reaches past the first check of the parser).
bodies = json_values | st.fixed_dictionaries(
    {}, optional=dict.fromkeys(RESPONSES_FIELDS, json_values)
)

TOOL = {
    "type": "function",
    "name": "lookup",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
}
short_text = st.text(min_size=1, max_size=12)
message_items = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "developer"]), "content": short_text}
) | st.fixed_dictionaries(
    {
        "type": st.just("message"),
        "role": st.just("user"),
        "content": st.lists(
            st.fixed_dictionaries({"type": st.just("input_text"), "text": short_text}),
            min_size=1,
            max_size=2,
        ),
    }
)
valid_bodies = st.fixed_dictionaries(
    {
        "model": short_text,
        "input": short_text | st.lists(message_items, min_size=1, max_size=3),
    },
    optional={
        "instructions": short_text,
        "temperature": st.floats(0.0, 2.0),
        "top_p": st.floats(0.0, 1.0),
        "max_output_tokens": st.integers(1, 4096),
        "parallel_tool_calls": st.booleans(),
        "metadata": st.dictionaries(short_text, st.text(max_size=12), max_size=3),
        "store": st.booleans(),
        "stream": st.booleans(),
        "tools": st.just([TOOL]),
        "tool_choice": st.sampled_from(["auto", "none"]),
        "user": short_text,
        "seed": st.integers(-1000, 1000),
        "text": st.just({"format": {"type": "text"}}),
        "reasoning": st.sampled_from([{"effort": "low"}, {"effort": "high"}]),
    },
)

not_a_string = st.integers() | st.booleans() | st.lists(st.integers(), max_size=2)
not_a_bool = st.integers() | st.text(max_size=5) | st.lists(st.booleans(), max_size=2)
not_an_object = st.integers() | st.text(max_size=5) | st.lists(st.integers(), max_size=2)
CORRUPTIONS: dict[str, st.SearchStrategy[Any]] = {
    "model": st.just("") | not_a_string | st.dictionaries(st.text(max_size=3), st.integers()),
    "input": st.integers()
    | st.booleans()
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
    | st.lists(st.integers() | st.text(max_size=3), min_size=1, max_size=2)
    | st.sampled_from(
        [
            [{"type": "bogus"}],
            [{"role": "user", "content": 5}],
            [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}],
            [{"type": "function_call_output", "output": "x"}],
        ]
    ),
    "instructions": not_a_string,
    "temperature": st.floats(2.001, 1e9)
    | st.floats(-1e9, -0.001)
    | st.text(max_size=5)
    | st.booleans(),
    "top_p": st.floats(1.001, 1e9) | st.floats(-1e9, -0.001) | st.text(max_size=5),
    "max_output_tokens": st.integers(max_value=0)
    | st.floats(0.1, 0.9)
    | st.text(max_size=5)
    | st.booleans(),
    "parallel_tool_calls": not_a_bool,
    "metadata": not_an_object | st.just({"k": 1}) | st.just({"k": "v" * 513}),
    "store": not_a_bool,
    "stream": not_a_bool,
    "tools": st.text(max_size=5)
    | st.integers()
    | st.just({"type": "function"})
    | st.just([{"type": "function"}])
    | st.just([TOOL, TOOL]),
    "tool_choice": st.text(max_size=8).filter(lambda s: s not in {"auto", "none", "required"})
    | st.integers()
    | st.just({"type": "function"}),
    "user": not_a_string,
    "seed": st.text(max_size=5) | st.floats(0.1, 0.9) | st.booleans(),
    "text": not_an_object | st.just({"format": {"type": "xml"}}),
    "reasoning": not_an_object | st.just({"effort": "extreme"}),
    "previous_response_id": not_a_string | st.just("resp_does_not_exist"),
}


def service_and_model() -> tuple[ResponseLoopTransport, ScriptedChatModel]:
    model = ScriptedChatModel([lambda request: ChatReply.text("ok")] * 10)
    service = ResponsesService(
        store=InMemoryStore(),
        http_client=model,
        upstream=UpstreamTarget("http://upstream.invalid/v1", "/chat/completions"),
    )
    return ResponseLoopTransport(service), model


async def post(content: bytes) -> tuple[httpx2.Response, ScriptedChatModel]:
    transport, model = service_and_model()
    async with httpx2.AsyncClient(
        transport=transport, base_url="http://responseloop.test"
    ) as client:
        response = await client.post(
            "/v1/responses",
            content=content,
            headers={"content-type": "application/json", "authorization": "Bearer caller-key"},
        )
    return response, model


def check_answer(response: httpx2.Response, model: ScriptedChatModel) -> dict[str, Any] | None:
    """200 (the upstream called), or a 4xx OpenAI-style error (the upstream not called);
    returns the error."""
    if response.status_code == 200:
        assert model.requests, "a 200 without running the loop"
        return None
    assert 400 <= response.status_code < 500, response.text
    assert model.requests == []  # an invalid body never reaches the upstream
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["type"], str)
    assert error["param"] is None or isinstance(error["param"], str)
    assert "code" in error
    return dict(error)


def root_of(param: str) -> str:
    return param.split(".")[0].split("[")[0]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@FUZZ
@given(content=st.binary(max_size=64))
def test_arbitrary_bytes_get_a_200_or_a_4xx(backend: str, content: bytes) -> None:
    response, model = anyio.run(partial(post, content), backend=backend)
    check_answer(response, model)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@FUZZ
@given(body=bodies)
def test_arbitrary_json_gets_a_200_or_a_4xx_naming_a_field_of_the_body(
    backend: str, body: Any
) -> None:
    response, model = anyio.run(partial(post, json.dumps(body).encode()), backend=backend)
    error = check_answer(response, model)
    if error is not None and error["param"] is not None:
        assert isinstance(body, dict)
        # a field of the body, or a required one it lacks
        assert root_of(error["param"]) in {*body, "model", "input"}


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@FUZZ
@given(body=valid_bodies)
def test_a_valid_body_is_answered_200(backend: str, body: dict[str, Any]) -> None:
    response, model = anyio.run(partial(post, json.dumps(body).encode()), backend=backend)
    assert response.status_code == 200, response.text
    check_answer(response, model)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@FUZZ
@given(body=valid_bodies, data=st.data())
def test_a_body_with_one_field_corrupted_is_a_400_naming_that_field(
    backend: str, body: dict[str, Any], data: st.DataObject
) -> None:
    field = data.draw(st.sampled_from(sorted(CORRUPTIONS)), label="field")
    body = {**body, field: data.draw(CORRUPTIONS[field], label="value")}
    response, model = anyio.run(partial(post, json.dumps(body).encode()), backend=backend)
    error = check_answer(response, model)
    assert response.status_code == 400, response.text
    assert error is not None
    assert error["param"] is not None
    assert root_of(error["param"]) == field, (error, field)
