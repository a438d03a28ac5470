"""Adapters: what puts the loop behind one call. The queue seam
(:class:`~responseloop.ResponseLoopHttpClient`), the httpx2 transport
(:class:`~responseloop.ResponseLoopTransport`), the routes and streaming pump they share,
and the background runner the ASGI app (:mod:`responseloop.asgi`) uses."""

from ._background import BackgroundResponses
from ._transport import caller_from_key

__all__ = ["BackgroundResponses", "caller_from_key"]
