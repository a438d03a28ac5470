"""``responseloop serve`` as a real uvicorn subprocess, driven by the official openai client
over real HTTP, with a loopback chat-completions upstream in the test process: DESIGN §15
scenarios 1-4, 11 and 12, background mode, and graceful shutdown.

The server process is what these tests exercise, so the client side runs on asyncio only.
"""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import attrs
import httpx2
import openai
import pytest

from responseloop.abc import ResponseStatus
from responseloop.chat._translate import upstream_call_id
from responseloop.stores.postgres import PostgresStore
from responseloop.stores.sqlite import SQLiteStore
from responseloop.testing import ChatReply
from tests.asgi.serve_tools import CALLER_KEY
from tests.asgi.serving import Served, serving
from tests.loopback_upstream import Received, Reply, Upstream, running_upstream
from tests.openai_shapes import validate_response
from tests.stores.postgres import drop_schema, new_schema, require_postgres
from tests.stream_checks import check_stream
from tests.wire_checks import check_emitted_stream

UPSTREAM_KEY = "sk-upstream-secret"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def read_marks(path: Path) -> list[str]:
    """The lines the server's tools wrote (see serve_tools.mark)."""
    return path.read_text().splitlines() if path.exists() else []


@attrs.define
class World:
    upstream: Upstream
    server: Served
    client: openai.AsyncOpenAI
    http: httpx2.AsyncClient
    marks: Path

    def marked(self) -> list[str]:
        return read_marks(self.marks)

    async def wait_for_mark(self, mark: str) -> None:
        with anyio.fail_after(10):
            while mark not in self.marked():  # noqa: ASYNC110 - another process writes it
                await anyio.sleep(0.02)


@attrs.define
class Launch:
    """Starts a server against a fresh upstream; ``store`` picks ``--store``."""

    tmp_path: Path

    @staticmethod
    def args(upstream: Upstream, store: str) -> list[str]:
        return [
            "--upstream",
            upstream.url + "/v1",
            "--upstream-key-env",
            "TEST_UPSTREAM_KEY",
            "--tools",
            "tests.asgi.serve_tools:resolver",
            "--store",
            store,
        ]

    def env(self) -> dict[str, str]:
        return {
            "TEST_UPSTREAM_KEY": UPSTREAM_KEY,
            "RESPONSELOOP_TEST_MARKS": str(self.tmp_path / "marks.txt"),
        }


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    launch = Launch(tmp_path)
    async with (
        running_upstream() as upstream,
        serving(
            Launch.args(upstream, "memory"), log=tmp_path / "server.log", env=launch.env()
        ) as server,
        httpx2.AsyncClient(base_url=server.url, timeout=30) as http,
        openai.AsyncOpenAI(
            base_url=server.url + "/v1", api_key=CALLER_KEY, max_retries=0
        ) as client,
    ):
        yield World(upstream, server, client, http, tmp_path / "marks.txt")


async def create(world: World, **params: Any) -> Any:
    response = await world.client.responses.create(**params)
    validate_response(response.model_dump(mode="json", exclude_unset=True, by_alias=True))
    return response


async def sse_events(
    world: World, method: str, path: str, body: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {CALLER_KEY}"}
    events: list[dict[str, Any]] = []
    async with world.http.stream(method, path, json=body, headers=headers) as answer:
        assert answer.status_code == 200, await answer.aread()
        assert answer.headers["content-type"] == "text/event-stream"
        async for line in answer.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line.removeprefix("data: ")))
    return events


def dumped(response: Any) -> dict[str, Any]:
    result: dict[str, Any] = response.model_dump(mode="json", exclude_unset=True, by_alias=True)
    return result


async def first_event(lines: AsyncIterator[str]) -> dict[str, Any]:
    """The first event; the caller keeps ``lines`` alive (an iterator collected early
    would close the stream)."""
    async for line in lines:
        if line.startswith("data: ") and line != "data: [DONE]":
            event: dict[str, Any] = json.loads(line.removeprefix("data: "))
            return event
    raise AssertionError("the stream ended without an event")


