"""What every benchmark shares: the upstream process, the scenario's tool, and versions."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
POSTGRES_URL = os.environ.get(
    "RESPONSELOOP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
MODEL = "bench-model"
PROMPT = "What is 1 + 2?"


async def add(a: int, b: int) -> dict[str, int]:
    """Add two integers."""
    return {"sum": a + b}


@contextlib.contextmanager
def upstream_process(hold: float = 0.0) -> Iterator[str]:
    """Start :mod:`fast_upstream` in its own process; yield its base URL (no ``/v1``)."""
    process = subprocess.Popen(
        [sys.executable, str(HERE / "fast_upstream.py"), "--hold", str(hold)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdin is not None
    line = process.stdout.readline()
    if not line.startswith("port "):
        process.kill()
        raise RuntimeError(f"the upstream did not start: {line!r}")
    try:
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        process.stdin.close()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stop(process: subprocess.Popen[Any], grace: float = 15.0) -> None:
    """Ask ``process`` to end (SIGTERM, as a supervisor would), and kill it after
    ``grace`` seconds."""
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def upstream_stats(base_url: str) -> dict[str, Any]:
    """Requests served and CPU seconds used so far by the upstream process."""
    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", "/stats")
        return dict(json.loads(connection.getresponse().read()))
    finally:
        connection.close()


def versions() -> dict[str, str]:
    """The interpreter and the packages whose speed the numbers depend on."""
    found = {"python": platform.python_version()}
    for name in (
        "responseloop",
        "httpx2",
        "httpcore2",
        "h11",
        "anyio",
        "openai",
        "openai-agents",
        "psycopg",
        "aiohttp",
        "httpx-aiohttp",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def machine() -> str:
    """CPU model and count, memory, OS: enough to compare runs across machines."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError), open("/proc/meminfo") as info:
        for line in info:
            if line.startswith("MemTotal"):
                memory = f", {int(line.split()[1]) / 1024 / 1024:.0f} GiB RAM"
                break
    return f"{os.cpu_count()} cores ({cpu}){memory}, {platform.system()} {platform.release()}"
