"""``responseloop serve`` over loopback HTTP, one response at a time, against the raw
httpx2 floor for the same two chat calls.

The server runs as a real subprocess (``responseloop serve --port 0``, the way users run
it) in front of :mod:`fast_upstream` (a process of its own), with the scenario's ``add``
tool (``--tools serve:TOOLS``). Contenders, interleaved round by round:

* ``floor (httpx2)``: the two chat calls made directly with httpx2, the tool inline;
* ``serve (memory, JSON)`` / ``serve (memory, SSE)``: ``POST /v1/responses`` to a server
  with the in-memory store, answered as one JSON body or as the event stream (read to
  ``response.completed``);
* ``serve (memory, aiohttp, …)``: the same with ``--upstream-client aiohttp``;
* ``serve (sqlite, JSON)`` / ``serve (sqlite, SSE)``: the same with ``--store sqlite:…``.

Wall time per response is the client's; CPU per response is the client process's plus the
server process's (``/proc/<pid>/stat``), so the server's own work shows beside the wall
time. Medians over the rounds; the machine's load average is printed with the table.

    python benchmarks/serve.py [--responses 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
from common import HERE, MODEL, PROMPT, add, stop, upstream_process

from responseloop import FunctionTools

TOOLS = FunctionTools()
TOOLS.tool(add)

CHAT_BODY: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}]}
RESPONSES_BODY: dict[str, Any] = {"model": MODEL, "input": PROMPT}
FLOOR = "floor (httpx2)"
TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid``."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


@dataclass
class Server:
    url: str
    pid: int


@contextlib.contextmanager
def served(upstream: str, store: str, *options: str, tools: bool = True) -> Iterator[Server]:
    """``responseloop serve`` in a subprocess with the benchmark's tool (none without
    ``tools``), ``store`` and any further command-line ``options``."""
    env = dict(os.environ)
    root = HERE.parent
    env["PYTHONPATH"] = os.pathsep.join(
        [str(root / "src"), str(HERE), *filter(None, [env.get("PYTHONPATH")])]
    )
    env["BENCH_REASONING_KEY"] = "responseloop-benchmark-reasoning-key"
    command = [
        sys.executable,
        "-m",
        "responseloop",
        "serve",
        "--upstream",
        f"{upstream}/v1",
        *(["--tools", "serve:TOOLS"] if tools else []),
        "--store",
        store,
        "--port",
        "0",
        "--log-level",
        "warning",
        "--reasoning-key-env",
        "BENCH_REASONING_KEY",
        *options,
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if "serving on" not in line:
        process.kill()
        raise RuntimeError(f"responseloop serve did not start: {line!r}")
    try:
        yield Server(line.rsplit(" ", 1)[-1].strip(), process.pid)
    finally:
        stop(process)


async def floor_one(client: httpx2.AsyncClient, url: str, tools: list[Any]) -> None:
    first_body = {**CHAT_BODY, "tools": tools}
    first = await client.post(url, json=first_body)
    first.raise_for_status()
    message = first.json()["choices"][0]["message"]
    call = message["tool_calls"][0]
    result = await add(**json.loads(call["function"]["arguments"]))
    second_body = {
        **first_body,
        "messages": [
            *CHAT_BODY["messages"],
            message,
            {"role": "tool", "tool_call_id": call["id"], "content": json.dumps(result)},
        ],
    }
    second = await client.post(url, json=second_body)
    second.raise_for_status()
    assert second.json()["choices"][0]["message"]["content"] == "1 + 2 = 3"


async def json_one(client: httpx2.AsyncClient, url: str) -> None:
    reply = await client.post(url, json=RESPONSES_BODY)
    reply.raise_for_status()
    response = reply.json()
    assert response["status"] == "completed", response
    assert response["output"][-1]["content"][0]["text"] == "1 + 2 = 3", response


async def sse_one(client: httpx2.AsyncClient, url: str) -> None:
    last = ""
    async with client.stream("POST", url, json={**RESPONSES_BODY, "stream": True}) as reply:
        reply.raise_for_status()
        async for line in reply.aiter_lines():
            if line.startswith("event: "):
                last = line[7:]
    assert last == "response.completed", last


@dataclass
class Row:
    name: str
    wall: list[float] = field(default_factory=list)  # seconds per response, one per round
    cpu: list[float] = field(default_factory=list)  # client + server CPU s per response
    server_cpu: list[float] = field(default_factory=list)

    def median_wall_ms(self) -> float:
        return statistics.median(self.wall) * 1e3

    def median_cpu_ms(self) -> float:
        return statistics.median(self.cpu) * 1e3

    def median_server_cpu_ms(self) -> float:
        return statistics.median(self.server_cpu) * 1e3 if self.server_cpu else 0.0


@dataclass
class Result:
    rows: dict[str, Row]
    responses: int
    rounds: int
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]

    def ratio(self, name: str) -> float:
        return self.rows[name].median_wall_ms() / self.rows[FLOOR].median_wall_ms()


async def run(responses: int, rounds: int, log: Any = print) -> Result:
    load_before = os.getloadavg()
    rows: dict[str, Row] = {FLOOR: Row(FLOOR)}
    with contextlib.ExitStack() as stack:
        upstream = stack.enter_context(upstream_process())
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        servers = {
            "memory": stack.enter_context(served(upstream, "memory")),
            "memory, aiohttp": stack.enter_context(
                served(upstream, "memory", "--upstream-client", "aiohttp")
            ),
            "sqlite": stack.enter_context(served(upstream, f"sqlite:{directory / 'bench.db'}")),
        }
        tools = [schema.to_chat_tool() for schema in TOOLS.schemas()]
        chat_url = f"{upstream}/v1/chat/completions"
        async with httpx2.AsyncClient(timeout=60.0) as client:
            contenders: list[tuple[str, Any, Server | None]] = [(FLOOR, None, None)]
            for store, server in servers.items():
                for kind in ("JSON", "SSE"):
                    name = f"serve ({store}, {kind})"
                    rows[name] = Row(name)
                    contenders.append((name, kind, server))

            async def once(kind: str | None, server: Server | None) -> None:
                if server is None:
                    await floor_one(client, chat_url, tools)
                elif kind == "JSON":
                    await json_one(client, f"{server.url}/v1/responses")
                else:
                    await sse_one(client, f"{server.url}/v1/responses")

            # Warm up every path (connections, imports, the first SQLite pages).
            for _, kind, server in contenders:
                for _ in range(10):
                    await once(kind, server)
            for round_index in range(rounds):
                order = contenders if round_index % 2 == 0 else contenders[::-1]
                for name, kind, server in order:
                    cpu_before = time.process_time()
                    server_before = process_cpu(server.pid) if server else 0.0
                    started = time.perf_counter()
                    for _ in range(responses):
                        await once(kind, server)
                    wall = (time.perf_counter() - started) / responses
                    server_cpu = (process_cpu(server.pid) - server_before) if server else 0.0
                    client_cpu = time.process_time() - cpu_before
                    row = rows[name]
                    row.wall.append(wall)
                    row.cpu.append((client_cpu + server_cpu) / responses)
                    if server is not None:
                        row.server_cpu.append(server_cpu / responses)
                log(f"  serve round {round_index + 1}/{rounds} done")
    return Result(rows, responses, rounds, load_before, os.getloadavg())


def table(result: Result) -> list[tuple[str, ...]]:
    lines: list[tuple[str, ...]] = [
        ("contender", "wall ms/response", "x floor (wall)", "CPU ms/response", "server CPU ms")
    ]
    for name, row in result.rows.items():
        lines.append(
            (
                name,
                f"{row.median_wall_ms():.2f}",
                f"{result.ratio(name):.2f}",
                f"{row.median_cpu_ms():.2f}",
                f"{row.median_server_cpu_ms():.2f}" if row.server_cpu else "",
            )
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--responses", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    result = anyio.run(run, arguments.responses, arguments.rounds)
    for line in table(result):
        print(" | ".join(f"{cell:>22}" for cell in line))
    print(f"load average before / after: {result.load_before} → {result.load_after}")


if __name__ == "__main__":
    main()
