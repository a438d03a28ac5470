"""examples/arq_worker.py: 50 queued responses with a server tool, run by two arq workers
(Redis, SQLite store), one of which is killed while it runs a tool."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import anyio
import pytest

from tests.documented import documented_command, documented_variables
from tests.queues.harness import (
    RESPONSES,
    check_no_tool_ran_twice,
    ids_of,
    queue_run,
    wait_until_all_ended,
    workers,
)

pytest.importorskip("arq", reason="the arq example needs arq (dev group)")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_fifty_responses_survive_a_killed_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with queue_run(tmp_path, redis_db=15) as run:
        # The killed worker's jobs wait job_timeout + 10 s before another worker takes them.
        run.env["RESPONSELOOP_JOB_TIMEOUT"] = "5"
        example = run.load_example("arq_worker", monkeypatch)
        # The command the example's docstring gives, as it gives it.
        assert documented_variables("arq_worker").keys() <= run.env.keys()
        command = documented_command("arq_worker")
        assert command == ["arq", "examples.arq_worker.WorkerSettings"]
        with workers([command, command], run, tmp_path):
            submitted = [
                await example.submit({"model": "m", "input": f"question {n}"}, caller="team-a")
                for n in range(RESPONSES)
            ]
            assert {response["status"] for response in submitted} == {"in_progress"}
            killed = await anyio.to_thread.run_sync(run.held_pid)
            os.kill(killed, signal.SIGKILL)
            ids = ids_of(submitted)
            run.response_ids.extend(ids)
            statuses = await wait_until_all_ended(run.database, ids)
        assert len(statuses) == RESPONSES
        await check_no_tool_ran_twice(run, ids, killed)
