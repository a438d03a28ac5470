"""Authentication, the model allow-list, ``GET /v1/models``, ``/ready`` and ``/metrics``
through the ASGI app, with the loopback upstream on a real socket (so the model list and
the retries go over HTTP)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest

from responseloop import (
    FunctionTools,
    HttpxClient,
    InMemoryStore,
    ResponseRecord,
    ResponsesService,
    StaticToolResolver,
    create_app,
)
from responseloop.access import AccessPolicy, Grant, KeyGroup, key_digest
from responseloop.exceptions import StoreError
from responseloop.observe.prometheus import PrometheusMetrics
from responseloop.testing import ChatReply
from tests.loopback_upstream import Reply, Upstream
from tests.wire_checks import check_emitted_response

BASE = "http://responseloop.test/v1"
ALPHA, BETA = "sk-alpha-key", "sk-beta-key"

alpha_tools = FunctionTools()


@alpha_tools.tool(parameters={"type": "object", "properties": {}})
def alpha_only() -> dict[str, Any]:
    """A tool only the alpha group has."""
    return {"ok": True}


def policy() -> AccessPolicy:
    return AccessPolicy(
        [
            KeyGroup("alpha", [key_digest(ALPHA)], StaticToolResolver(alpha_tools), ["m1"]),
            KeyGroup("beta", [key_digest(BETA)]),
        ]
    )


class CountingStore(InMemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.created: list[str] = []
        self.broken = False

    async def create_response(self, record: ResponseRecord) -> None:
        self.created.append(record.id)
        await super().create_response(record)

    async def get_response(self, response_id: str) -> ResponseRecord:
        if self.broken:
            raise StoreError("the store is down")
        return await super().get_response(response_id)


async def no_wait(_seconds: float) -> None:
    return None


@asynccontextmanager
async def app_client(
    upstream: Upstream,
    store: InMemoryStore | None = None,
    *,
    upstream_url: str | None = None,
    **app: Any,
) -> AsyncIterator[httpx2.AsyncClient]:
    metrics = app.get("metrics")
    async with HttpxClient.create(observer=metrics, sleep=no_wait) as http:
        target = upstream.target("sk-upstream")
        if upstream_url is not None:
            target = type(target)(upstream_url, target.path, target.api_key)
        resolver = app.pop("resolver", None)
        service = ResponsesService(
            store=store if store is not None else InMemoryStore(),
            http_client=http,
            upstream=target,
            resolver=resolver,
            observer=metrics,
        )
        asgi = create_app(service, **app)
        async with asgi.lifespan():
            transport = httpx2.ASGITransport(app=asgi)
            async with httpx2.AsyncClient(transport=transport, base_url=BASE) as client:
                yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_openai_error(answer: httpx2.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    assert error["param"] is None
    assert isinstance(error["message"], str)
    assert error["message"]
    return error


ROUTES = [
    ("POST", "/responses"),
    ("GET", "/responses/resp_1"),
    ("GET", "/responses/resp_1/input_items"),
    ("POST", "/responses/resp_1/cancel"),
    ("DELETE", "/responses/resp_1"),
    ("GET", "/models"),
    ("GET", "/models/m1"),
    ("GET", "/no-such-route"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("key", [None, "sk-unknown", ""])
async def test_every_v1_route_refuses_a_missing_or_unknown_key_with_401(
    upstream: Upstream, method: str, path: str, key: str | None
) -> None:
    store = CountingStore()
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    async with app_client(upstream, store, authenticator=policy(), resolver=policy()) as client:
        body = json.dumps({"model": "m1", "input": "hi"}).encode()
        answer = await client.request(method, path, headers=headers, content=body)
    error = assert_openai_error(answer, 401, "invalid_api_key")
    assert error["type"] == "invalid_request_error"
    assert answer.headers["www-authenticate"] == "Bearer"
    if key:
        assert key not in answer.text
    assert store.created == []
    assert upstream.received == []
    assert upstream.models_requests == []


async def test_a_known_key_gets_its_groups_tools_and_models(upstream: Upstream) -> None:
    upstream.add(ChatReply.text("Hello alpha."), ChatReply.text("Hello beta."))
    access = policy()
    async with app_client(upstream, authenticator=access, resolver=access) as client:
        alpha = await client.post(
            "/responses", json={"model": "m1", "input": "hi"}, headers=bearer(ALPHA)
        )
        beta = await client.post(
            "/responses", json={"model": "any-model", "input": "hi"}, headers=bearer(BETA)
        )
        # A response is the key's own: the other key does not see it.
        other = await client.get(f"/responses/{alpha.json()['id']}", headers=bearer(BETA))
    for answer in (alpha, beta):
        assert answer.status_code == 200, answer.text
        check_emitted_response(answer.json())
    assert alpha.json()["output"][0]["content"][0]["text"] == "Hello alpha."
    offered = [[tool["function"]["name"] for tool in b.get("tools", [])] for b in upstream.bodies]
    assert offered == [["alpha_only"], []]
    assert_openai_error(other, 404, "response_not_found")
    assert all("sk-alpha" not in str(r.headers) for r in upstream.received)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_model_outside_the_grant_is_404_model_not_found_and_nothing_is_stored(
    upstream: Upstream, stream: bool
) -> None:
    store = CountingStore()
    access = policy()
    async with app_client(upstream, store, authenticator=access, resolver=access) as client:
        answer = await client.post(
            "/responses",
            json={"model": "m2", "input": "hi", "stream": stream},
            headers=bearer(ALPHA),
        )
    error = assert_openai_error(answer, 404, "model_not_found")
    assert "m2" in error["message"]
    assert store.created == []
    assert upstream.received == []


async def test_models_lists_the_upstreams_models_in_openais_shape_cached(
    upstream: Upstream,
) -> None:
    upstream.models = ["m1", "m2", "m3"]
    async with app_client(upstream) as client:  # no authenticator: open, every model
        first = await client.get("/models", headers=bearer("sk-whoever"))
        again = await client.get("/models")
        one = await client.get("/models/m2")
        missing = await client.get("/models/nope")
    assert first.status_code == 200, first.text
    assert first.json() == {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": 1700000000, "owned_by": "loopback"}
            for name in ("m1", "m2", "m3")
        ],
    }
    assert again.json() == first.json()
    assert one.json() == first.json()["data"][1]
    assert_openai_error(missing, 404, "model_not_found")
    # Asked once, with the upstream's key (never the caller's).
    assert len(upstream.models_requests) == 1
    assert upstream.models_requests[0].headers["authorization"] == "Bearer sk-upstream"
    assert upstream.models_requests[0].path == "/v1/models"


async def test_models_lists_only_the_models_of_the_callers_grant(upstream: Upstream) -> None:
    upstream.models = ["m1", "m2"]
    access = policy()
    async with app_client(upstream, authenticator=access, resolver=access) as client:
        alpha = await client.get("/models", headers=bearer(ALPHA))
        beta = await client.get("/models", headers=bearer(BETA))
        hidden = await client.get("/models/m2", headers=bearer(ALPHA))
    assert [m["id"] for m in alpha.json()["data"]] == ["m1"]
    assert [m["id"] for m in beta.json()["data"]] == ["m1", "m2"]
    assert_openai_error(hidden, 404, "model_not_found")


@pytest.mark.parametrize(
    "reply",
    [
        Reply.text(500, "boom"),
        Reply.text(200, "not json"),
        Reply.json({"object": "list", "data": [{"no": "id"}]}),
        Reply.json(["not", "a", "list", "object"]),
    ],
)
async def test_an_upstream_model_list_that_fails_is_a_502_and_is_not_cached(
    upstream: Upstream, reply: Reply
) -> None:
    upstream.models_reply = reply
    async with app_client(upstream) as client:
        failed = await client.get("/models")
        upstream.models_reply = None
        recovered = await client.get("/models")
    error = assert_openai_error(failed, 502, "upstream_error")
    assert error["type"] == "server_error"
    assert recovered.status_code == 200
    assert [m["id"] for m in recovered.json()["data"]] == ["scripted-model"]


async def test_an_unreachable_upstream_model_list_is_a_502(upstream: Upstream) -> None:
    async with app_client(upstream, upstream_url="http://127.0.0.1:9/v1") as client:
        answer = await client.get("/models")
    assert_openai_error(answer, 502, "upstream_error")


async def test_health_and_ready_need_no_key_and_ready_checks_the_store(
    upstream: Upstream,
) -> None:
    store = CountingStore()
    async with app_client(upstream, store, authenticator=policy()) as client:
        health = await client.get("http://responseloop.test/health")
        ready = await client.get("http://responseloop.test/ready")
        store.broken = True
        down = await client.get("http://responseloop.test/ready")
        still_alive = await client.get("http://responseloop.test/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}
    assert down.status_code == 503
    assert down.json() == {"status": "unavailable", "store": "StoreError"}
    assert still_alive.status_code == 200


async def test_ready_is_503_outside_the_lifespan(upstream: Upstream) -> None:
    async with HttpxClient.create() as http:
        service = ResponsesService(
            store=InMemoryStore(), http_client=http, upstream=upstream.target()
        )
        transport = httpx2.ASGITransport(app=create_app(service))
        async with httpx2.AsyncClient(transport=transport, base_url=BASE) as client:
            answer = await client.get("http://responseloop.test/ready")
    assert answer.status_code == 503
    assert answer.json() == {"status": "starting"}


def samples(text: str) -> dict[str, float]:
    """``name{labels}`` → value of every sample line of a Prometheus exposition."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


