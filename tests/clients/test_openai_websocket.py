"""The official ``openai`` client's Responses WebSocket mode (``client.responses.connect()``,
openai 3.57.0, over the ``websockets`` library) and the Agents SDK's WebSocket model
(``OpenAIResponsesWSModel``, openai-agents 0.24.0) against the real ``responseloop serve``.

The checking proxy speaks HTTP only, so these connect to the server itself and check what
it sends here: each message parses as the SDK's ``ResponsesServerEvent`` (the type its
``type`` names), each turn's events pass ``check_emitted_stream``, and each error
envelope the spec's ``WebSocketErrorEvent`` and the SDK's ``ResponseWsError``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
import websockets
from agents import Agent, Runner, set_tracing_disabled
from agents.models.openai_responses import OpenAIResponsesWSModel
from openai.types.responses import FunctionToolParam

from tests.asgi.serving import serving
from tests.clients import scripted_model
from tests.clients.server_tools import WEATHER
from tests.loopback_upstream import Upstream
from tests.wire_checks import check_emitted_stream, validate_ws_error

set_tracing_disabled(True)  # tracing would export spans to the internet

TERMINAL = ("response.completed", "response.incomplete", "response.failed")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the openai client's WebSocket and the Agents SDK run on asyncio only


@pytest.fixture
async def client(served_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=served_url + "/v1", api_key="sk-ws") as served:
        yield served


async def turn(connection: Any) -> list[dict[str, Any]]:
    """One turn's messages, as sent: through the terminal event or the error ending it."""
    events: list[dict[str, Any]] = []
    while True:
        data = await connection.recv_bytes()
        event = json.loads(data)
        parsed = connection.parse_event(data)
        assert parsed.type == event["type"], (parsed, event)
        events.append(event)
        if event["type"] == "error" and "status" in event:
            assert len(events) == 1, events
            validate_ws_error(event)
            return events
        if event["type"] in TERMINAL or event["type"] == "error":
            check_emitted_stream(events, ended_with_done=True)  # a socket has no [DONE]
            return events


def completed(events: list[dict[str, Any]]) -> dict[str, Any]:
    assert events[-1]["type"] == "response.completed", events[-1]
    response: dict[str, Any] = events[-1]["response"]
    return response


def text_of(response: dict[str, Any]) -> str:
    return "".join(
        part["text"]
        for item in response["output"]
        if item["type"] == "message"
        for part in item["content"]
        if part["type"] == "output_text"
    )


async def test_a_text_turn(client: openai.AsyncOpenAI) -> None:
    async with client.responses.connect() as connection:
        await connection.response.create(model="m", input="say hi")
        response = completed(await turn(connection))
    assert text_of(response) == scripted_model.HELLO


async def test_a_turn_with_a_server_side_tool(client: openai.AsyncOpenAI) -> None:
    async with client.responses.connect() as connection:
        await connection.response.create(model="m", input="server weather please")
        response = completed(await turn(connection))
    assert [item["type"] for item in response["output"]] == ["mcp_call", "message"]
    assert text_of(response) == f"Result: {WEATHER}"


CLIENT_LOOKUP_TOOL: FunctionToolParam = {
    "type": "function",
    "name": "client_lookup",
    "description": "Look a key up.",
    "parameters": {"type": "object", "properties": {"key": {"type": "string"}}},
    "strict": False,
}


@pytest.mark.parametrize("store", [False, True])
async def test_continuing_by_previous_response_id(client: openai.AsyncOpenAI, store: bool) -> None:
    """The spec's own example: the client's tool call, then its output and the next user
    message sent with only ``previous_response_id`` (store false: the connection holds it)."""
    async with client.responses.connect() as connection:
        await connection.response.create(
            model="m",
            input="client lookup please; my word is cobalt",
            tools=[CLIENT_LOOKUP_TOOL],
            store=store,
        )
        first = completed(await turn(connection))
        [call] = first["output"]
        assert call["type"] == "function_call"
        await connection.response.create(
            model="m",
            store=store,
            previous_response_id=first["id"],
            tools=[CLIENT_LOOKUP_TOOL],
            input=[{"type": "function_call_output", "call_id": call["call_id"], "output": "v1"}],
        )
        second = completed(await turn(connection))
        await connection.response.create(
            model="m",
            store=store,
            previous_response_id=second["id"],
            input="what is my word",
        )
        third = completed(await turn(connection))
    assert text_of(second) == "Result: v1"
    assert second["previous_response_id"] == first["id"]
    assert text_of(third) == "Your word is cobalt."  # the first turn's message came along
    if store:
        stored = await client.responses.retrieve(third["id"])
        assert stored.previous_response_id == second["id"]
    else:
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(third["id"])


