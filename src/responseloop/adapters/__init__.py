"""Adapters: the loop behind one call (queue seam), and as an httpx2 transport."""

from ._seam import LoopRequest, ResponseLoopHttpClient
from ._service import PreparedResponse, ResponsesService, RunResult
from ._transport import ResponseLoopTransport, caller_from_key

__all__ = [
    "LoopRequest",
    "PreparedResponse",
    "ResponseLoopHttpClient",
    "ResponseLoopTransport",
    "ResponsesService",
    "RunResult",
    "caller_from_key",
]
