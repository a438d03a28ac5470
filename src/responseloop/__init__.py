"""responseloop: the server-side agent loop of the OpenAI Responses API, over any
upstream that speaks Chat Completions.

This module is the facade: the names a first-day user needs, each loaded on first use
(``import responseloop`` loads no HTTP client, driver or web framework). Everything else
is imported from its layer, each name from exactly one place:

* :mod:`responseloop.abc`: the Protocols (``HttpClient``, ``ToolExecutor``,
  ``ResponseStore``, ``ToolResolver``, ``Transition``, ``EventSink``) and the values they
  exchange.
* :mod:`responseloop.exceptions`: the error tree.
* :mod:`responseloop.core`, :mod:`responseloop.chat`, :mod:`responseloop.openresponses`:
  the pure layers (dialect-neutral decisions, the Chat Completions dialect, the Responses
  wire).
* :mod:`responseloop.service`, :mod:`responseloop.adapters`, :mod:`responseloop.asgi`,
  :mod:`responseloop.http`, :mod:`responseloop.stores`, :mod:`responseloop.tools`,
  :mod:`responseloop.observe`, :mod:`responseloop.testing`: the I/O layers; optional
  integrations in their own modules (``stores.sqlite``, ``stores.postgres``,
  ``tools.mcp``, ``observe.otel``, ``http.aiohttp``).

Everything in a ``_module`` is private.
"""

from __future__ import annotations

import logging
import typing

from . import _lazy
from ._version import __version__

if typing.TYPE_CHECKING:
    from .abc._config import LoopConfig, RequestContext, UpstreamTarget
    from .abc._records import ResponseRecord
    from .adapters._seam import LoopRequest, ResponseLoopHttpClient
    from .adapters._transport import ResponseLoopTransport
    from .asgi._app import create_app
    from .chat._transition import ChatTransition
    from .http._httpx import HttpxClient
    from .http._retry import RetryPolicy
    from .loop._driver import run_response_loop
    from .loop._lease import LeaseKeeper
    from .service import ResponsesService
    from .stores._memory import InMemoryStore
    from .tools._function import FunctionTools
    from .tools._resolvers import StaticToolResolver

# A library never configures logging: without a handler of the host's, nothing is printed.
logging.getLogger(__name__).addHandler(logging.NullHandler())

# name -> the private module that defines it; PEP 562 loads it on first access.
_HOMES = {
    "ChatTransition": ".chat._transition",
    "FunctionTools": ".tools._function",
    "HttpxClient": ".http._httpx",
    "InMemoryStore": ".stores._memory",
    "LeaseKeeper": ".loop._lease",
    "LoopConfig": ".abc._config",
    "LoopRequest": ".adapters._seam",
    "RequestContext": ".abc._config",
    "ResponseLoopHttpClient": ".adapters._seam",
    "ResponseLoopTransport": ".adapters._transport",
    "ResponseRecord": ".abc._records",
    "ResponsesService": ".service",
    "RetryPolicy": ".http._retry",
    "StaticToolResolver": ".tools._resolvers",
    "UpstreamTarget": ".abc._config",
    "create_app": ".asgi._app",
    "run_response_loop": ".loop._driver",
}

__all__ = [
    "ChatTransition",
    "FunctionTools",
    "HttpxClient",
    "InMemoryStore",
    "LeaseKeeper",
    "LoopConfig",
    "LoopRequest",
    "RequestContext",
    "ResponseLoopHttpClient",
    "ResponseLoopTransport",
    "ResponseRecord",
    "ResponsesService",
    "RetryPolicy",
    "StaticToolResolver",
    "UpstreamTarget",
    "__version__",
    "create_app",
    "run_response_loop",
]

if not typing.TYPE_CHECKING:  # mypy sees the imports above, and flags unknown names
    __getattr__, __dir__ = _lazy.lazy_exports(__name__, globals(), _HOMES)
