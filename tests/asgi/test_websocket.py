"""The Responses WebSocket mode of the ASGI app (Open Responses 2026-04-24, "WebSocket
Transport"), in process on asyncio and trio (``tests/asgi/websocket_driver.py``), over the
loopback upstream: turns and their events, continuation with ``store`` false and true,
the connection-local cache and its eviction, refused messages, one response at a time,
authentication, the connection limit, and a client leaving mid-response.

Every turn's events go through ``check_emitted_stream`` and every error envelope through
the spec's ``WebSocketErrorEvent`` and the SDK's ``ResponseWsError`` (``turn_events``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from responseloop import (
    FunctionTools,
    HttpxClient,
    InMemoryStore,
    ResponsesService,
    StaticToolResolver,
    create_app,
)
from responseloop.abc import ResponseStatus
from responseloop.access import AccessPolicy, KeyGroup, key_digest
from responseloop.asgi import ResponsesApp
from responseloop.exceptions import ResponseNotFound
from responseloop.testing import ChatReply
from tests.asgi.websocket_driver import Closed, Denied, InProcessSocket, open_socket, turn_events
from tests.loopback_upstream import Upstream

KEY = "sk-caller"

tools = FunctionTools()
gates: dict[str, Any] = {}


@tools.tool(parameters={"type": "object", "properties": {"city": {"type": "string"}}})
def get_weather(city: str) -> dict[str, Any]:
    """Weather in a city."""
    return {"city": city, "temperature_c": 18}


@tools.tool(parameters={"type": "object", "properties": {}})
async def wait_for_second_message() -> str:
    """Returns once the app has taken the connection's second message (a queued create)."""
    socket: InProcessSocket = gates["socket"]
    await socket.wait_taken(2)
    return "went on"


@tools.tool(parameters={"type": "object", "properties": {}})
async def wait_until_taken() -> str:
    """Returns once the app has taken ``gates["taken"]`` client messages."""
    socket: InProcessSocket = gates["socket"]
    await socket.wait_taken(gates["taken"])
    return "all taken"


@tools.tool(parameters={"type": "object", "properties": {}})
async def hang() -> str:
    """Runs until cancelled."""
    started: anyio.Event = gates["hang_started"]
    started.set()
    await anyio.sleep_forever()
    return "never"


@asynccontextmanager
async def served(upstream: Upstream, **app: Any) -> AsyncIterator[ResponsesApp]:
    async with HttpxClient.create() as http:
        service = ResponsesService(
            store=InMemoryStore(),
            http_client=http,
            upstream=upstream.target("sk-upstream"),
            resolver=app.pop("resolver", StaticToolResolver(tools)),
        )
        asgi = create_app(service, **app)
        async with asgi.lifespan():
            yield asgi


def create(**body: Any) -> dict[str, Any]:
    return {"type": "response.create", "model": "m", **body}


def terminal(events: list[dict[str, Any]]) -> dict[str, Any]:
    assert events[-1]["type"] == "response.completed", events[-1]
    response: dict[str, Any] = events[-1]["response"]
    return response


def output_text(response: dict[str, Any]) -> str:
    return "".join(
        part["text"]
        for item in response["output"]
        if item["type"] == "message"
        for part in item["content"]
        if part["type"] == "output_text"
    )


async def test_a_turn_streams_the_events_of_sse(upstream: Upstream) -> None:
    upstream.add(ChatReply.text("Hello there."))
    async with served(upstream) as app, open_socket(app) as socket:
        await socket.send_json(create(input="Hi"))
        events = await turn_events(socket)
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    response = terminal(events)
    assert output_text(response) == "Hello there."
    assert upstream.bodies[0]["messages"] == [{"role": "user", "content": "Hi"}]
    assert "stream" not in (await app.service.store.get_response(response["id"])).request


async def test_a_turn_with_a_server_side_tool(upstream: Upstream) -> None:
    upstream.add(
        ChatReply.tool_call("get_weather", {"city": "Paris"}, call_id="c1"),
        ChatReply.text("18 °C in Paris."),
    )
    async with served(upstream) as app, open_socket(app) as socket:
        await socket.send_json(create(input="Weather in Paris?"))
        response = terminal(await turn_events(socket))
    assert [item["type"] for item in response["output"]] == ["mcp_call", "message"]
    assert json.loads(response["output"][0]["output"]) == {"city": "Paris", "temperature_c": 18}
    assert upstream.bodies[1]["messages"][-1]["tool_call_id"] == "c1"


