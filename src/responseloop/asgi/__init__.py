"""The Responses API as an ASGI app (extra ``server``: ``pip install 'responseloop[server]'``).

:func:`responseloop.create_app` wraps a :class:`~responseloop.ResponsesService`;
:func:`app_to_upstream` builds one for a chat-completions server in one call. The
``responseloop serve`` command runs it with uvicorn.
"""

from ._app import ResponsesApp, app_to_upstream

__all__ = ["ResponsesApp", "app_to_upstream"]