async def test_metrics_count_responses_steps_tools_retries_and_in_flight(
    upstream: Upstream,
) -> None:
    metrics = PrometheusMetrics()
    upstream.add(
        Reply.text(503, "busy"),  # retried once: a retry by status
        ChatReply.tool_call("alpha_only", {}, call_id="c1"),
        ChatReply.text("done"),
    )
    resolver = StaticToolResolver(alpha_tools)
    async with app_client(upstream, metrics=metrics, resolver=resolver) as client:
        answer = await client.post("/responses", json={"model": "m", "input": "hi"})
        exposed = await client.get("http://responseloop.test/metrics")
    assert answer.status_code == 200, answer.text
    check_emitted_response(answer.json())
    assert exposed.status_code == 200
    assert exposed.headers["content-type"].startswith("text/plain")
    values = samples(exposed.text)
    assert values['responseloop_responses_total{outcome="completed"}'] == 1
    assert values["responseloop_responses_in_flight"] == 0
    assert values['responseloop_steps_total{kind="model_call",outcome="completed"}'] == 2
    assert values['responseloop_steps_total{kind="tool_call",outcome="completed"}'] == 1
    assert values['responseloop_upstream_seconds_count{outcome="completed"}'] == 2
    assert values['responseloop_upstream_retries_total{status="503"}'] == 1
    assert values['responseloop_tool_seconds_count{outcome="completed",tool="alpha_only"}'] == 1


