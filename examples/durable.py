"""A response that survives its worker dying, with SQLiteStore.

A worker process starts a response (model → tool → model), and is killed with SIGKILL
while the tool runs. A fresh worker then opens the same SQLite file and resumes the same
response: the model call that had completed is not made again (its scripted model has
only the final reply), the tool — declared idempotent — is run again, and the response
completes. Offline: the model is scripted.

    python examples/durable.py [--db responses.db]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from responseloop import (
    ChatTransition,
    LoopConfig,
    ResponseRecord,
    UpstreamTarget,
    run_response_loop,
)
from responseloop.abc import Complete, ToolSchema
from responseloop.exceptions import ResponseAlreadyRunning
from responseloop.stores.sqlite import SQLiteStore
from responseloop.testing import ChatReply, RecordingToolExecutor, ScriptedChatModel

RESPONSE_ID = "resp_durable_example"
REQUEST: dict[str, Any] = {
    "model": "scripted",
    "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
}
# Short, so the example does not wait long for the dead worker's lease to expire.
CONFIG = LoopConfig(lease_seconds=2.0, refire_idempotent_tools=True)
UPSTREAM = UpstreamTarget("http://model.invalid")  # never contacted: the model is scripted


def weather_tool(started: Path | None) -> RecordingToolExecutor:
    """The tool; in the first worker it hangs after saying it started, to be killed."""
    tools = RecordingToolExecutor()

    async def weather(arguments: Any) -> Any:
        if started is not None:
            await anyio.Path(started).touch()
            await anyio.sleep_forever()
        return {"city": arguments["city"], "forecast": "sunny", "celsius": 21}

    tools.add(ToolSchema("weather", "Today's forecast for a city.", idempotent=True), weather)
    return tools


async def first_worker(db: Path, started: Path) -> None:
    """Start the response; this process is killed while the tool runs."""
    async with SQLiteStore(db) as store:
        await store.create_response(ResponseRecord(RESPONSE_ID, REQUEST, model="scripted"))
        model = ScriptedChatModel(
            [ChatReply.tool_call("weather", {"city": "Paris"}), ChatReply.text("unreached")]
        )
        await run_response_loop(
            RESPONSE_ID,
            store=store,
            http_client=model,
            upstream=UPSTREAM,
            transition=ChatTransition(REQUEST),
            tools=weather_tool(started),
            config=CONFIG,
        )


async def restarted_worker(db: Path) -> None:
    """Resume the response from the file, as a new process after a restart would."""
    async with SQLiteStore(db) as store:
        print("stored chain after the crash:")
        for step in await store.list_chain(RESPONSE_ID, None):
            print(f"  #{step.sequence} {step.kind.value:<10} {step.state.value}")
        # Only the final answer is scripted: a repeated first model call would fail here.
        model = ScriptedChatModel([ChatReply.text("It is sunny in Paris, 21 °C.")])
        tools = weather_tool(None)
        waiting = False
        while True:
            try:
                outcome = await run_response_loop(
                    RESPONSE_ID,
                    store=store,
                    http_client=model,
                    upstream=UPSTREAM,
                    transition=ChatTransition(REQUEST),
                    tools=tools,
                    config=CONFIG,
                )
                break
            except ResponseAlreadyRunning:
                if not waiting:
                    print("waiting for the dead worker's lease to expire")
                    waiting = True
                await anyio.sleep(0.2)
        assert isinstance(outcome, Complete)
        answer = outcome.payload["choices"][0]["message"]["content"]
        print(f"resumed: model calls made after the restart: {len(model.requests)}")
        print(f"resumed: tool calls made after the restart: {len(tools.calls)}")
        print("stored chain after the resume:")
        for step in await store.list_chain(RESPONSE_ID, None):
            print(f"  #{step.sequence} {step.kind.value:<10} {step.state.value}")
        print(f"final answer: {answer}")


def main(db: Path) -> None:
    started = db.with_suffix(".tool-started")
    started.unlink(missing_ok=True)
    worker = subprocess.Popen([sys.executable, __file__, "--first-worker", str(db)])
    while not started.exists():
        if worker.poll() is not None:
            raise SystemExit("the first worker exited before its tool started")
        time.sleep(0.05)
    worker.kill()  # SIGKILL: no cleanup, no chance to record anything
    worker.wait()
    print(f"first worker killed mid-tool (exit status {worker.returncode})")
    anyio.run(restarted_worker, db)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", type=Path, help="the SQLite file (default: a temporary one)")
    parser.add_argument("--first-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.first_worker is not None:
        anyio.run(first_worker, args.first_worker, args.first_worker.with_suffix(".tool-started"))
    elif args.db is not None:
        main(args.db)
    else:
        with tempfile.TemporaryDirectory() as directory:
            main(Path(directory) / "responses.db")
