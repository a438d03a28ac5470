"""examples/celery_worker.py: 50 queued responses with a server tool, run by a Celery
worker (Redis broker, SQLite store) whose process running a tool is killed mid-call."""

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

pytest.importorskip("celery", reason="the Celery example needs celery (dev group)")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_fifty_responses_survive_a_killed_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with queue_run(tmp_path, redis_db=14) as run:
        example = run.load_example("celery_worker", monkeypatch)
        # The command the example's docstring gives, with the test's own flags after it.
        assert documented_variables("celery_worker").keys() <= run.env.keys()
        command = [
            *documented_command("celery_worker"),
            "--pool",
            "prefork",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "warning",
        ]
        with workers([command], run, tmp_path):
            submitted = [
                await example.submit({"model": "m", "input": f"question {n}"}, caller="team-a")
                for n in range(RESPONSES)
            ]
            assert {response["status"] for response in submitted} == {"in_progress"}
            # The pool process running the first tool call is held there, then killed.
            killed = await anyio.to_thread.run_sync(run.held_pid)
            os.kill(killed, signal.SIGKILL)
            ids = ids_of(submitted)
            run.response_ids.extend(ids)
            statuses = await wait_until_all_ended(run.database, ids)
        assert len(statuses) == RESPONSES
        await check_no_tool_ran_twice(run, ids, killed)
        example.app.close()