async def wait_until_ended(world: World, response_id: str) -> Any:
    with anyio.fail_after(10):
        while True:
            response = await world.client.responses.retrieve(response_id)
            if response.status not in ("queued", "in_progress"):
                return response
            await anyio.sleep(0.02)


async def test_health_answers_while_serving(world: World) -> None:
    answer = await world.http.get("/health")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "running": 0, "background": 0}
    wrong = await world.http.put("/v1/responses")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"
    unknown = await world.http.get("/v2/anything")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "unknown_route"


async def test_1_text_in_text_out(world: World) -> None:
    world.upstream.add(ChatReply.text("Hello there."))
    response = await create(world, model="m", input="Hi")
    assert response.status == "completed"
    assert response.output_text == "Hello there."
    assert world.upstream.bodies[0]["messages"] == [{"role": "user", "content": "Hi"}]
    sent = world.upstream.received[0]
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"  # never the caller's

    await world.client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        await world.client.responses.retrieve(response.id)


async def test_2_one_server_tool(world: World) -> None:
    world.upstream.add(
        ChatReply.tool_call("get_weather", {"city": "Paris"}, call_id="c1"),
        ChatReply.text("18 °C in Paris."),
    )
    response = await create(world, model="m", input="Weather in Paris?")
    assert [item.type for item in response.output] == ["mcp_call", "message"]
    assert json.loads(response.output[0].output) == {"city": "Paris", "temperature_c": 18}
    assert world.marked() == ["get_weather Paris"]
    assert world.upstream.bodies[1]["messages"][-1]["tool_call_id"] == "c1"


async def test_server_tool_items_function_call_keeps_the_0_1_shape(tmp_path: Path) -> None:
    async with running_upstream() as upstream:
        upstream.add(
            ChatReply.tool_call("get_weather", {"city": "Paris"}, call_id="c1"),
            ChatReply.text("18 °C in Paris."),
        )
        args = [*Launch.args(upstream, "memory"), "--server-tool-items", "function_call"]
        async with (
            serving(args, log=tmp_path / "log", env=Launch(tmp_path).env()) as server,
            openai.AsyncOpenAI(
                base_url=server.url + "/v1", api_key=CALLER_KEY, max_retries=0
            ) as client,
        ):
            response = await client.responses.create(model="m", input="Weather in Paris?")
    validate_response(response.model_dump(mode="json", exclude_unset=True, by_alias=True))
    assert [item.type for item in response.output] == [
        "function_call",
        "function_call_output",
        "message",
    ]


async def test_3_three_parallel_server_tools_run_concurrently_in_call_order(world: World) -> None:
    world.upstream.add(
        ChatReply.calls(*[("together", {"n": n}, f"c{n}") for n in range(3)]),
        ChatReply.text("all done"),
    )
    response = await create(world, model="m", input="go")
    marks = world.marked()
    assert sorted(marks[:3]) == ["start 0", "start 1", "start 2"]
    assert marks[3:] == ["end 2", "end 1", "end 0"]
    calls = [item for item in response.output if item.type == "mcp_call"]
    assert [json.loads(item.output)["n"] for item in calls] == [0, 1, 2]


async def test_4_client_function_round_trip(world: World) -> None:
    tool: Any = {
        "type": "function",
        "name": "open_door",
        "parameters": {"type": "object", "properties": {"door": {"type": "string"}}},
        "strict": False,
    }
    world.upstream.add(
        ChatReply.tool_call("open_door", {"door": "front"}, call_id="door_1"),
        ChatReply.text("The door is open."),
    )
    first = await create(world, model="m", input="Open the front door", tools=[tool])
    ours = "call_" + first.id.removeprefix("resp_") + "_1_0"  # not the upstream's door_1
    assert [(i.type, i.call_id) for i in first.output] == [("function_call", ours)]
    got = await world.client.responses.retrieve(first.id)
    assert [getattr(i, "call_id", None) for i in got.output] == [ours]
    second = await create(
        world,
        model="m",
        previous_response_id=first.id,
        tools=[tool],
        input=[{"type": "function_call_output", "call_id": ours, "output": "opened"}],
    )
    assert second.output_text == "The door is open."
    assert world.upstream.bodies[1]["messages"][-1] == {
        "role": "tool",
        "tool_call_id": upstream_call_id(ours),
        "content": "opened",
    }
    items = await world.client.responses.input_items.list(second.id)
    assert [(item.type, getattr(item, "call_id", None)) for item in items.data] == [
        ("function_call_output", ours)
    ]


