"""Adapters: the loop behind one call (queue seam), as an httpx2 transport, and the
background runner the ASGI app (:mod:`responseloop.server`) uses."""

from ._background import BackgroundResponses
from ._seam import LoopRequest, ResponseLoopHttpClient
from ._service import PreparedResponse, ResponsesService, RunResult
from ._transport import ResponseLoopTransport, caller_from_key

__all__ = [
    "BackgroundResponses",
    "LoopRequest",
    "PreparedResponse",
    "ResponseLoopHttpClient",
    "ResponseLoopTransport",
    "ResponsesService",
    "RunResult",
    "caller_from_key",
]
