"""examples/fastapi_mount.py: the Responses app mounted under ``/llm`` in FastAPI, served by
uvicorn in a subprocess, driven by the openai client (plain, streamed and background)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx2
import openai
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from responseloop.testing import ChatReply
from tests.asgi.serving import ROOT, subprocess_env
from tests.documented import documented_command, documented_variables
from tests.loopback_upstream import Upstream, running_upstream

pytest.importorskip("fastapi", reason="the FastAPI example needs fastapi (dev group)")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def api_url() -> AsyncIterator[tuple[str, Upstream]]:
    async with running_upstream() as upstream:
        # The docstring's command, from the repository root, on a port the OS picks
        # (the last --port wins).
        assert documented_variables("fastapi_mount").keys() == {"RESPONSELOOP_UPSTREAM"}
        env = subprocess_env({"RESPONSELOOP_UPSTREAM": upstream.url + "/v1"})
        program, *arguments = documented_command("fastapi_mount")
        command = [str(Path(sys.executable).parent / program), *arguments, "--port", "0"]
        process = await anyio.open_process(command, env=env, stderr=subprocess.PIPE, cwd=ROOT)
        try:
            assert process.stderr is not None
            lines = BufferedByteReceiveStream(process.stderr)
            with anyio.fail_after(30):
                while True:
                    line = (await lines.receive_until(b"\n", 10_000)).decode()
                    found = re.search(r"Uvicorn running on (http://\S+)", line)
                    if found:
                        break
            yield found.group(1), upstream
        finally:
            process.send_signal(signal.SIGTERM)
            with anyio.fail_after(30):
                await process.wait()
            await process.aclose()


async def test_the_mounted_app_serves_the_responses_api_under_its_prefix(
    api_url: tuple[str, Upstream],
) -> None:
    url, model = api_url
    model.add(ChatReply.text("Mounted."), ChatReply.text("Streamed."), ChatReply.text("Later."))
    async with httpx2.AsyncClient(base_url=url) as http:
        assert (await http.get("/")).json()["service"] == "my app"
        assert (await http.get("/llm/health")).json()["status"] == "ok"
    async with openai.AsyncOpenAI(
        base_url=url + "/llm/v1", api_key="sk-any", max_retries=0
    ) as client:
        plain = await client.responses.create(model="m", input="hi")
        assert plain.output_text == "Mounted."
        async with client.responses.stream(model="m", input="hi") as stream:
            final = await stream.get_final_response()
        assert final.output_text == "Streamed."
        background = await client.responses.create(model="m", input="hi", background=True)
        with anyio.fail_after(10):
            while (await client.responses.retrieve(background.id)).status != "completed":  # noqa: ASYNC110 - polling is the API
                await anyio.sleep(0.02)
        resumed = await client.responses.retrieve(background.id, stream=True, starting_after=1)
        kinds = [event.type async for event in resumed]
        assert kinds[-1] == "response.completed"
        assert "response.created" not in kinds
        missing = await http_status(url + "/llm/v1/responses/resp_missing")
        assert missing == 404


async def http_status(url: str) -> int:
    async with httpx2.AsyncClient() as http:
        return (await http.get(url)).status_code