async def test_metrics_count_a_failed_response(upstream: Upstream) -> None:
    metrics = PrometheusMetrics()
    upstream.add(Reply.text(400, "bad request"))
    async with app_client(upstream, metrics=metrics) as client:
        answer = await client.post("/responses", json={"model": "m", "input": "hi"})
        exposed = await client.get("http://responseloop.test/metrics")
    assert answer.status_code == 200, answer.text
    assert check_emitted_response(answer.json()).status == "failed"
    values = samples(exposed.text)
    assert values['responseloop_responses_total{outcome="failed"}'] == 1
    assert values['responseloop_steps_total{kind="model_call",outcome="failed"}'] == 1


async def test_without_metrics_there_is_no_metrics_route(upstream: Upstream) -> None:
    async with app_client(upstream) as client:
        answer = await client.get("http://responseloop.test/metrics")
    assert_openai_error(answer, 404, "unknown_route")


class BrokenAuthenticator:
    async def authenticate(self, api_key: str | None) -> Grant | None:
        raise ConnectionError(f"the key store is down (asked about {api_key})")


async def test_an_authenticator_that_fails_refuses_with_503_not_500(
    upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    async with app_client(upstream, authenticator=BrokenAuthenticator()) as client:
        answer = await client.post(
            "/responses", json={"model": "m", "input": "hi"}, headers=bearer("sk-secret-x")
        )
    error = assert_openai_error(answer, 503, "authentication_unavailable")
    assert error["type"] == "server_error"
    assert upstream.received == []
    assert "the authenticator failed (ConnectionError); refusing" in caplog.text
    assert "sk-secret-x" not in caplog.text
