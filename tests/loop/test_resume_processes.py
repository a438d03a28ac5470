"""Resume across processes: a worker is SIGKILLed mid-step and a fresh process resumes the
same response from a durable store (SQLite and PostgreSQL), repeating nothing completed.

Each test counts what the outside world saw: requests at the loopback upstream and
invocations of the tool (logged to a file by the worker).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.loopback_upstream import FINAL_TEXT, Reply, Upstream, loopback_upstream
from tests.stores.postgres import drop_schema, new_schema, require_postgres

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with loopback_upstream() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgres"])
def store_args(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[str]]:
    """Command-line arguments naming a fresh durable store for the workers."""
    if request.param == "sqlite":
        yield ["--sqlite", str(tmp_path / "responses.db")]
        return
    url = require_postgres()
    schema = new_schema()
    yield ["--postgres", url, schema]
    drop_schema(url, schema)


class Workers:
    """Starts worker processes for one response and reads what they leave behind."""

    def __init__(self, store_args: list[str], upstream: Upstream, state: Path) -> None:
        self.store_args = store_args
        self.upstream = upstream
        self.state = state
        state.mkdir(exist_ok=True)

    def command(self, response_id: str, mode: str, *flags: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "tests.loop.resume_worker",
            *self.store_args,
            "--response-id",
            response_id,
            "--upstream",
            self.upstream.url,
            "--state-dir",
            str(self.state),
            "--mode",
            mode,
            *flags,
        ]

    @staticmethod
    def env() -> dict[str, str]:
        paths = [str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]
        return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}

    def run(self, response_id: str, mode: str, *flags: str) -> dict[str, Any]:
        """Run a worker to the end and return its report."""
        done = subprocess.run(
            self.command(response_id, mode, *flags),
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return report

    def kill_when(self, response_id: str, ready: Any, *flags: str) -> None:
        """Start a worker, wait until ``ready()`` says it is mid-step, and SIGKILL it."""
        process = subprocess.Popen(
            self.command(response_id, "start", *flags),
            cwd=ROOT,
            env=self.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 60
            while not ready():
                if process.poll() is not None:
                    stderr = process.stderr.read().decode() if process.stderr else ""
                    pytest.fail(f"the worker ended before it was killed: {stderr}")
                if time.monotonic() > deadline:
                    pytest.fail("the worker never reached the step it should die in")
                time.sleep(0.02)
            process.send_signal(signal.SIGKILL)
        finally:
            process.wait()
            if process.stderr:
                process.stderr.close()
        assert process.returncode == -signal.SIGKILL

    @property
    def tool_invocations(self) -> int:
        log = self.state / "tool_invocations.log"
        return len(log.read_text().splitlines()) if log.exists() else 0

    def tool_started(self) -> bool:
        return (self.state / "tool_started").exists()

    def release_tool(self) -> None:
        (self.state / "tool_release").touch()


@pytest.fixture
def workers(store_args: list[str], upstream: Upstream, tmp_path: Path) -> Workers:
    return Workers(store_args, upstream, tmp_path / "state")


def uninterrupted(store_args: list[str], tmp_path: Path) -> dict[str, Any]:
    """The report of the same response run without a crash, against its own upstream."""
    with loopback_upstream() as fresh:
        clean = Workers(store_args, fresh, tmp_path / "clean")
        clean.release_tool()
        report = clean.run("resp_uninterrupted", "start")
        assert len(fresh.bodies) == 2
        assert clean.tool_invocations == 1
    return report


def test_killed_mid_tool_fails_the_response_as_abandoned_by_default(workers: Workers) -> None:
    workers.kill_when("resp_tool_killed", workers.tool_started)
    assert len(workers.upstream.bodies) == 1
    assert workers.tool_invocations == 1

    report = workers.run("resp_tool_killed", "resume")

    assert report["outcome"] == "fail"
    assert report["payload"]["type"] == "step_abandoned"
    # Nothing was repeated: no second model call, no second tool run.
    assert len(workers.upstream.bodies) == 1
    assert workers.tool_invocations == 1
    assert [(s["kind"], s["state"]) for s in report["chain"]] == [
        ("model_call", "completed"),
        ("tool_call", "failed"),
    ]
    assert report["chain"][1]["error"]["type"] == "step_abandoned"


def test_killed_mid_idempotent_tool_refires_it_and_completes(
    workers: Workers, store_args: list[str], tmp_path: Path
) -> None:
    workers.kill_when("resp_tool_refired", workers.tool_started, "--refire-tools")
    assert len(workers.upstream.bodies) == 1

    workers.release_tool()
    report = workers.run("resp_tool_refired", "resume", "--refire-tools", "--backend", "trio")

    # The completed model call was not repeated; the in-flight tool ran once more.
    assert workers.tool_invocations == 2
    assert len(workers.upstream.bodies) == 2
    assert report["outcome"] == "complete"
    assert report["payload"]["choices"][0]["message"]["content"] == FINAL_TEXT
    clean = uninterrupted(store_args, tmp_path)
    assert report["payload"] == clean["payload"]
    assert report["chain"] == clean["chain"]


def test_killed_mid_model_call_fails_as_abandoned_by_default(workers: Workers) -> None:
    workers.upstream.add(Reply(hang=True))  # held until the killed worker's socket closes
    workers.kill_when("resp_model_killed", lambda: bool(workers.upstream.received))

    report = workers.run("resp_model_killed", "resume", "--backend", "trio")

    assert report["outcome"] == "fail"
    assert report["payload"]["type"] == "step_abandoned"
    assert len(workers.upstream.bodies) == 1
    assert workers.tool_invocations == 0


def test_killed_mid_model_call_is_refired_when_allowed(
    workers: Workers, store_args: list[str], tmp_path: Path
) -> None:
    workers.upstream.add(Reply(hang=True))  # held until the killed worker's socket closes
    workers.kill_when("resp_model_refired", lambda: bool(workers.upstream.received))
    workers.release_tool()

    report = workers.run("resp_model_refired", "resume", "--refire-model")

    # The abandoned call, its re-fire, and the call after the tool.
    assert len(workers.upstream.bodies) == 3
    assert workers.tool_invocations == 1
    assert report["outcome"] == "complete"
    clean = uninterrupted(store_args, tmp_path)
    assert report["payload"] == clean["payload"]
    assert report["chain"] == clean["chain"]