def tool_turn() -> list[ChatReply]:
    return [
        ChatReply.tool_call("get_weather", {"city": "Rome"}, call_id="w1", reasoning="Need it."),
        ChatReply.text("22 °C in Rome.", reasoning="Answer."),
    ]


def comparable(response: dict[str, Any]) -> str:
    response = {k: v for k, v in response.items() if k not in ("created_at", "completed_at")}
    return json.dumps(response, sort_keys=True).replace(response["id"].removeprefix("resp_"), "ID")


async def test_11_streaming_equals_non_streaming(world: World) -> None:
    world.upstream.add(*tool_turn())
    plain = await create(world, model="m", input="Rome?")
    world.upstream.add(*tool_turn())

    events = await sse_events(
        world, "POST", "/v1/responses", {"model": "m", "input": "Rome?", "stream": True}
    )

    streamed = events[-1]["response"]
    check_stream(events, streamed)
    assert world.upstream.bodies[-1]["stream"] is True
    stored = await world.client.responses.retrieve(streamed["id"])
    assert dumped(stored) == streamed
    assert comparable(streamed) == comparable(dumped(plain))


async def test_11_the_sdk_stream_helper_rebuilds_the_response(world: World) -> None:
    world.upstream.add(*tool_turn())
    async with world.client.responses.stream(model="m", input="Rome?") as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert (kinds[0], kinds[-1]) == ("response.created", "response.completed")
    stored = await world.client.responses.retrieve(final.id)
    assert stored.model_dump(exclude_none=True) == final.model_dump(exclude_none=True)


async def test_12_disconnecting_mid_tool_cancels_the_tool_and_stores_cancelled(
    world: World,
) -> None:
    world.upstream.add(ChatReply.tool_call("hang", {}, call_id="h1"))
    headers = {"Authorization": f"Bearer {CALLER_KEY}"}
    body = {"model": "m", "input": "wait", "stream": True}
    async with world.http.stream("POST", "/v1/responses", json=body, headers=headers) as answer:
        lines = answer.aiter_lines()
        first = await first_event(lines)
        await world.wait_for_mark("hang started")
    # The stream is closed: the server sees the client leave and cancels the loop.
    await world.wait_for_mark("hang cancelled")
    response_id = first["response"]["id"]
    stored = await wait_until_ended(world, response_id)
    assert stored.status == "cancelled"


async def test_12_disconnecting_mid_model_call_cancels_the_upstream_call(world: World) -> None:
    world.upstream.responder = lambda received: Reply(hang=True)
    headers = {"Authorization": f"Bearer {CALLER_KEY}"}
    body = {"model": "m", "input": "wait", "stream": True}
    async with world.http.stream("POST", "/v1/responses", json=body, headers=headers) as answer:
        lines = answer.aiter_lines()
        first = await first_event(lines)
        await world.upstream.wait_for_requests(1)
    with anyio.fail_after(10):
        await world.upstream.client_left.wait()  # the server hung up on the upstream
    stored = await wait_until_ended(world, first["response"]["id"])
    assert stored.status == "cancelled"


