"""ResponseLoopTransport: the Responses API as an httpx2 transport, so ``httpx2`` and the
official ``openai`` client run the loop in-process."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import httpx2

from .._protocols import HttpClient, ResponseStore, ToolExecutor, ToolResolver
from .._values import JSON, LoopConfig, UpstreamTarget
from ..exceptions import InvalidRequestError, ResponseLoopError, ResponseNotFound
from ..stores import InMemoryStore
from ._errors import error_body, exception_body
from ._service import PreparedResponse, ResponsesService

__all__ = ["ResponseLoopTransport", "caller_from_key"]

_ROUTE = re.compile(r"^(?:/v1)?/responses(?:/(?P<id>[^/]+)(?P<sub>/input_items|/cancel)?)?/?$")
_MAX_BODY_BYTES = 16 * 1024 * 1024


def caller_from_key(api_key: str | None) -> str | None:
    """The default caller identity: a digest of the API key, so responses stay private to
    the key that made them while no key is ever stored."""
    if not api_key:
        return None
    return "key_" + hashlib.sha256(api_key.encode()).hexdigest()[:32]


def _json_response(status: int, body: JSON) -> httpx2.Response:
    return httpx2.Response(
        status,
        content=json.dumps(body, ensure_ascii=False).encode(),
        headers={"content-type": "application/json"},
    )


def _not_found(response_id: str) -> httpx2.Response:
    return _json_response(
        404,
        error_body(
            f"No response found with id {response_id!r}.",
            type="invalid_request_error",
            code="response_not_found",
        ),
    )


class ResponseLoopTransport(httpx2.AsyncBaseTransport):
    """An httpx2 transport serving the Responses API from a :class:`ResponsesService`.

    Routes (with or without the ``/v1`` prefix): ``POST /responses`` (JSON, or SSE for
    ``stream: true``), ``GET /responses/{id}``, ``GET /responses/{id}/input_items``,
    ``POST /responses/{id}/cancel`` and ``DELETE /responses/{id}``. Unknown routes get 404,
    wrong methods 405, unknown ids 404, all with OpenAI-style error bodies.

    The caller's key (``Authorization: Bearer …``) picks the server-side tools through the
    resolver and, through ``caller_of``, which stored responses it may see; it is never
    sent upstream (the upstream's key is the :class:`UpstreamTarget`'s).

    The common case in a few lines::

        transport = ResponseLoopTransport.to_upstream("http://localhost:8000/v1", tools=tools)
        client = openai.AsyncOpenAI(
            base_url="http://responseloop.local/v1",
            api_key="caller-key",
            http_client=httpx2.AsyncClient(transport=transport),
        )
    """

    def __init__(
        self,
        service: ResponsesService,
        *,
        caller_of: Callable[[str | None], str | None] = caller_from_key,
    ) -> None:
        self.service = service
        self._caller_of = caller_of

    @classmethod
    def to_upstream(
        cls,
        base_url: str,
        *,
        api_key: str | None = None,
        tools: ToolExecutor | None = None,
        resolver: ToolResolver | None = None,
        store: ResponseStore | None = None,
        config: LoopConfig | None = None,
        http_client: HttpClient | None = None,
    ) -> ResponseLoopTransport:
        """A transport running the loop against the chat-completions server at
        ``base_url`` (``…/v1``; the ``/chat/completions`` path is added).

        ``tools`` are offered to every caller; pass a ``resolver`` instead to choose tools
        per caller key. The store defaults to an :class:`InMemoryStore` and the upstream
        client to :class:`responseloop.http.HttpxClient`.
        """
        if tools is not None and resolver is not None:
            raise ValueError("pass tools (for every caller) or a resolver, not both")
        if tools is not None:
            from ..tools import StaticToolResolver

            resolver = StaticToolResolver(tools)
        if http_client is None:
            from ..http import HttpxClient

            http_client = HttpxClient()
        service = ResponsesService(
            store=store if store is not None else InMemoryStore(),
            http_client=http_client,
            upstream=UpstreamTarget(base_url, "/chat/completions", api_key),
            resolver=resolver,
            config=config,
        )
        return cls(service)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        match = _ROUTE.match(request.url.path)
        if match is None:
            return _json_response(
                404,
                error_body(
                    f"Unknown route {request.method} {request.url.path}",
                    type="invalid_request_error",
                    code="unknown_route",
                ),
            )
        caller = self._caller_of(_bearer_key(request.headers))
        response_id, sub = match.group("id"), match.group("sub")
        allowed = _allowed_methods(response_id, sub)
        if request.method not in allowed:
            return _json_response(
                405,
                error_body(
                    f"Method {request.method} is not allowed here; use {' or '.join(allowed)}",
                    type="invalid_request_error",
                    code="method_not_allowed",
                ),
            )
        try:
            if response_id is None:
                return await self._create(request, caller)
            if sub == "/input_items":
                return await self._input_items(request, response_id, caller)
            if sub == "/cancel":
                return _json_response(200, await self.service.cancel(response_id, caller=caller))
            if request.method == "DELETE":
                await self.service.delete(response_id, caller=caller)
                deleted = {"id": response_id, "object": "response.deleted", "deleted": True}
                return _json_response(200, deleted)
            return await self._retrieve(request, response_id, caller)
        except ResponseNotFound:
            return _not_found(response_id or "")
        except ResponseLoopError as exc:
            return _json_response(exc.http_status, exception_body(exc))

    async def _create(self, request: httpx2.Request, caller: str | None) -> httpx2.Response:
        content = await request.aread()
        if len(content) > _MAX_BODY_BYTES:
            error = InvalidRequestError(f"the body is larger than {_MAX_BODY_BYTES} bytes")
            return _json_response(413, exception_body(error))
        try:
            body = json.loads(content)
        except ValueError as exc:
            error = InvalidRequestError(f"the body is not valid JSON: {exc}")
            return _json_response(400, exception_body(error))
        if not isinstance(body, Mapping):
            error = InvalidRequestError("the body must be a JSON object")
            return _json_response(400, exception_body(error))
        prepared = await self.service.prepare(
            body, api_key=_bearer_key(request.headers), caller=caller
        )
        if prepared.request.stream:
            return await self._stream(prepared)
        result = await self.service.run(prepared)
        return _json_response(200, result.response)

    async def _stream(self, prepared: PreparedResponse) -> httpx2.Response:
        error = InvalidRequestError("streaming is not available yet", param="stream")
        return _json_response(400, exception_body(error))

    async def _retrieve(
        self, request: httpx2.Request, response_id: str, caller: str | None
    ) -> httpx2.Response:
        if request.url.params.get("stream") == "true":
            error = InvalidRequestError(
                "resuming an event stream needs the ASGI app", param="stream"
            )
            return _json_response(400, exception_body(error))
        return _json_response(200, await self.service.retrieve(response_id, caller=caller))

    async def _input_items(
        self, request: httpx2.Request, response_id: str, caller: str | None
    ) -> httpx2.Response:
        items = await self.service.input_items(response_id, caller=caller)
        params = request.url.params
        if params.get("order", "desc") == "desc":
            items.reverse()
        after = params.get("after")
        if after is not None:
            ids = [item["id"] for item in items]
            items = items[ids.index(after) + 1 :] if after in ids else []
        try:
            limit = max(1, min(100, int(params.get("limit", "20"))))
        except ValueError:
            error = InvalidRequestError("limit must be an integer", param="limit")
            return _json_response(400, exception_body(error))
        page = items[:limit]
        body: dict[str, Any] = {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > limit,
        }
        return _json_response(200, body)


def _bearer_key(headers: httpx2.Headers) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, key = value.partition(" ")
    return key.strip() or None if scheme.lower() == "bearer" else None


def _allowed_methods(response_id: str | None, sub: str | None) -> tuple[str, ...]:
    if response_id is None or sub == "/cancel":
        return ("POST",)
    if sub == "/input_items":
        return ("GET",)
    return ("GET", "DELETE")
