"""The Responses API mounted in a FastAPI app, under ``/llm``.

The Responses app's lifespan runs inside the host's (FastAPI does not run the lifespans of
mounted apps), so background responses have their task group, and shutting down cancels
those still running. Run it with uvicorn from the repository root, on a port of its own
(the upstream, vLLM say, has 8000)::

    RESPONSELOOP_UPSTREAM=http://localhost:8000/v1 \\
        uvicorn --factory fastapi_mount:create_api --app-dir examples --port 8080

then point the openai client at ``http://127.0.0.1:8080/llm/v1``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from fastapi import FastAPI

from responseloop.asgi import app_to_upstream


def create_api() -> FastAPI:
    """The host app: its own routes, plus the Responses API under ``/llm``."""
    responses = app_to_upstream(
        os.environ["RESPONSELOOP_UPSTREAM"],
        api_key=os.environ.get("UPSTREAM_API_KEY"),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with responses.lifespan():
            yield

    api = FastAPI(lifespan=lifespan)

    @api.get("/")
    async def home() -> dict[str, str]:
        return {"service": "my app", "responses": "/llm/v1/responses"}

    api.mount("/llm", responses)
    return api
