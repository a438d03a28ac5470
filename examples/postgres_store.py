"""A response stored in PostgreSQL, then read back as any other worker would.

Needs the ``postgres`` extra and a reachable server (``RESPONSELOOP_POSTGRES_URL``,
default the local test database). The model is scripted, so no model server is needed.

    python examples/postgres_store.py
"""

from __future__ import annotations

import os
import uuid

import anyio

from responseloop import ChatTransition, ResponseRecord, UpstreamTarget, run_response_loop
from responseloop.stores.postgres import PostgresStore
from responseloop.testing import ChatReply, ScriptedChatModel

URL = os.environ.get("RESPONSELOOP_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


async def main() -> None:
    request = {"model": "m", "messages": [{"role": "user", "content": "Hello?"}]}
    response_id = f"resp_{uuid.uuid4().hex}"
    # open() creates or migrates the schema, under a lock, so workers may start together.
    async with PostgresStore.from_url(URL, schema="responseloop_example") as store:
        await store.create_response(ResponseRecord(id=response_id, request=request))
        await run_response_loop(
            response_id,
            store=store,
            http_client=ScriptedChatModel([ChatReply.text("Hello from PostgreSQL.")]),
            upstream=UpstreamTarget("http://unused"),
            transition=ChatTransition(request),
        )
    # Another process, on another machine, sees the same chain.
    async with PostgresStore.from_url(URL, schema="responseloop_example") as store:
        for step in await store.list_chain(response_id, None):
            print(step.sequence, step.kind.value, step.state.value)


if __name__ == "__main__":
    anyio.run(main)