async def test_store_false_continues_from_the_connection_and_is_never_kept(
    upstream: Upstream,
) -> None:
    upstream.add(ChatReply.text("first"), ChatReply.text("second"))
    async with served(upstream) as app, open_socket(app) as socket:
        await socket.send_json(create(input="one", store=False))
        first = terminal(await turn_events(socket))
        with pytest.raises(ResponseNotFound):
            await app.service.store.get_response(first["id"])  # not stored: only the socket has it
        await socket.send_json(create(input="two", store=False, previous_response_id=first["id"]))
        second = terminal(await turn_events(socket))
    assert second["previous_response_id"] == first["id"]
    assert upstream.bodies[1]["messages"] == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "first"},
        {"role": "user", "content": "two"},
    ]
    with pytest.raises(ResponseNotFound):
        await app.service.store.get_response(second["id"])


async def test_store_true_continues_from_the_store_on_another_connection(
    upstream: Upstream,
) -> None:
    upstream.add(ChatReply.text("first"), ChatReply.text("second"))
    async with served(upstream) as app:
        async with open_socket(app) as socket:
            await socket.send_json(create(input="one"))
            first = terminal(await turn_events(socket))
        async with open_socket(app) as socket:  # a new connection: the store has it
            await socket.send_json(create(input="two", previous_response_id=first["id"]))
            second = terminal(await turn_events(socket))
        stored = await app.service.store.get_response(second["id"])
    assert upstream.bodies[1]["messages"][:2] == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "first"},
    ]
    assert stored.status is ResponseStatus.COMPLETED


async def test_a_store_false_response_is_not_found_on_another_connection(
    upstream: Upstream,
) -> None:
    upstream.add(ChatReply.text("first"))
    async with served(upstream) as app:
        async with open_socket(app) as socket:
            await socket.send_json(create(input="one", store=False))
            first = terminal(await turn_events(socket))
        async with open_socket(app) as socket:
            await socket.send_json(create(input="two", previous_response_id=first["id"]))
            [error] = await turn_events(socket)
    assert error == {
        "type": "error",
        "status": 400,
        "error": {
            "type": "invalid_request_error",
            "code": "previous_response_not_found",
            "message": f"Previous response with id {first['id']!r} not found.",
            "param": "previous_response_id",
        },
    }
    assert len(upstream.received) == 1


async def test_only_the_latest_store_false_response_is_kept(upstream: Upstream) -> None:
    upstream.add(ChatReply.text("first"), ChatReply.text("second"))
    async with served(upstream) as app, open_socket(app) as socket:
        await socket.send_json(create(input="one", store=False))
        first = terminal(await turn_events(socket))
        await socket.send_json(create(input="unrelated", store=False))
        terminal(await turn_events(socket))
        await socket.send_json(create(input="two", store=False, previous_response_id=first["id"]))
        [error] = await turn_events(socket)
    assert error["error"]["code"] == "previous_response_not_found"


