"""``responseloop`` on the command line: its version, and one clear line for each reason
it cannot start."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from responseloop import __version__
from responseloop.cli import _bind
from tests.asgi.serving import subprocess_env


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "responseloop", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(env or {}),
        check=False,
    )


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run("serve", "--upstream", "http://127.0.0.1:9/v1", "--port", "0", *args, env=env)


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"responseloop {__version__}"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_colon", "--tools must be module:object, got 'no_colon'"),
        ("no_such_module_xyz:tools", "cannot import 'no_such_module_xyz'"),
        ("tests.asgi.serve_tools:missing", "has no attribute 'missing'"),
        ("tests.asgi.serve_tools:CALLER_KEY", "is a str, not a ToolExecutor"),
    ],
)
def test_a_bad_tools_spec_is_refused(spec: str, message: str) -> None:
    result = serve("--tools", spec)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.startswith("responseloop: error: ")


def test_a_port_in_use_is_refused() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run("serve", "--upstream", "http://127.0.0.1:9/v1", "--port", str(port))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: the port is in use" in result.stderr


def test_a_store_that_cannot_be_opened_is_refused(tmp_path: Path) -> None:
    result = serve("--store", f"sqlite:{tmp_path}/no/such/dir/responses.db")
    assert result.returncode == 1
    assert "cannot open the store sqlite:" in result.stderr


def test_an_unknown_store_kind_is_refused() -> None:
    result = serve("--store", "redis://127.0.0.1")
    assert result.returncode == 2
    assert "--store must be memory, sqlite:PATH or postgres://" in result.stderr


def test_a_missing_upstream_key_variable_is_refused() -> None:
    result = serve("--upstream-key-env", "RESPONSELOOP_TEST_UNSET_KEY")
    assert result.returncode == 2
    assert "$RESPONSELOOP_TEST_UNSET_KEY is not set" in result.stderr


def test_the_server_module_names_its_extra_when_starlette_is_missing() -> None:
    code = "import sys; sys.modules['starlette'] = None; import responseloop.asgi"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(),
        check=False,
    )
    assert result.returncode == 1
    assert "pip install 'responseloop[server]'" in result.stderr


def test_a_bad_postgres_schema_is_refused() -> None:
    result = serve("--store", "postgresql://nobody@127.0.0.1:1/x", "--postgres-schema", "Bad-Name")
    assert result.returncode == 2
    assert "--postgres-schema: schema must be a lower-case SQL identifier" in result.stderr


def test_served_connections_send_small_replies_at_once() -> None:
    """The listening socket ``serve`` hands uvicorn is TCP, so the connections asyncio
    accepts on it have TCP_NODELAY (no ~40 ms wait for a delayed ACK per reply)."""
    seen: list[int] = []

    async def main() -> None:
        listener = _bind("127.0.0.1", 0)
        port = listener.getsockname()[1]

        handled = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            served: socket.socket = writer.get_extra_info("socket")
            seen.append(served.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()
            handled.set()

        server = await asyncio.start_server(handle, sock=listener)
        async with server:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            await handled.wait()
            writer.close()

    asyncio.run(main())
    assert len(seen) == 1
    assert seen[0] != 0