async def test_background_create_poll_and_resume_from_a_sequence_number(world: World) -> None:
    world.upstream.add(*tool_turn())
    created = await create(world, model="m", input="Rome?", background=True)
    assert created.background is True
    assert created.status in ("queued", "in_progress")

    final = await wait_until_ended(world, created.id)
    assert final.status == "completed"
    assert final.output_text == "22 °C in Rome."

    path = f"/v1/responses/{created.id}?stream=true"
    events = await sse_events(world, "GET", path)
    check_stream(events, dumped(final))
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    tail = await sse_events(world, "GET", path + "&starting_after=3")
    assert tail == events[4:]

    # The SDK's own resume call parses the same events.
    resumed = await world.client.responses.retrieve(created.id, stream=True, starting_after=3)
    kinds = [event.type async for event in resumed]
    assert kinds == [event["type"] for event in events[4:]]


async def test_a_background_response_must_be_stored(world: World) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await world.client.responses.create(model="m", input="x", background=True, store=False)
    assert caught.value.body["param"] == "store"  # type: ignore[index]
    assert world.upstream.bodies == []


async def test_a_resumed_stream_follows_a_running_background_response(world: World) -> None:
    gate = anyio.Event()

    def held(received: Received) -> Reply:
        return attrs.evolve(Reply.chat(ChatReply.text("Done at last."), received, 1), before=gate)

    world.upstream.add(held)
    created = await create(world, model="m", input="slowly", background=True)
    await world.upstream.wait_for_requests(1)

    events: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {CALLER_KEY}"}
    path = f"/v1/responses/{created.id}?stream=true&starting_after=0"
    async with world.http.stream("GET", path, headers=headers) as answer:
        lines = answer.aiter_lines()
        async for line in lines:
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line.removeprefix("data: ")))
                if events[-1]["type"] == "response.in_progress":
                    break
        gate.set()  # only now may the model answer: what follows is live
        async for line in lines:
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line.removeprefix("data: ")))
    assert events[0]["sequence_number"] == 1
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "Done at last."


async def test_cancelling_a_background_response_cancels_its_tool(world: World) -> None:
    world.upstream.add(ChatReply.tool_call("hang", {}, call_id="h1"))
    created = await create(world, model="m", input="wait", background=True)
    await world.wait_for_mark("hang started")

    cancelled = await world.client.responses.cancel(created.id)

    assert cancelled.status == "cancelled"
    assert "hang cancelled" in world.marked()
    events = await sse_events(world, "GET", f"/v1/responses/{created.id}?stream=true")
    assert events[-1]["type"] == "error"
    assert events[-1]["code"] == "response_cancelled"


async def test_shutdown_hands_background_responses_over_for_another_replica(
    tmp_path: Path,
) -> None:
    launch = Launch(tmp_path)
    database = tmp_path / "responses.db"
    async with running_upstream() as upstream:
        upstream.add(ChatReply.tool_call("hang", {}, call_id="h1"))
        args = [*Launch.args(upstream, f"sqlite:{database}"), "--graceful-timeout", "0.5"]
        async with serving(args, log=tmp_path / "log", env=launch.env()) as server:
            async with openai.AsyncOpenAI(
                base_url=server.url + "/v1", api_key=CALLER_KEY, max_retries=0
            ) as client:
                created = await client.responses.create(model="m", input="x", background=True)
                world_marks = tmp_path / "marks.txt"
                with anyio.fail_after(10):
                    while "hang started" not in read_marks(world_marks):  # noqa: ASYNC110
                        await anyio.sleep(0.02)
            server.stop(signal.SIGTERM)
            with anyio.fail_after(20):
                await server.process.wait()
            # uvicorn re-raises the signal it caught once its graceful shutdown is done.
            assert server.process.returncode in (0, -signal.SIGTERM), (tmp_path / "log").read_text()
    assert "hang cancelled" in world_marks.read_text().splitlines()
    assert len(upstream.bodies) == 1
    assert "Traceback" not in (tmp_path / "log").read_text()
    # Handed over, not cancelled: still running, its lease released, so the next sweep of
    # any replica on this store (or of this one, restarted) takes it at once.
    async with SQLiteStore(database) as store:
        record = await store.get_response(created.id)
        expired = await store.expired_responses(10, unclaimed_grace=3600)
    assert record.status is ResponseStatus.IN_PROGRESS
    assert created.id in expired