async def test_a_failed_continuation_evicts_what_it_continued(upstream: Upstream) -> None:
    upstream.add(ChatReply.text("first"))
    async with served(upstream) as app, open_socket(app) as socket:
        await socket.send_json(create(input="one", store=False))
        first = terminal(await turn_events(socket))
        # A 400 (a bad temperature) while continuing it: the spec evicts the response.
        await socket.send_json(
            create(input="two", store=False, previous_response_id=first["id"], temperature="hot")
        )
        [refused] = await turn_events(socket)
        await socket.send_json(create(input="two", store=False, previous_response_id=first["id"]))
        [error] = await turn_events(socket)
    assert refused["status"] == 400
    assert refused["error"]["param"] == "temperature"
    assert error["error"]["code"] == "previous_response_not_found"
    assert len(upstream.received) == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [("stream", False), ("stream_options", {"include_obfuscation": False}), ("background", True)],
)
async def test_http_transport_fields_are_refused(
    upstream: Upstream, field: str, value: Any
) -> None:
    upstream.add(ChatReply.text("still here"))
    async with served(upstream) as app, open_socket(app) as socket:
        await socket.send_json(create(input="hi", **{field: value}))
        [error] = await turn_events(socket)
        # The connection stays usable, and stream: true (what the socket does) is let through.
        await socket.send_json(create(input="hi", stream=True))
        response = terminal(await turn_events(socket))
    assert error["status"] == 400
    assert error["error"]["code"] == "unsupported_parameter"
    assert error["error"]["param"] == field
    assert output_text(response) == "still here"
    assert len(upstream.received) == 1


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("{not json", "invalid_request_error"),
        ("[1, 2]", "invalid_request_error"),
        (json.dumps({"type": "response.cancel"}), "unknown_message_type"),
        (json.dumps({"model": "m", "input": "no type"}), "unknown_message_type"),
        (json.dumps({"type": "response.create", "model": "m", "input": 5}), None),
    ],
)
async def test_a_bad_message_is_an_error_envelope_and_the_connection_stays(
    upstream: Upstream, message: str, code: str | None
) -> None:
    upstream.add(ChatReply.text("fine"))
    async with served(upstream) as app, open_socket(app) as socket:
        await socket.send_text(message)
        [error] = await turn_events(socket)
        await socket.send_bytes(json.dumps(create(input="hi")).encode())  # binary JSON too
        response = terminal(await turn_events(socket))
    assert error["status"] == 400
    if code is not None:
        assert error["error"]["code"] == code
    assert output_text(response) == "fine"


async def test_queued_creates_run_one_after_the_other(upstream: Upstream) -> None:
    upstream.add(
        ChatReply.tool_call("wait_for_second_message", {}, call_id="c1"),
        ChatReply.text("first done"),
        ChatReply.text("second done"),
    )
    async with served(upstream) as app, open_socket(app) as socket:
        gates["socket"] = socket
        # Both sent at once; the first one's tool returns only once the app has taken the
        # second, so a server that ran them side by side would call the upstream for the
        # second before the first's last call.
        await socket.send_json(create(input="first"))
        await socket.send_json(create(input="second"))
        first = await turn_events(socket)
        second = await turn_events(socket)
    assert output_text(terminal(first)) == "first done"
    assert output_text(terminal(second)) == "second done"
    assert [body["messages"][0]["content"] for body in upstream.bodies] == [
        "first",
        "first",
        "second",
    ]
    assert second[0]["sequence_number"] == 0  # each response's own numbering


ALLOWED = "sk-allowed"


def policy() -> AccessPolicy:
    return AccessPolicy([KeyGroup("team", [key_digest(ALLOWED)], StaticToolResolver(tools), ["m"])])


@pytest.mark.parametrize("key", [None, "sk-unknown"])
async def test_an_unauthenticated_upgrade_is_refused_with_http_s_401(
    upstream: Upstream, key: str | None
) -> None:
    async with served(upstream, authenticator=policy(), resolver=policy()) as app:
        with pytest.raises(Denied) as denied:
            async with open_socket(app, key):
                pass
        with pytest.raises(Closed) as closed:  # a server without denial responses
            async with open_socket(app, key, denial_responses=False):
                pass
    assert denied.value.status == 401
    assert denied.value.body["error"]["code"] == "invalid_api_key"
    assert closed.value.code == 1008


async def test_an_authenticated_key_runs_only_its_models(upstream: Upstream) -> None:
    upstream.add(ChatReply.text("allowed"))
    async with (
        served(upstream, authenticator=policy(), resolver=policy()) as app,
        open_socket(app, ALLOWED) as socket,
    ):
        await socket.send_json(create(model="other", input="hi"))
        [refused] = await turn_events(socket)
        await socket.send_json(create(input="hi"))
        response = terminal(await turn_events(socket))
    assert refused["status"] == 404
    assert refused["error"]["code"] == "model_not_found"
    assert output_text(response) == "allowed"


async def test_the_connection_ends_at_its_limit(upstream: Upstream) -> None:
    async with served(upstream, websocket_connection_limit=0.05) as app, open_socket(app) as s:
        [error] = await turn_events(s)
        with pytest.raises(Closed) as closed:
            await s.receive_json()
    assert error["status"] == 400
    assert error["error"]["code"] == "websocket_connection_limit_reached"
    assert closed.value.code == 1000


