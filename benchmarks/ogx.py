"""``responseloop serve`` against OGX (the llama-stack server) on the client-tool round trip.

The round trip: ``POST /v1/responses`` with a *client* function tool (``add``), non-streamed;
the model (:mod:`fast_upstream`) answers with a tool call, so the response completes with a
``function_call`` output item; the client runs ``add`` itself and posts a second request whose
``input`` is the user message, the first response's output items and a
``function_call_output`` (stateless replay, no ``previous_response_id``); the model answers
with text. Both servers run as subprocesses in front of the same :mod:`fast_upstream`
process, over loopback, with the same httpx2 client:

* ``serve (memory)``: ``responseloop serve --store memory`` with no server-side tools;
* ``serve (sqlite)``: the same with ``--store sqlite:…`` in a temporary directory, since
  OGX persists to SQLite;
* ``OGX (sqlite)``: ``ogx run`` of a minimal stack (below), ``remote::openai`` inference
  pointed at the upstream, the builtin Responses provider, SQLite stores in a temporary
  directory (its chat-completions log, ``stores.inference``, disabled), telemetry off,
  logging at ``error``;
* ``serve (memory, store: false)`` / ``OGX (store: false)``: the first and third with
  ``"store": false`` in both requests, so neither keeps the response. OGX's SQLite
  response store is most of its cost: it runs a non-streamed request through its streaming
  path and upserts the response object at every event (about 60 upserts and 30 access-check
  reads per response in a cProfile of 1.5.0, on aiosqlite's thread).

The first three leave ``store`` at its default (true). Wall time per round trip is the
client's; *server CPU* is the server process's (``/proc/<pid>/stat``) over the same
measurement. Interleaved rounds, medians; the target of issue 20 is OGX (sqlite) /
``serve (memory)`` ≥ 5 in wall time, both storing the response as they do by default.

OGX needs Python 3.12 and its own environment; installed for this benchmark with::

    /root/.pyenv/versions/3.12.1/bin/python3.12 -m venv /work/ogx-venv
    /work/ogx-venv/bin/pip install ogx==1.5.0
    /work/ogx-venv/bin/pip install sqlite-vec chardet 'pypdf>=6.16.2' numpy

(the last line is the ``inline::sqlite-vec`` vector-io provider's dependencies: OGX's
Responses provider will not start without a ``vector_io``, ``files`` and ``tool_runtime``
provider, so the stack has ``inline::sqlite-vec``, ``inline::localfs`` and
``remote::brave-search``, none of which the round trip uses). It runs offline: at start-up
the vector-io provider loads tiktoken's ``cl100k_base`` encoding, which tiktoken downloads
from ``openaipublic.blob.core.windows.net``; the launcher (:data:`LAUNCHER`, run with the
OGX interpreter) replaces that check with a no-op before ``ogx run`` starts (the encoding
is used only to chunk files for vector stores). The stack's model list refresh against the
upstream's ``GET /v1/models`` fails (the scripted upstream answers 404) and OGX carries on
with the registered model.

The OGX interpreter comes from ``--ogx-python`` or ``RESPONSELOOP_BENCH_OGX_PYTHON``;
without one, or when OGX fails to start or to answer, :func:`measure` returns
``"not measured: <reason>"`` instead of raising.

    python benchmarks/ogx.py --ogx-python /work/ogx-venv/bin/python [--rounds 5]
        [--round-trips 50]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
from common import MODEL, PROMPT, add, stop, upstream_process
from serve import Server, process_cpu, served

OGX_PYTHON_ENV = "RESPONSELOOP_BENCH_OGX_PYTHON"
SERVE_MEMORY, SERVE_SQLITE, OGX = "serve (memory)", "serve (sqlite)", "OGX (sqlite)"
SERVE_NO_STORE, OGX_NO_STORE = "serve (memory, store: false)", "OGX (store: false)"
# What each contender's ratio is taken against: serve with the same `store` setting.
BASE = {
    SERVE_MEMORY: SERVE_MEMORY,
    SERVE_SQLITE: SERVE_MEMORY,
    OGX: SERVE_MEMORY,
    SERVE_NO_STORE: SERVE_NO_STORE,
    OGX_NO_STORE: SERVE_NO_STORE,
}
# OGX names a model by its provider: the upstream still sees MODEL.
OGX_MODEL = f"openai/{MODEL}"
ADD_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "add",
    "description": "Add two integers.",
    "parameters": {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    },
}
USER_INPUT: list[dict[str, Any]] = [{"type": "message", "role": "user", "content": PROMPT}]
START_TIMEOUT = 180.0
NO_INTERPRETER = "not measured: no OGX interpreter"

# Run as ``python -I -c LAUNCHER run <config> --port N --insecure`` with the OGX interpreter.
LAUNCHER = """\
import sys
import ogx.providers.utils.memory.openai_vector_store_mixin as mixin
# Offline: skip the start-up check that downloads tiktoken's cl100k_base (vector stores only).
mixin.validate_tiktoken_encoding = lambda name="cl100k_base": None
from ogx.cli.ogx import main
sys.argv = ["ogx", *sys.argv[1:]]
sys.exit(main())
"""

CONFIG = """\
version: 2
distro_name: responseloop-bench
apis: [files, inference, responses, tool_runtime, vector_io]
providers:
  inference:
  - provider_id: openai
    provider_type: remote::openai
    config: {{api_key: bench-key, base_url: "{upstream}/v1"}}
  vector_io:
  - provider_id: sqlite-vec
    provider_type: inline::sqlite-vec
    config:
      db_path: {directory}/sqlite_vec.db
      persistence: {{namespace: "vector_io::sqlite_vec", backend: kv_default}}
  files:
  - provider_id: builtin-files
    provider_type: inline::localfs
    config:
      storage_dir: {directory}/files
      metadata_store: {{table_name: files_metadata, backend: sql_default}}
  tool_runtime:
  - provider_id: brave-search
    provider_type: remote::brave-search
    config: {{api_key: "", max_results: 3}}
  responses:
  - provider_id: builtin
    provider_type: inline::builtin
    config:
      persistence:
        responses: {{table_name: responses, backend: sql_default}}
