"""Several ``responseloop serve`` replicas on one store, as an operator runs them: real
subprocesses sharing one SQLite file or one PostgreSQL schema and one loopback upstream
(a thread of the test process, so every replica's model calls are seen in one place).

The upstream's model is :func:`scripted_model`: the user's input is a small JSON job
(``ref``, how long the tool and each model call take), so every response says how slow it
is and which side effect it books, and a re-fired call gets the same answer.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import httpx2
import psycopg

from responseloop.testing import ChatReply
from tests.asgi.serving import ROOT, subprocess_env
from tests.loopback_upstream import Received, Upstream, loopback_upstream
from tests.replicas.replica_tools import EFFECTS_ENV, MARKS_ENV
from tests.stores.postgres import drop_schema, new_schema, require_postgres
from tests.wire_checks import check_emitted_response, check_emitted_stream

LEASE = 2.0
SWEEP = 0.5
CANCEL_POLL = 0.2
# What the bounds allow on top of lease + sweep: a replica that must first start, a loaded
# two-core CI machine. A correctness bound (never left running), not a speed goal.
SLACK = 15.0
TERMINAL = {"completed", "failed", "cancelled", "incomplete"}


def job(ref: str, *, tool: float = 0.0, first: float = 0.0, second: float = 0.0) -> str:
    """The input text of a response: book ``ref`` with a tool taking ``tool`` seconds, the
    model taking ``first`` seconds to call it and ``second`` to answer after it."""
    return json.dumps({"ref": ref, "tool": tool, "first": first, "second": second})


def final_text(ref: str) -> str:
    return f"Booked {ref}."


def _job_of(messages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    for message in messages:
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                content = "".join(part.get("text", "") for part in content)
            with contextlib.suppress(ValueError, TypeError):
                found = json.loads(str(content))
                if isinstance(found, dict) and "ref" in found:
                    return found
    raise AssertionError(f"no job in {messages!r}")


def scripted_model(received: Received) -> ChatReply:
    """No tool output yet: call ``book`` (after ``first`` seconds); else answer (after
    ``second`` seconds). The same conversation always gets the same answer."""
    messages = received.json().get("messages", [])
    work = _job_of(messages)
    ref = str(work["ref"])
    if any(message.get("role") == "tool" for message in messages):
        return attrs.evolve(ChatReply.text(final_text(ref)), delay=float(work["second"]))
    call = ChatReply.tool_call(
        "book", {"ref": ref, "seconds": float(work["tool"])}, call_id=f"call_{ref}"
    )
    return attrs.evolve(call, delay=float(work["first"]))


@attrs.frozen
class StoreSpec:
    """The ``--store`` flags of every replica, and a way to read the store directly."""

    args: tuple[str, ...]
    sqlite_path: Path | None = None
    postgres: tuple[str, str] | None = None

    def ids_for(self, ref: str) -> list[str]:
        """The ids of the stored responses whose input books ``ref`` (to find a foreground
        response whose replica died before it answered)."""
        pattern = f"%{ref}%"  # refs are unique words: no LIKE escapes needed
        if self.sqlite_path is not None:
            with contextlib.closing(sqlite3.connect(self.sqlite_path, timeout=30)) as conn:
                rows = conn.execute(
                    "SELECT id FROM responseloop_responses WHERE request LIKE ?", (pattern,)
                ).fetchall()
            return [str(row[0]) for row in rows]
        assert self.postgres is not None
        url, schema = self.postgres
        with psycopg.connect(url) as conn:
            found = conn.execute(
                f'SELECT id FROM "{schema}".responses WHERE request::text LIKE %s',
                (pattern,),
            ).fetchall()
        return [str(row[0]) for row in found]


@contextlib.contextmanager
def store_spec(kind: str, tmp_path: Path) -> Iterator[StoreSpec]:
    """A fresh store: one SQLite file, or one new PostgreSQL schema (dropped after)."""
    if kind == "sqlite":
        path = tmp_path / f"responses-{uuid.uuid4().hex[:8]}.db"
        yield StoreSpec(("--store", f"sqlite:{path}"), sqlite_path=path)
        return
    url, schema = require_postgres(), new_schema()
    try:
        yield StoreSpec(("--store", url, "--postgres-schema", schema), postgres=(url, schema))
    finally:
        drop_schema(url, schema)


class Replica:
    """One ``responseloop serve`` process; its stderr goes to ``log``."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as stderr:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr
            )
        assert self.process.stdout is not None
        line = self._first_line()
        self.url = line.rsplit(" ", 1)[-1].strip()
        assert self.url.startswith("http://127.0.0.1:"), (line, self.stderr)
        self.client = httpx2.Client(base_url=self.url + "/v1", timeout=60.0)

    def _first_line(self) -> str:
        assert self.process.stdout is not None
        found: list[bytes] = []
        reader = threading.Thread(
            target=lambda: found.append(self.process.stdout.readline()),  # type: ignore[union-attr]
            daemon=True,
        )
        reader.start()
        reader.join(60)
        if not found or not found[0]:
            self.process.kill()
            raise AssertionError(f"the replica did not start: {self.stderr}")
        return found[0].decode()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def stderr(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL: the process dies at once, mid-whatever, its leases left to lapse."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)
        self.client.close()

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM (graceful shutdown); returns the exit status."""
        self.process.send_signal(signal.SIGTERM)
        status = self.process.wait(timeout)
        self.client.close()
        return status

    def close(self) -> None:
        if self.alive:
            self.process.kill()
            self.process.wait(30)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.client.close()


class Cluster:
    """Replicas of one store and one upstream, and the files their tools write."""

    def __init__(
        self, store: StoreSpec, upstream: Upstream, state: Path, *, graceful: float = 0.5
    ) -> None:
        self.store = store
        self.upstream = upstream
        self.state = state
        state.mkdir(parents=True, exist_ok=True)
        self.effects = state / "effects.log"
        self.marks = state / "marks.log"
        self.effects.touch()
        self.marks.touch()
        self.graceful = graceful
        self.replicas: list[Replica] = []
        self._started = 0

    def start(self, *, graceful: float | None = None) -> Replica:
        self._started += 1
        command = [
            sys.executable,
            "-m",
            "responseloop",
            "serve",
            "--port",
            "0",
            "--log-level",
            "warning",
            "--upstream",
            self.upstream.url + "/v1",
            "--tools",
            "tests.replicas.replica_tools:tools",
            *self.store.args,
            "--lease-seconds",
            str(LEASE),
            "--sweep-interval",
            str(SWEEP),
            "--cancel-poll-interval",
            str(CANCEL_POLL),
            "--graceful-timeout",
            str(self.graceful if graceful is None else graceful),
            "--reasoning-key-env",
            "RESPONSELOOP_REPLICA_KEY",
        ]
        env = subprocess_env(
            {
                EFFECTS_ENV: str(self.effects),
                MARKS_ENV: str(self.marks),
                "RESPONSELOOP_REPLICA_KEY": "replica-test-key",
            }
        )
        replica = Replica(command, env, self.state / f"replica-{self._started}.log")
        self.replicas.append(replica)
        return replica

    @property
    def alive(self) -> list[Replica]:
        return [replica for replica in self.replicas if replica.alive]

    def close(self) -> None:
        for replica in self.replicas:
            replica.close()

    # -- what the tools did ---------------------------------------------------------------

    def effects_of(self, ref: str) -> int:
        """How many times ``book`` booked ``ref``, on any replica."""
        return self.effects.read_text().splitlines().count(ref)

    def marked(self, line: str) -> bool:
        return line in self.marks.read_text().splitlines()

    # -- waiting ----------------------------------------------------------------------------

    def wait_terminal(self, response_id: str, *, within: float) -> dict[str, Any]:
        """Poll the surviving replicas (round robin) until the response is terminal; fail
        past ``within`` seconds. The Response is checked on both wires."""
        deadline = time.monotonic() + within
        turn = 0
        while True:
            alive = self.alive
            assert alive, "no replica is left to ask"
            replica = alive[turn % len(alive)]
            turn += 1
            with contextlib.suppress(httpx2.TransportError):
                reply = replica.client.get(f"/responses/{response_id}")
                assert reply.status_code == 200, reply.text
                body: dict[str, Any] = reply.json()
                check_emitted_response(body)
                if body["status"] in TERMINAL:
                    return body
            assert time.monotonic() < deadline, (
                f"{response_id} still {body['status']} after {within} s"
            )
            time.sleep(0.1)


def wait_until(condition: Callable[[], bool], *, within: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.01)


def sse_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The JSON payloads of an SSE stream's ``data:`` lines, up to ``[DONE]``."""
    for line in lines:
        if line.startswith("data: "):
            data = line.removeprefix("data: ")
            if data == "[DONE]":
                return
            yield json.loads(data)


def read_stream(
    replica: Replica, response_id: str, starting_after: int | None = None
) -> list[dict[str, Any]]:
    """The whole stream of ``GET /responses/{id}?stream=true[&starting_after=N]``,
    checked on both wires."""
    params: dict[str, Any] = {"stream": "true"}
    if starting_after is not None:
        params["starting_after"] = starting_after
    with replica.client.stream("GET", f"/responses/{response_id}", params=params) as reply:
        assert reply.status_code == 200, reply.read()
        events = list(sse_events(reply.iter_lines()))
    check_emitted_stream(events, ended_with_done=True, resumed=starting_after is not None)
    return events


@contextlib.contextmanager
def cluster(kind: str, tmp_path: Path, **options: Any) -> Iterator[Cluster]:
    """A store and an upstream for replicas to be started on."""
    with store_spec(kind, tmp_path) as spec, loopback_upstream() as upstream:
        upstream.responder = scripted_model
        running = Cluster(spec, upstream, tmp_path / f"state-{uuid.uuid4().hex[:6]}", **options)
        try:
            yield running
        finally:
            running.close()
