"""The Responses API as an ASGI app (extra ``server``: ``pip install 'responseloop[server]'``).

:func:`create_app` wraps a :class:`~responseloop.adapters.ResponsesService`;
:func:`app_to_upstream` builds one for a chat-completions server in one call. The
``responseloop serve`` command runs it with uvicorn.
"""

from ._app import ResponsesApp, app_to_upstream, create_app

__all__ = ["ResponsesApp", "app_to_upstream", "create_app"]
