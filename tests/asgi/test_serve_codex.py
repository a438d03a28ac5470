"""``responseloop serve`` takes the real Codex request (tests/data/codex) by default and
refuses its hosted web_search declaration under ``--hosted-tools refuse``."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from responseloop.testing import ChatReply
from tests.asgi.serving import serving
from tests.loopback_upstream import running_upstream
from tests.openresponses.test_codex import codex_body


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the server process is what is tested


@pytest.mark.parametrize("policy", ["skip", "refuse"])
async def test_serve_follows_its_hosted_tools_flag(tmp_path: Path, policy: str) -> None:
    body = {**codex_body("plain"), "stream": False}
    async with (
        running_upstream() as upstream,
        serving(
            ["--upstream", upstream.url + "/v1", "--hosted-tools", policy],
            log=tmp_path / "serve.log",
        ) as served,
        httpx2.AsyncClient(base_url=served.url) as http,
    ):
        upstream.add(ChatReply.text("hi"))
        answer = await http.post("/v1/responses", json=body, timeout=30)
    if policy == "refuse":
        assert answer.status_code == 400
        assert answer.json()["error"]["param"] == "tools[8].type"
        assert upstream.bodies == []
    else:
        assert answer.status_code == 200, answer.text
        assert answer.json()["output"][0]["content"][0]["text"] == "hi"
        assert all(tool["type"] == "function" for tool in upstream.bodies[0]["tools"])