storage:
  backends:
    kv_default: {{type: kv_sqlite, db_path: {directory}/kvstore.db}}
    sql_default: {{type: sql_sqlite, db_path: {directory}/sql_store.db}}
  stores:
    metadata: {{namespace: registry, backend: kv_default}}
    inference: {{table_name: inference_store, backend: sql_default, enabled: false}}
    conversations: {{table_name: openai_conversations, backend: sql_default}}
    prompts: {{table_name: prompts, backend: sql_default}}
    connectors: {{table_name: connectors, backend: sql_default}}
registered_resources:
  models:
  - {{model_id: {model}, provider_id: openai, provider_model_id: {model}, model_type: llm}}
server: {{host: 127.0.0.1, port: {port}}}
"""


def find_ogx_python(explicit: str | None = None) -> str | None:
    """The OGX interpreter: ``explicit``, else ``$RESPONSELOOP_BENCH_OGX_PYTHON``, else none."""
    return explicit or os.environ.get(OGX_PYTHON_ENV) or None


def ogx_version(python: str) -> str:
    """The ``ogx`` package's version in ``python``'s environment (raises when it has none)."""
    done = subprocess.run(
        [python, "-I", "-c", "import importlib.metadata as m, sys; print(m.version('ogx'))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["no output"]
        raise RuntimeError(f"{python} has no ogx package ({lines[-1]})")
    return done.stdout.strip()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def healthy(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/v1/health")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def log_tail(path: Path) -> str:
    """The end of OGX's log on one line, for a "not measured" reason."""
    with contextlib.suppress(OSError):
        found = [line.strip() for line in path.read_text(errors="replace").splitlines()]
        return " / ".join(line for line in found if line)[-1500:] or "(no output)"
    return "(no log)"