async def test_shutdown_ends_open_streams_with_an_event_after_the_graceful_timeout(
    tmp_path: Path,
) -> None:
    launch = Launch(tmp_path)
    database = tmp_path / "responses.db"
    marks = tmp_path / "marks.txt"
    async with running_upstream() as upstream:
        upstream.add(ChatReply.tool_call("hang", {}, call_id="h1"))
        args = [*Launch.args(upstream, f"sqlite:{database}"), "--graceful-timeout", "0.5"]
        async with (
            serving(args, log=tmp_path / "log", env=launch.env()) as server,
            httpx2.AsyncClient(base_url=server.url, timeout=30) as http,
        ):
            headers = {"Authorization": f"Bearer {CALLER_KEY}"}
            body = {"model": "m", "input": "wait", "stream": True}
            async with http.stream("POST", "/v1/responses", json=body, headers=headers) as answer:
                lines = answer.aiter_lines()
                first = await first_event(lines)
                with anyio.fail_after(10):
                    while "hang started" not in read_marks(marks):  # noqa: ASYNC110
                        await anyio.sleep(0.02)
                server.stop(signal.SIGTERM)
                rest: list[str] = []
                with anyio.fail_after(20):
                    async for line in lines:
                        rest.append(line)
                    await server.process.wait()
    assert "hang cancelled" in read_marks(marks)
    data = [json.loads(line[6:]) for line in rest if line.startswith("data: {")]
    assert data[-1]["type"] == "error"
    assert data[-1]["code"] == "server_shutting_down"
    assert "data: [DONE]" in rest
    async with SQLiteStore(database) as store:
        record = await store.get_response(first["response"]["id"])
        expired = await store.expired_responses(10, unclaimed_grace=3600)
    assert record.status is ResponseStatus.IN_PROGRESS
    assert record.id in expired


async def test_a_postgres_store_serves_responses_other_processes_can_read(tmp_path: Path) -> None:
    url = require_postgres()
    schema = new_schema()
    try:
        async with running_upstream() as upstream:
            upstream.add(ChatReply.text("Stored in PostgreSQL."))
            args = [*Launch.args(upstream, url), "--postgres-schema", schema]
            async with (
                serving(args, log=tmp_path / "log", env=Launch(tmp_path).env()) as server,
                openai.AsyncOpenAI(
                    base_url=server.url + "/v1", api_key=CALLER_KEY, max_retries=0
                ) as client,
            ):
                response = await client.responses.create(model="m", input="hi")
        async with PostgresStore.from_url(url, schema=schema) as store:
            record = await store.get_response(response.id)
        assert record.status is ResponseStatus.COMPLETED
        assert record.response is not None
        assert record.response["output"][0]["content"][0]["text"] == "Stored in PostgreSQL."
    finally:
        drop_schema(url, schema)


async def test_the_served_stream_is_valid_on_both_wires_and_ends_with_done(tmp_path: Path) -> None:
    """Over real HTTP from the subprocess (which the in-process emission checks cannot
    see), with ``--event-names openresponses``: the spec's reasoning event names, the
    whole stream valid under the SDK and the spec, ``[DONE]`` last."""
    launch = Launch(tmp_path)
    async with (
        running_upstream() as upstream,
        serving(
            [*Launch.args(upstream, "memory"), "--event-names", "openresponses"],
            log=tmp_path / "server.log",
            env=launch.env(),
        ) as server,
        httpx2.AsyncClient(base_url=server.url, timeout=30) as http,
    ):
        upstream.add(ChatReply.text("Forty-two.", reasoning="Think it through."))
        headers = {"Authorization": f"Bearer {CALLER_KEY}"}
        body = {"model": "m", "input": "q", "stream": True}
        async with http.stream("POST", "/v1/responses", json=body, headers=headers) as answer:
            lines = [line async for line in answer.aiter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    check_emitted_stream(events, ended_with_done=True)
    types = {event["type"] for event in events}
    assert {"response.reasoning.delta", "response.reasoning.done"} <= types
    assert not any(kind.startswith("response.reasoning_text") for kind in types)
