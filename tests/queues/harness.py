"""What the Celery and arq example tests share: a loopback upstream, a SQLite store, worker
subprocesses, and the checks that every response ended and no tool ran twice."""

from __future__ import annotations

import collections
import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import attrs
import pytest

from responseloop.abc import ResponseStatus, StepKind, StepState
from responseloop.stores.sqlite import SQLiteStore
from tests.asgi.serving import ROOT, subprocess_env
from tests.conftest import require_service
from tests.loopback_upstream import FINAL_TEXT, loopback_upstream

EXAMPLES = ROOT / "examples"
RESPONSES = 50


def require_redis() -> None:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=2):
            reachable = True
    except OSError:
        reachable = False
    require_service("Redis", reachable, "127.0.0.1:6379")


@attrs.define
class QueueRun:
    """One test's setup: the environment its processes share, and its files."""

    env: dict[str, str]
    tool_log: Path
    database: Path
    queue: str
    response_ids: list[str] = attrs.field(factory=list)  # their Redis keys are removed too

    def load_example(self, name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
        """Import ``examples/NAME.py`` as the web side would, with this run's settings."""
        for key, value in self.env.items():
            monkeypatch.setenv(key, value)
        spec = importlib.util.spec_from_file_location(
            f"{name}_{self.queue}", EXAMPLES / f"{name}.py"
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    def held_pid(self) -> int:
        """The pid of the process whose tool call is held, once one is."""
        marker = Path(str(self.tool_log) + ".hold")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if marker.exists() and marker.read_text().strip():
                return int(marker.read_text())
            time.sleep(0.02)
        raise AssertionError("no tool call was held")


@contextlib.contextmanager
def queue_run(tmp_path: Path, redis_db: int) -> Iterator[QueueRun]:
    require_redis()
    queue = f"rl-test-{uuid.uuid4().hex[:12]}"
    with loopback_upstream() as upstream:
        env = {
            "CELERY_BROKER_URL": f"redis://127.0.0.1:6379/{redis_db}",
            "REDIS_DSN": f"redis://127.0.0.1:6379/{redis_db}",
            "RESPONSELOOP_QUEUE": queue,
            "RESPONSELOOP_UPSTREAM": upstream.url + "/v1",
            "RESPONSELOOP_SQLITE": str(tmp_path / "responses.db"),
            "RESPONSELOOP_TOOL_LOG": str(tmp_path / "tools.log"),
            "RESPONSELOOP_HOLD_FIRST_TOOL": "1",
            "RESPONSELOOP_LEASE_SECONDS": "2",
        }
        run = QueueRun(env, tmp_path / "tools.log", tmp_path / "responses.db", queue)
        try:
            yield run
        finally:
            _delete_keys(redis_db, [queue, *run.response_ids])


def _delete_keys(redis_db: int, names: Sequence[str]) -> None:
    """Remove this run's keys: those naming its queue (Celery's, arq's queue) or one of
    its responses (arq's job, result and retry keys)."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, db=redis_db)
    try:
        keys = [key for name in names for key in client.scan_iter(f"*{name}*", count=1000)]
        if keys:
            client.delete(*set(keys))
    finally:
        client.close()


@contextlib.contextmanager
def workers(
    commands: Sequence[Sequence[str]], run: QueueRun, logs: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start worker processes as a user would, from the repository root with the console
    script of the command (stderr to files under ``logs``); stop them at the end. Only the
    package is importable besides what the command itself arranges (not ``tests``, not
    ``examples``)."""
    processes: list[subprocess.Popen[bytes]] = []
    env = subprocess_env(run.env)
    env["PYTHONPATH"] = str(ROOT / "src")
    try:
        for index, (program, *arguments) in enumerate(commands):
            log = open(logs / f"worker-{index}.log", "wb")  # noqa: SIM115 - closed with the process
            processes.append(
                subprocess.Popen(
                    [str(Path(sys.executable).parent / program), *arguments],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                    start_new_session=True,
                )
            )
            log.close()
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


async def wait_until_all_ended(database: Path, ids: Sequence[str]) -> dict[str, ResponseStatus]:
    """Poll the store until every response is terminal; their statuses."""
    async with SQLiteStore(database) as store:
        with anyio.fail_after(90):
            while True:
                statuses = {rid: (await store.get_response(rid)).status for rid in ids}
                if all(status.is_terminal for status in statuses.values()):
                    return statuses
                await anyio.sleep(0.1)


async def check_no_tool_ran_twice(run: QueueRun, ids: Sequence[str], killed_pid: int) -> None:
    """Every response completed with the final text and its one tool step completed; no
    live worker ran a tool twice; a call was run again only by a live worker and only if
    the killed process had started it.

    A call the killed process started is run again once if its result never reached the
    store: the held call, and any call the kill caught between the tool returning and the
    loop recording its result (the tool's ``done`` line is written, the store's step is
    still ``processing``; the lease cannot tell the two apart, so both are re-fired)."""
    lines = [line.split() for line in run.tool_log.read_text().splitlines()]
    by_killed = collections.Counter(
        (kind, rid) for kind, rid, pid in lines if int(pid) == killed_pid
    )
    by_survivors = collections.Counter(
        (kind, rid) for kind, rid, pid in lines if int(pid) != killed_pid
    )
    held = {rid for kind, rid in by_killed if kind == "start"} - {
        rid for kind, rid in by_killed if kind == "done"
    }
    assert held, "the killed process was running no tool"
    async with SQLiteStore(run.database) as store:
        for rid in ids:
            record = await store.get_response(rid)
            assert record.status is ResponseStatus.COMPLETED, (rid, record.status)
            assert record.response is not None
            assert record.response["output"][-1]["content"][0]["text"] == FINAL_TEXT
            chain = await store.list_chain(rid, None)
            tool_steps = [s for s in chain if s.kind is StepKind.TOOL_CALL]
            assert [s.state for s in tool_steps] == [StepState.COMPLETED], rid
            killed_started = by_killed["start", rid]
            survivors_started = by_survivors["start", rid]
            assert killed_started <= 1, (rid, killed_started)
            assert survivors_started <= 1, (rid, survivors_started)  # no live worker twice
            assert by_survivors["done", rid] == survivors_started, rid
            if rid in held:
                assert survivors_started == 1, rid  # re-fired once, by a live worker
            elif killed_started == 0:
                assert survivors_started == 1, rid  # run once, by a live worker
            # else the killed process ran it to its end; a live worker re-fired it at most
            # once (above), which it does only when the result was not recorded.


def ids_of(responses: Sequence[dict[str, Any]]) -> list[str]:
    return [response["id"] for response in responses]