@contextlib.contextmanager
def ogx_served(python: str, upstream: str, directory: Path) -> Iterator[Server]:
    """``ogx run`` of the minimal stack (:data:`CONFIG`) through :data:`LAUNCHER`, offline."""
    port = free_port()
    config = directory / "ogx.yaml"
    config.write_text(CONFIG.format(upstream=upstream, directory=directory, port=port, model=MODEL))
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env.pop("PYTHONPATH", None)
    env.pop("OGX_METRICS_ENDPOINT_ENABLED", None)
    env.update(
        OTEL_SDK_DISABLED="true",
        OGX_LOGGING="all=error",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    log_path = directory / "ogx.log"
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(
            [python, "-I", "-c", LAUNCHER, "run", str(config), "--port", str(port), "--insecure"],
            env=env,
            cwd=directory,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not healthy(port):
            if process.poll() is not None:
                raise RuntimeError(
                    f"ogx run exited with {process.returncode}: {log_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"ogx run not healthy after {START_TIMEOUT:g} s")
            time.sleep(0.25)
        yield Server(f"http://127.0.0.1:{port}", process.pid)
    finally:
        stop(process)


async def round_trip(client: httpx2.AsyncClient, url: str, model: str, store: bool = True) -> None:
    """The client-tool round trip: tool call out, the client's result back, text out
    (``store=False`` sends ``"store": false`` in both requests; else ``store`` is left out)."""
    common: dict[str, Any] = {"model": model, "tools": [ADD_TOOL]}
    if not store:
        common["store"] = False
    first = await client.post(url, json={**common, "input": USER_INPUT})
    first.raise_for_status()
    response = first.json()
    assert response["status"] == "completed", response
    call = response["output"][-1]
    assert call["type"] == "function_call", response
    assert call["name"] == "add", response
    result = await add(**json.loads(call["arguments"]))
    replayed = [
        *USER_INPUT,
        *response["output"],
        {"type": "function_call_output", "call_id": call["call_id"], "output": json.dumps(result)},
    ]
    second = await client.post(url, json={**common, "input": replayed})
    second.raise_for_status()
    answer = second.json()
    assert answer["status"] == "completed", answer
    assert answer["output"][-1]["content"][0]["text"] == "1 + 2 = 3", answer


@dataclass
class Row:
    name: str
    wall: list[float] = field(default_factory=list)  # seconds per round trip, one per round
    server_cpu: list[float] = field(default_factory=list)  # server CPU s per round trip

    def median_wall_ms(self) -> float:
        return statistics.median(self.wall) * 1e3

    def median_server_cpu_ms(self) -> float:
        return statistics.median(self.server_cpu) * 1e3


@dataclass
class Result:
    rows: dict[str, Row]
    round_trips: int
    rounds: int
    ogx_version: str
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    idle_cpu_ms_per_s: float  # the OGX process's CPU while nobody calls it

    def ratio(self, name: str = OGX) -> float:
        """Wall time of ``name`` over its :data:`BASE` (medians)."""
        return self.rows[name].median_wall_ms() / self.rows[BASE[name]].median_wall_ms()

    def cpu_ratio(self, name: str = OGX) -> float:
        """Server CPU of ``name`` over its :data:`BASE` (medians)."""
        base = self.rows[BASE[name]]
        return self.rows[name].median_server_cpu_ms() / base.median_server_cpu_ms()


async def run(
    python: str, round_trips: int, rounds: int, log: Callable[[str], None] = print
) -> Result:
    """Measure; raises when OGX cannot be started or answers wrongly (see :func:`measure`)."""
    version = ogx_version(python)
    load_before = os.getloadavg()
    rows = {name: Row(name) for name in BASE}
    with contextlib.ExitStack() as stack:
        upstream = stack.enter_context(upstream_process())
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        (directory / "ogx").mkdir()
        memory = stack.enter_context(served(upstream, "memory", tools=False))
        sqlite = stack.enter_context(
            served(upstream, f"sqlite:{directory / 'serve.db'}", tools=False)
        )
        stacked = stack.enter_context(ogx_served(python, upstream, directory / "ogx"))
        # name: (server, model, store)
        servers: dict[str, tuple[Server, str, bool]] = {
            SERVE_MEMORY: (memory, MODEL, True),
            SERVE_SQLITE: (sqlite, MODEL, True),
            OGX: (stacked, OGX_MODEL, True),
            SERVE_NO_STORE: (memory, MODEL, False),
            OGX_NO_STORE: (stacked, OGX_MODEL, False),
        }
        async with httpx2.AsyncClient(timeout=60.0) as client:
            # Warm up every path (connections, imports, the first SQLite pages).
            for server, model, store in servers.values():
                for _ in range(10):
                    await round_trip(client, f"{server.url}/v1/responses", model, store)
            ogx_pid = stacked.pid
            idle_before = process_cpu(ogx_pid)
            await anyio.sleep(2.0)
            idle_cpu_ms_per_s = (process_cpu(ogx_pid) - idle_before) * 1e3 / 2.0
            order = list(servers)
            for round_index in range(rounds):
                names = order if round_index % 2 == 0 else order[::-1]
                cells = []
                for name in names:
                    server, model, store = servers[name]
                    url = f"{server.url}/v1/responses"
                    server_before = process_cpu(server.pid)
                    started = time.perf_counter()
                    for _ in range(round_trips):
                        await round_trip(client, url, model, store)
                    wall = (time.perf_counter() - started) / round_trips
                    server_cpu = (process_cpu(server.pid) - server_before) / round_trips
                    rows[name].wall.append(wall)
                    rows[name].server_cpu.append(server_cpu)
                    cells.append(f"{name} {wall * 1e3:.2f} ms wall, {server_cpu * 1e3:.2f} ms CPU")
                log(f"  ogx round {round_index + 1}/{rounds}: " + "; ".join(cells))
    return Result(
        rows, round_trips, rounds, version, load_before, os.getloadavg(), idle_cpu_ms_per_s
    )


def measure(
    python: str | None, round_trips: int, rounds: int, log: Callable[[str], None] = print
) -> Result | str:
    """:func:`run`, or ``"not measured: <reason>"`` when OGX is absent or fails."""
    if python is None:
        return f"{NO_INTERPRETER} (--ogx-python or ${OGX_PYTHON_ENV})"
    if shutil.which(python) is None and not Path(python).is_file():
        return f"not measured: the OGX interpreter {python} does not exist"
    try:
        return anyio.run(run, python, round_trips, rounds, log)
    except Exception as error:  # any failure of the peer must not end the full run
        reason = f"{type(error).__name__}: {error}".replace("\n", " ")
        return f"not measured: OGX failed ({reason[:600]})"


def table(result: Result) -> list[tuple[str, ...]]:
    lines: list[tuple[str, ...]] = [
        (
            "contender",
            "wall ms/round trip",
            "x serve, wall",
            "server CPU ms/round trip",
            "x serve, CPU",
        )
    ]
    for name, row in result.rows.items():
        lines.append(
            (
                name,
                f"{row.median_wall_ms():.2f}",
                f"{result.ratio(name):.2f}",
                f"{row.median_server_cpu_ms():.2f}",
                f"{result.cpu_ratio(name):.2f}",
            )
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ogx-python", help=f"the OGX interpreter [env {OGX_PYTHON_ENV}]")
    parser.add_argument("--round-trips", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    result = measure(find_ogx_python(arguments.ogx_python), arguments.round_trips, arguments.rounds)
    if isinstance(result, str):
        print(result)
        return
    print(f"OGX {result.ogx_version}; {result.round_trips} round trips x {result.rounds} rounds")
    for line in table(result):
        print(" | ".join(f"{cell:>26}" for cell in line))
    print(f"OGX idle CPU: {result.idle_cpu_ms_per_s:.1f} ms/s")
    print(f"load average before / after: {result.load_before} → {result.load_after}")


if __name__ == "__main__":
    main()
