"""``responseloop serve`` with API keys (a file and ``$RESPONSELOOP_API_KEYS``), an access
file and ``--metrics``, as a subprocess driven by the official openai client, and
``responseloop hash-key``.

The server process is what these tests exercise, so the client side runs on asyncio only.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import httpx2
import openai
import pytest

from responseloop.access import key_digest
from responseloop.testing import ChatReply
from tests.asgi.serving import Served, serving, subprocess_env
from tests.loopback_upstream import Upstream, running_upstream
from tests.openai_shapes import validate_response

FILE_KEY, DIGEST_KEY, ENV_KEY, ACCESS_KEY = "sk-file-1", "sk-file-2", "sk-env-1", "sk-access-1"
ALL_KEYS = (FILE_KEY, DIGEST_KEY, ENV_KEY, ACCESS_KEY)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@attrs.frozen
class World:
    upstream: Upstream
    server: Served

    def client(self, key: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.server.url + "/v1", api_key=key, max_retries=0)


def write_access_files(tmp_path: Path) -> list[str]:
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# plaintext and digests\n{FILE_KEY}\n{key_digest(DIGEST_KEY)}  # two\n")
    access = tmp_path / "access.toml"
    access.write_text(
        f"""
        [groups.weather]
        keys = ["{key_digest(ACCESS_KEY)}"]
        tools = "tests.asgi.serve_tools:tools"
        models = ["m1"]
        """
    )
    return ["--api-keys-file", str(keys), "--access-file", str(access), "--metrics"]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with running_upstream() as upstream:
        upstream.models = ["m1", "m2"]
        args = ["--upstream", upstream.url + "/v1", *write_access_files(tmp_path)]
        env = {
            "RESPONSELOOP_API_KEYS": f"{ENV_KEY}, sk-env-2",
            "RESPONSELOOP_TEST_MARKS": str(tmp_path / "marks.txt"),
        }
        async with serving(args, log=tmp_path / "server.log", env=env) as server:
            yield World(upstream, server)
        log = (tmp_path / "server.log").read_text()
        assert not [key for key in ALL_KEYS if key in log], log


async def test_unknown_or_missing_keys_are_refused_with_openais_401(world: World) -> None:
    async with world.client("sk-nobody") as client:
        with pytest.raises(openai.AuthenticationError) as refused:
            await client.responses.create(model="m1", input="hi")
        with pytest.raises(openai.AuthenticationError):
            await client.models.list()
    assert refused.value.code == "invalid_api_key"
    async with httpx2.AsyncClient(base_url=world.server.url) as http:
        bare = await http.post("/v1/responses", json={"model": "m1", "input": "hi"})
        health, ready = await http.get("/health"), await http.get("/ready")
    assert bare.status_code == 401
    assert bare.json()["error"]["code"] == "invalid_api_key"
    assert (health.status_code, ready.status_code) == (200, 200)
    assert world.upstream.received == []


async def test_keys_from_the_file_and_the_environment_are_let_in(world: World) -> None:
    for number, key in enumerate((FILE_KEY, DIGEST_KEY, ENV_KEY, "sk-env-2")):
        world.upstream.add(ChatReply.text(f"hello {number}"))
        async with world.client(key) as client:
            response = await client.responses.create(model="m2", input="hi")
        validate_response(response.model_dump(mode="json", exclude_unset=True, by_alias=True))
        assert response.output_text == f"hello {number}"
    # These keys have no tools (no --tools), and every model.
    assert all("tools" not in body for body in world.upstream.bodies)


async def test_an_access_file_group_gets_its_tools_and_only_its_models(world: World) -> None:
    world.upstream.add(
        ChatReply.tool_call("get_weather", {"city": "Paris"}, call_id="c1"),
        ChatReply.text("18 °C"),
    )
    async with world.client(ACCESS_KEY) as client:
        with pytest.raises(openai.NotFoundError) as refused:
            await client.responses.create(model="m2", input="Weather in Paris?")
        response = await client.responses.create(model="m1", input="Weather in Paris?")
        listed = await client.models.list()
    async with world.client(FILE_KEY) as client:
        everything = await client.models.list()
    assert refused.value.code == "model_not_found"
    validate_response(response.model_dump(mode="json", exclude_unset=True, by_alias=True))
    assert response.output_text == "18 °C"
    offered = [tool["function"]["name"] for tool in world.upstream.bodies[0]["tools"]]
    assert "get_weather" in offered
    assert [model.id for model in listed.data] == ["m1"]
    assert [(m.id, m.object, m.owned_by) for m in everything.data] == [
        ("m1", "model", "loopback"),
        ("m2", "model", "loopback"),
    ]
    async with httpx2.AsyncClient(base_url=world.server.url) as http:
        metrics = await http.get("/metrics")
    assert metrics.status_code == 200
    assert 'responseloop_responses_total{outcome="completed"} 1.0' in metrics.text
    assert 'responseloop_steps_total{kind="tool_call",outcome="completed"} 1.0' in metrics.text
    assert "responseloop_responses_in_flight 0.0" in metrics.text


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "responseloop", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env({}),
        check=False,
    )


def test_hash_key_prints_the_digest_of_the_key_on_stdin() -> None:
    result = run("hash-key", stdin="sk-secret\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == key_digest("sk-secret") + "\n"
    empty = run("hash-key", stdin="")
    assert empty.returncode == 2
    assert empty.stderr == "responseloop: error: hash-key: no key on stdin\n"


BAD_STARTS = [
    ("--api-keys-file", None, "--api-keys-file: cannot read {path}: No such file"),
    ("--api-keys-file", "# only a comment\n", "--api-keys-file {path}: holds no key"),
    ("--access-file", None, "--access-file: cannot read {path}: No such file"),
    ("--access-file", "[groups.a\n", "--access-file {path}: not valid TOML"),
    (
        "--access-file",
        f'[groups.a]\nkeys = ["{key_digest("k")}"]\ntools = "no_such_module_x:t"\n',
        "--access-file: cannot import 'no_such_module_x'",
    ),
    (
        "--access-file",
        f'[groups.a]\nkeys = ["{key_digest("k")}"]\n[groups.b]\nkeys = ["{key_digest("k")}"]',
        "access: a key is in two groups, 'a' and 'b'",
    ),
]


@pytest.mark.parametrize(("flag", "content", "expected"), BAD_STARTS)
def test_a_bad_key_or_access_file_is_one_line_and_exit_2(
    tmp_path: Path, flag: str, content: str | None, expected: str
) -> None:
    path = tmp_path / "file"
    if content is not None:
        path.write_text(content)
    result = run("serve", "--upstream", "http://127.0.0.1:9/v1", "--port", "0", flag, str(path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("responseloop: error: " + expected.format(path=path)), lines[0]
