"""Starts ``responseloop serve`` as a real subprocess on a loopback port it picks itself
(``--port 0``; the port is read from the line the command prints)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import anyio
import anyio.abc
import attrs
from anyio.streams.buffered import BufferedByteReceiveStream

ROOT = Path(__file__).resolve().parents[2]


def subprocess_env(extra: Mapping[str, str] = ()) -> dict[str, str]:  # type: ignore[assignment]
    """This environment, with the worktree's ``src`` and root (for ``tests.…``) importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    env.update(extra)
    return env


@attrs.frozen
class Served:
    """A running server: its base ``url`` (…/v1 is added by callers) and process."""

    url: str
    process: anyio.abc.Process
    log: Path

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Ask the server to shut down (uvicorn's graceful shutdown on SIGTERM/SIGINT)."""
        self.process.send_signal(sig)


@contextlib.asynccontextmanager
async def serving(
    args: Sequence[str], *, log: Path, env: Mapping[str, str] | None = None
) -> AsyncIterator[Served]:
    """Run ``responseloop serve ARGS --port 0`` until the block ends, then stop it with
    SIGTERM and wait for it (its stderr goes to ``log``)."""
    command = [
        sys.executable,
        "-m",
        "responseloop",
        "serve",
        "--port",
        "0",
        "--log-level",
        "warning",
        *args,
    ]
    with open(log, "wb") as stderr:  # noqa: ASYNC230 - once, before the process starts
        process = await anyio.open_process(
            command, env=subprocess_env(env or {}), stdout=subprocess.PIPE, stderr=stderr
        )
    try:
        assert process.stdout is not None
        with anyio.fail_after(30):
            line = await BufferedByteReceiveStream(process.stdout).receive_until(b"\n", 1000)
        url = line.decode().rsplit(" ", 1)[-1].strip()
        assert url.startswith("http://127.0.0.1:"), line
        yield Served(url, process, log)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            await process.wait()
        await process.aclose()
