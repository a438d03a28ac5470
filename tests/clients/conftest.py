"""The client suite's stack, started once per session: the loopback upstream answering
from :mod:`tests.clients.scripted_model`, the real ``responseloop serve`` as a subprocess
(with :mod:`tests.clients.server_tools`), and the :mod:`checking proxy
<tests.clients.checking_proxy>` in front of it that every client talks to."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx2
import openai
import pytest

from responseloop import ResponseLoopTransport
from tests.asgi.serving import subprocess_env
from tests.clients import scripted_model, server_tools
from tests.clients.checking_proxy import CheckingProxy, checking_proxy
from tests.loopback_upstream import Upstream, loopback_upstream

NODE_DIR = Path(__file__).parent / "node"


@pytest.fixture(scope="session")
def clients_upstream() -> Iterator[Upstream]:
    with loopback_upstream() as upstream:
        upstream.responder = scripted_model.answer
        yield upstream


@pytest.fixture(scope="session")
def served_url(
    clients_upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``responseloop serve`` over the scripted upstream; its base URL."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    command = [
        sys.executable, "-m", "responseloop", "serve", "--port", "0", "--log-level", "warning",
        "--upstream", clients_upstream.url + "/v1",
        "--tools", "tests.clients.server_tools:tools",
    ]  # fmt: skip
    with open(log, "wb") as stderr:
        process = subprocess.Popen(
            command, env=subprocess_env(), stdout=subprocess.PIPE, stderr=stderr
        )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        assert line.startswith("responseloop serving on http://127.0.0.1:"), log.read_text()
        yield line.rsplit(" ", 1)[-1].strip()
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture(scope="session")
def session_proxy(served_url: str) -> Iterator[CheckingProxy]:
    with checking_proxy(served_url) as proxy:
        yield proxy


@attrs.define
class Stack:
    """What one test sees of the stack: the URL clients use, and what the upstream and the
    proxy saw since the test began."""

    upstream: Upstream
    proxy: CheckingProxy
    _received_at: int
    _exchanged_at: int
    _problems_at: int
    local_requests: list[Any] = attrs.Factory(list)

    @property
    def base_url(self) -> str:
        return self.proxy.url + "/v1"

    @property
    def upstream_bodies(self) -> list[Any]:
        """The chat requests the upstream received during this test."""
        return [r.json() for r in self.upstream.received[self._received_at :]]

    @property
    def requests(self) -> list[Any]:
        """The ``POST /v1/responses`` bodies the clients sent during this test (through the
        proxy, or in process)."""
        exchanges = self.proxy.exchanges[self._exchanged_at :]
        proxied = [e.body for e in exchanges if e.method == "POST" and e.path == "/v1/responses"]
        return proxied + self.local_requests

    @property
    def problems(self) -> list[str]:
        """Every emitted object that failed :mod:`tests.wire_checks` during this test."""
        return self.proxy.problems[self._problems_at :]


@pytest.fixture
def stack(clients_upstream: Upstream, session_proxy: CheckingProxy) -> Iterator[Stack]:
    """The stack, checked after the test: everything serve emitted must pass the wire checks
    (every event among them, in :func:`check_emitted_stream`)."""
    current = Stack(
        clients_upstream,
        session_proxy,
        len(clients_upstream.received),
        len(session_proxy.exchanges),
        len(session_proxy.problems),
    )
    yield current
    assert not current.problems, "\n".join(current.problems)


@pytest.fixture(params=["serve", "in_process"])
async def client(request: pytest.FixtureRequest, stack: Stack) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official async client, pointed at ``responseloop serve`` (through the proxy), or
    in process at a :class:`ResponseLoopTransport` over the same upstream and tools."""
    if request.param == "serve":
        async with openai.AsyncOpenAI(base_url=stack.base_url, api_key="dummy") as served:
            yield served
        return

    async with (
        in_process_http(stack) as http,
        openai.AsyncOpenAI(
            base_url="http://responseloop/v1", api_key="dummy", http_client=http
        ) as local,
    ):
        yield local


@contextlib.asynccontextmanager
async def in_process_http(stack: Stack) -> AsyncIterator[httpx2.AsyncClient]:
    """An httpx2 client served by a :class:`ResponseLoopTransport` over the stack's upstream
    and tools, recording the ``POST /v1/responses`` bodies in ``stack.local_requests``."""

    async def record(sent: httpx2.Request) -> None:
        if sent.method == "POST" and sent.url.path == "/v1/responses":
            stack.local_requests.append(json.loads(sent.content))

    transport = ResponseLoopTransport.to_upstream(
        stack.upstream.url + "/v1", tools=server_tools.tools
    )
    async with httpx2.AsyncClient(transport=transport, event_hooks={"request": [record]}) as http:
        yield http


def user_messages(body: Any) -> list[str]:
    """The text of each user message of a chat request."""
    return [
        json.dumps(m["content"]) if not isinstance(m["content"], str) else m["content"]
        for m in body["messages"]
        if m["role"] == "user"
    ]


def require_node() -> None:
    """Skip (or, under ``RESPONSELOOP_REQUIRE_SERVICES=1``, fail) without node, npm and the
    installed ``tests/clients/node/node_modules`` (``npm ci`` there)."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if not (NODE_DIR / "node_modules" / ".package-lock.json").exists():
        missing.append("tests/clients/node/node_modules (run npm ci there)")
    if not missing:
        return
    message = f"the Node clients need {', '.join(missing)}"
    if os.environ.get("RESPONSELOOP_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message}; RESPONSELOOP_REQUIRE_SERVICES=1 demands it")
    pytest.skip(message)


def run_node(script: str, *args: str, env: dict[str, str] | None = None) -> Any:
    """Run ``node tests/clients/node/SCRIPT ARGS`` and parse the JSON it prints last."""
    require_node()
    result = subprocess.run(
        ["node", str(NODE_DIR / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=NODE_DIR,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
