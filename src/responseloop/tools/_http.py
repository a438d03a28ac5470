"""HttpToolExecutor: server-side tools that are HTTP endpoints chosen by the operator."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import anyio
import attrs
import httpx2

from ..abc._config import RequestContext
from ..abc._json import JSON
from ..abc._tools import ToolSchema
from ..exceptions import ToolArgumentsError, ToolExecutionError, ToolNotFound, ToolTimeout
from ._schema import check_arguments

__all__ = ["HttpTool", "HttpToolError", "HttpToolExecutor"]


def _object_schema(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return dict(value) if value is not None else {"type": "object", "properties": {}}


def _headers(value: Mapping[str, str]) -> Mapping[str, str]:
    return dict(value)


def _positive(_instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


@attrs.frozen
class HttpTool:
    """One HTTP tool, as the operator configures it (never from a request body).

    A call POSTs the model's arguments as a JSON object to ``url`` with
    ``Authorization: Bearer <api_key>`` when a key is set, plus ``headers``. The key and
    headers never appear in ``repr``.

    Attributes:
        name: the tool's name as the model sees it.
        url: where calls go.
        description: what the model is told the tool does.
        parameters: the JSON Schema of the arguments, checked before the call.
        api_key: an optional bearer key.
        timeout: seconds the whole call may take (connect, send and read the answer).
        idempotent: whether a call may safely run twice (see :class:`ToolSchema`).
        headers: extra request headers.
    """

    name: str
    url: str
    description: str = ""
    parameters: Mapping[str, Any] = attrs.field(default=None, converter=_object_schema)
    api_key: str | None = attrs.field(default=None, repr=False)
    timeout: float = attrs.field(default=30.0, validator=_positive)
    idempotent: bool = False
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_headers, repr=False)

    def __attrs_post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"HTTP tool {self.name!r} needs an http(s) URL, got {self.url!r}")

    @property
    def schema(self) -> ToolSchema:
        """The tool as the model sees it."""
        return ToolSchema(
            name=self.name,
            description=self.description,
            parameters=self.parameters,
            idempotent=self.idempotent,
        )


class HttpToolError(ToolExecutionError):
    """An HTTP tool answered a non-2xx status. ``body`` is the start of its answer."""

    def __init__(self, message: str, *, status: int, body: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = body

    def to_error(self) -> dict[str, Any]:
        return {**super().to_error(), "status": self.status}


class _TooLarge(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class HttpToolExecutor:
    """A :class:`~responseloop.abc.ToolExecutor` of operator-configured HTTP tools.

    A 2xx JSON answer is the tool's result; a 2xx answer that is not JSON becomes
    ``{"result": text}``. Other statuses fail with :class:`HttpToolError` (its message
    carries the status and the first ``error_body_chars`` of the body, which the model
    sees: set 0 to keep tool bodies out of messages and stored errors); timeouts fail with
    :class:`~responseloop.exceptions.ToolTimeout`, connection failures with
    :class:`~responseloop.exceptions.ToolExecutionError`. An answer over ``max_response_bytes`` is
    rejected as it streams in, never loaded whole.

    Use it as ``async with HttpToolExecutor(tools) as executor:`` to share one connection
    pool across calls; without that, each call opens and closes its own client. A
    ``client`` you pass stays yours to close.

    Args:
        tools: the tools; names must be unique.
        client: an ``httpx2.AsyncClient`` to send with.
        max_response_bytes: the largest answer body accepted.
        error_body_chars: how much of an error answer's body goes into the error message.
    """

    def __init__(
        self,
        tools: Iterable[HttpTool],
        *,
        client: httpx2.AsyncClient | None = None,
        max_response_bytes: int = 1_048_576,
        error_body_chars: int = 500,
    ) -> None:
        self._tools: dict[str, HttpTool] = {}
        for tool in tools:
            if tool.name in self._tools:
                raise ValueError(f"two HTTP tools are named {tool.name!r}")
            self._tools[tool.name] = tool
        if max_response_bytes <= 0:
            raise ValueError(f"max_response_bytes must be positive, got {max_response_bytes!r}")
        if error_body_chars < 0:
            raise ValueError(f"error_body_chars must be >= 0, got {error_body_chars!r}")
        self._client = client
        self._owned: httpx2.AsyncClient | None = None
        self.max_response_bytes = max_response_bytes
        self.error_body_chars = error_body_chars

    async def __aenter__(self) -> HttpToolExecutor:
        if self._client is None and self._owned is None:
            self._owned = httpx2.AsyncClient()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        owned, self._owned = self._owned, None
        if owned is not None:
            await owned.aclose()

    @property
    def tool_names(self) -> frozenset[str]:
        """The names of the configured tools."""
        return frozenset(self._tools)

    async def tools(self, ctx: RequestContext) -> Sequence[ToolSchema]:
        """Every configured tool, whatever the context."""
        return [tool.schema for tool in self._tools.values()]

    async def execute(self, name: str, call_id: str, arguments: JSON, ctx: RequestContext) -> JSON:
        """POST ``arguments`` to the tool's URL and return its answer.

        The request carries the call's id and the response's id as ``X-Tool-Call-Id`` and
        ``X-Response-Id`` headers, so the tool's logs line up with the loop's.

        Raises:
            ToolNotFound: no tool of that name.
            ToolArgumentsError: the arguments are not a JSON object fitting the schema.
            HttpToolError: the tool answered a non-2xx status.
            ToolTimeout: no full answer within the tool's timeout.
            ToolExecutionError: the connection failed or the answer was too large.
        """
        tool = self._tools.get(name)
        if tool is None:
            raise ToolNotFound(name)
        if not isinstance(arguments, dict):
            raise ToolArgumentsError(
                f"invalid arguments for tool {name!r}: expected a JSON object, "
                f"got {type(arguments).__name__}"
            )
        problems = check_arguments(tool.parameters, arguments)
        if problems:
            raise ToolArgumentsError(f"invalid arguments for tool {name!r}: {'; '.join(problems)}")
        headers = {
            **tool.headers,
            # A compressed body could expand past the size limit before it is counted.
            "Accept-Encoding": "identity",
            "X-Tool-Call-Id": call_id,
        }
        if ctx.response_id:
            headers["X-Response-Id"] = ctx.response_id
        if tool.api_key:
            headers["Authorization"] = f"Bearer {tool.api_key}"
        with anyio.move_on_after(tool.timeout) as deadline:
            try:
                status, body = await self._post(tool, arguments, headers)
            except httpx2.TimeoutException:
                deadline.cancel()
            except httpx2.HTTPError as exc:
                raise ToolExecutionError(
                    f"tool {name!r} could not be reached: {type(exc).__name__}"
                ) from exc
            except _TooLarge as exc:
                raise ToolExecutionError(
                    f"tool {name!r} answered more than {self.max_response_bytes} bytes"
                    f" ({exc.size} bytes read or announced)"
                ) from None
        if deadline.cancel_called:
            raise ToolTimeout(f"tool {name!r} timed out after {tool.timeout}s")
        text = body.decode("utf-8", errors="replace")
        if not 200 <= status < 300:
            excerpt = _excerpt(text, self.error_body_chars)
            raise HttpToolError(
                f"tool {name!r} answered HTTP {status}" + (f": {excerpt}" if excerpt else ""),
                status=status,
                body=excerpt,
            )
        try:
            return json.loads(body) if body.strip() else {"result": ""}
        except ValueError:
            return {"result": text}

    async def _post(
        self, tool: HttpTool, arguments: JSON, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        client = self._client or self._owned
        if client is not None:
            return await self._send(client, tool, arguments, headers)
        async with httpx2.AsyncClient() as own:
            return await self._send(own, tool, arguments, headers)

    async def _send(
        self,
        client: httpx2.AsyncClient,
        tool: HttpTool,
        arguments: JSON,
        headers: Mapping[str, str],
    ) -> tuple[int, bytes]:
        limit = self.max_response_bytes
        async with client.stream(
            "POST",
            tool.url,
            json=arguments,
            headers=dict(headers),
            timeout=tool.timeout,
            follow_redirects=False,
        ) as response:
            announced = response.headers.get("content-length")
            if announced is not None and announced.isdigit() and int(announced) > limit:
                raise _TooLarge(int(announced))
            chunks: list[bytes] = []
            size = 0
            body = response.aiter_bytes()
            async for chunk in body:
                size += len(chunk)
                if size > limit:
                    await _abandon(response, body)
                    raise _TooLarge(size)
                chunks.append(chunk)
            return response.status_code, b"".join(chunks)


async def _abandon(response: httpx2.Response, body: AsyncIterator[bytes]) -> None:
    """Stop reading an answer midway: close its connection, then run the body's iterator
    to its end (which now comes at once), so httpx2's nested stream generators finish
    instead of being left half-run to the garbage collector."""
    await response.aclose()
    with contextlib.suppress(httpx2.HTTPError, anyio.ClosedResourceError, OSError):
        async for _chunk in body:
            pass


def _excerpt(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + "…" if limit else ""