async def test_a_client_leaving_mid_response_cancels_it(upstream: Upstream) -> None:
    upstream.add(ChatReply.tool_call("hang", {}, call_id="c1"))
    gates["hang_started"] = anyio.Event()
    async with served(upstream) as app:
        async with open_socket(app) as socket:
            await socket.send_json(create(input="hang"))
            created = await socket.receive_json()
            with anyio.fail_after(20):
                await gates["hang_started"].wait()
        # The app has returned: the response was stored cancelled before it did.
        record = await app.service.store.get_response(created["response"]["id"])
    assert record.status is ResponseStatus.CANCELLED
    assert not app.service.running


async def test_a_client_leaving_with_a_full_queue_cancels_the_running_response(
    upstream: Upstream,
) -> None:
    """The socket is read even while the queue of waiting messages is full, so the
    disconnect of a client that queued more than it holds is seen, and cancels the
    running response (none of the queued ones runs)."""
    from responseloop.asgi._app import _QUEUED_MESSAGES

    upstream.add(ChatReply.tool_call("hang", {}, call_id="c1"))
    gates["hang_started"] = anyio.Event()
    sent = 1 + _QUEUED_MESSAGES + 5
    async with served(upstream) as app:
        async with open_socket(app) as socket:
            await socket.send_json(create(input="hang"))
            created = await socket.receive_json()
            with anyio.fail_after(20):
                await gates["hang_started"].wait()
            for index in range(sent - 1):
                await socket.send_json(create(input=f"queued {index}"))
            await socket.wait_taken(sent)  # every message was read, past the full queue
        record = await app.service.store.get_response(created["response"]["id"])
    assert record.status is ResponseStatus.CANCELLED
    assert not app.service.running
    assert len(upstream.bodies) == 1  # nothing queued ran


async def test_messages_past_the_queue_are_refused_in_their_turn(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the queue full, a message is answered ``too_many_queued_messages``, after the
    answers of the messages before it (never inside another turn's events), and the
    connection stays usable."""
    monkeypatch.setattr("responseloop.asgi._app._QUEUED_MESSAGES", 2)
    upstream.add(
        ChatReply.tool_call("wait_until_taken", {}, call_id="c1"),
        ChatReply.text("first done"),
        ChatReply.text("second done"),
        ChatReply.text("third done"),
        ChatReply.text("after the refusals"),
    )
    async with served(upstream) as app, open_socket(app) as socket:
        gates["socket"], gates["taken"] = socket, 5
        await socket.send_json(create(input="first"))
        events = [await socket.receive_json()]
        assert events[0]["type"] == "response.created"
        for name in ("second", "third", "fourth", "fifth"):  # two held, two refused
            await socket.send_json(create(input=name))
        while events[-1]["type"] != "response.completed":
            events.append(await socket.receive_json())
        second = await turn_events(socket)
        third = await turn_events(socket)
        refusals = [await turn_events(socket), await turn_events(socket)]
        await socket.send_json(create(input="sixth"))
        sixth = await turn_events(socket)
    assert output_text(terminal(events)) == "first done"
    assert output_text(terminal(second)) == "second done"
    assert output_text(terminal(third)) == "third done"
    for [refusal] in refusals:
        assert refusal["status"] == 429
        assert refusal["error"]["code"] == "too_many_queued_messages"
    assert output_text(terminal(sixth)) == "after the refusals"
    assert [body["messages"][0]["content"] for body in upstream.bodies] == [
        "first",
        "first",
        "second",
        "third",
        "sixth",
    ]


async def test_a_websocket_to_another_path_is_refused(upstream: Upstream) -> None:
    async with served(upstream) as app:
        with pytest.raises(Closed):
            async with open_socket(app, path="/v1/models"):
                pass
        async with open_socket(app, path="/responses") as socket:  # /v1 is optional
            upstream.add(ChatReply.text("ok"))
            await socket.send_json(create(input="hi"))
            assert output_text(terminal(await turn_events(socket))) == "ok"


def test_the_serve_default_is_the_library_s() -> None:
    from responseloop import cli
    from responseloop.adapters._websocket import CONNECTION_LIMIT_SECONDS

    assert cli.CONNECTION_LIMIT_SECONDS == CONNECTION_LIMIT_SECONDS == 3600.0
    with pytest.raises(ValueError, match="websocket_connection_limit"):
        create_app(
            ResponsesService.to_upstream("http://127.0.0.1:1/v1")[0], websocket_connection_limit=0
        )