async def test_a_conversation_carries_over_turns(client: openai.AsyncOpenAI) -> None:
    async with client.responses.connect() as connection:
        await connection.response.create(model="m", input="my word is cobalt", store=False)
        first = completed(await turn(connection))
        await connection.response.create(
            model="m", input="what is my word", store=False, previous_response_id=first["id"]
        )
        second = completed(await turn(connection))
    assert text_of(second) == "Your word is cobalt."


async def test_previous_response_not_found(client: openai.AsyncOpenAI) -> None:
    async with client.responses.connect() as connection:
        await connection.response.create(model="m", input="say hi", store=False)
        first = completed(await turn(connection))
    async with client.responses.connect() as connection:  # another socket: not kept there
        await connection.response.create(
            model="m", input="what is my word", store=False, previous_response_id=first["id"]
        )
        [error] = await turn(connection)
        # The connection stays usable.
        await connection.response.create(model="m", input="say hi", store=False)
        again = completed(await turn(connection))
    assert error["status"] == 400
    assert error["error"]["code"] == "previous_response_not_found"
    assert error["error"]["param"] == "previous_response_id"
    assert text_of(again) == scripted_model.HELLO


@pytest.mark.parametrize("field", ["stream", "background"])
async def test_http_fields_are_refused(client: openai.AsyncOpenAI, field: str) -> None:
    async with client.responses.connect() as connection:
        if field == "stream":
            await connection.response.create(model="m", input="say hi", stream=False)
        else:
            await connection.response.create(model="m", input="say hi", background=False)
        [error] = await turn(connection)
    assert error["status"] == 400
    assert error["error"]["param"] == field


async def test_two_queued_creates_are_answered_in_order(client: openai.AsyncOpenAI) -> None:
    async with client.responses.connect() as connection:
        await connection.response.create(model="m", input="server weather please")
        await connection.response.create(model="m", input="say hi")
        first = await turn(connection)
        second = await turn(connection)
    assert text_of(completed(first)) == f"Result: {WEATHER}"
    assert text_of(completed(second)) == scripted_model.HELLO
    assert completed(first)["id"] != completed(second)["id"]


async def test_the_agents_sdk_websocket_model_runs_an_agent(client: openai.AsyncOpenAI) -> None:
    model = OpenAIResponsesWSModel(model="m", openai_client=client)
    agent = Agent(name="tester", model=model)
    try:
        first = await Runner.run(agent, "my word is cobalt")
        second = await Runner.run(
            agent, "what is my word", previous_response_id=first.last_response_id
        )
    finally:
        await model.close()
    assert second.final_output == "Your word is cobalt."


GOOD_KEY = "sk-good-key"


async def test_serve_refuses_a_bad_key_and_ends_a_connection_at_its_limit(
    clients_upstream: Upstream, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text(GOOD_KEY + "\n")
    args = [
        "--upstream", clients_upstream.url + "/v1",
        "--api-keys-file", str(keys),
        "--websocket-connection-limit", "0.2",
    ]  # fmt: skip
    async with serving(args, log=tmp_path / "serve.log") as server:
        async with openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="sk-bad") as bad:
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with bad.responses.connect():
                    pass
        async with (
            openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=GOOD_KEY) as good,
            good.responses.connect() as connection,
        ):
            [error] = await turn(connection)
            with pytest.raises(websockets.ConnectionClosedOK):
                await connection.recv_bytes()
    assert refused.value.response.status_code == 401
    assert json.loads(bytes(refused.value.response.body))["error"]["code"] == "invalid_api_key"
    assert error["error"]["code"] == "websocket_connection_limit_reached"
