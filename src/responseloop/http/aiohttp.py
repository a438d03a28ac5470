"""An httpx2 transport over aiohttp, for asyncio hosts (extra ``aiohttp``)."""

from __future__ import annotations

import anyio.lowlevel
import httpx2

from ._httpx import DEFAULT_LIMITS

__all__ = ["aiohttp_transport"]


def aiohttp_transport(limits: httpx2.Limits = DEFAULT_LIMITS) -> httpx2.AsyncBaseTransport:
    """An httpx2 transport that sends over aiohttp, for asyncio hosts (extra ``aiohttp``).

    httpx2's own pool does work for every connection it holds on every request, so its
    throughput falls as concurrency grows; aiohttp's does not (``benchmarks/RESULTS.md``).
    This is the route the ``openai`` SDK's own ``aiohttp`` extra takes::

        http = HttpxClient.create(transport=aiohttp_transport())

    ``limits.max_connections`` bounds the pool and ``limits.keepalive_expiry`` how long an
    idle connection is kept. aiohttp runs on asyncio only: a request made under trio
    raises :class:`RuntimeError` saying so.

    Raises:
        ImportError: ``httpx-aiohttp`` is not installed
            (``pip install 'responseloop[aiohttp]'``).
    """
    try:
        from httpx_aiohttp.httpx2 import AiohttpTransport
    except ImportError as exc:
        raise ImportError(
            "the aiohttp transport needs the aiohttp extra: pip install 'responseloop[aiohttp]'"
        ) from exc
    return _AsyncioOnly(AiohttpTransport(limits=limits))


class _AsyncioOnly(httpx2.AsyncBaseTransport):
    """Refuses requests made outside asyncio with a clear error, instead of aiohttp's own
    failure deep inside its connector."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        # anyio names its backends by module: anyio._backends._asyncio / ._trio.
        backend = anyio.lowlevel.current_token().backend_class.__module__.rpartition("._")[2]
        if backend != "asyncio":
            raise RuntimeError(
                f"the aiohttp transport runs on asyncio only, not {backend}: use HttpxClient's"
                " default httpx2 transport under trio"
            )
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()
