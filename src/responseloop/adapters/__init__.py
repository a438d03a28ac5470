"""Adapters: what puts the loop behind one call. The queue seam
(:class:`~responseloop.ResponseLoopHttpClient`), the httpx2 transport
(:class:`~responseloop.ResponseLoopTransport`), the routes and streaming pump they share,
the bounded event channel a stream is served from, and the background runner the ASGI app
(:mod:`responseloop.asgi`) uses."""

from ._background import BackgroundResponses
from ._channel import EventChannel
from ._transport import caller_from_key

__all__ = ["BackgroundResponses", "EventChannel", "caller_from_key"]
