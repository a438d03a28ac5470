"""SQLiteStore: a durable store in one SQLite file, for one machine and no server."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeVar

import anyio

from .._closing import AsyncClosing
from .._ids import random_id
from ..abc._json import JSON
from ..abc._records import (
    ConversationContents,
    ConversationEntry,
    ConversationRecord,
    ResponseRecord,
    ResponseStatus,
    ResponseUpdate,
)
from ..abc._steps import ChainStep, RecordedStep, StepDescriptor, StepKind, StepState, StepUpdate
from ..core._steps import refused_step_move, step_move_sources
from ..exceptions import (
    ConversationLocked,
    ConversationNotFound,
    LeaseLost,
    ResponseExists,
    ResponseLoopError,
    ResponseNotFound,
    StepNotFound,
    StoreError,
)
from ._codec import decode, encode, encode_step_update

__all__ = ["SQLiteStore"]

_T = TypeVar("_T")

# Each entry migrates the schema from version N to N + 1; the version table says which
# ran. Append, never edit: a database in the field may be at any of these versions.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE responseloop_responses (
        id TEXT PRIMARY KEY,
        request TEXT NOT NULL,
        model TEXT,
        caller TEXT,
        status TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        response TEXT,
        store INTEGER NOT NULL,
        last_sequence INTEGER NOT NULL DEFAULT 0,
        lease_holder TEXT,
        lease_expires REAL
    );
    CREATE TABLE responseloop_steps (
        id TEXT PRIMARY KEY,
        response_id TEXT NOT NULL
            REFERENCES responseloop_responses (id) ON DELETE CASCADE,
        scope TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        prev_step_id TEXT,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        request TEXT NOT NULL,
        response TEXT,
        error TEXT,
        UNIQUE (response_id, sequence)
    );
    CREATE INDEX responseloop_steps_chain
        ON responseloop_steps (response_id, scope, sequence);
    """,
    # Recovery, cross-process cancel and the event log. ``idle_since`` is when a response
    # nobody holds became claimable by a sweep (NULL: at once, as for a released one);
    # the partial index keeps the sweep's cost to the live responses.
    """
    ALTER TABLE responseloop_responses ADD COLUMN idle_since REAL;
    ALTER TABLE responseloop_responses ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX responseloop_responses_live ON responseloop_responses (lease_expires)
        WHERE status IN ('queued', 'in_progress');
    CREATE TABLE responseloop_events (
        response_id TEXT NOT NULL
            REFERENCES responseloop_responses (id) ON DELETE CASCADE,
        sequence INTEGER NOT NULL,
        event TEXT NOT NULL,
        PRIMARY KEY (response_id, sequence)
    ) WITHOUT ROWID;
    """,
    # Conversations: a view over the responses, never a copy of their items. An entry is
    # a turn (``response_id``) or an item added directly (``item``, its id beside it for
    # deleting it); ``hidden`` holds the ids of a turn's items deleted from the view.
    # No foreign key to the responses: a deleted response leaves its entry empty.
    """
    CREATE TABLE responseloop_conversations (
        id TEXT PRIMARY KEY,
        caller TEXT,
        created_at INTEGER NOT NULL,
        metadata TEXT NOT NULL,
        next_position INTEGER NOT NULL DEFAULT 0,
        active_response TEXT
    );
    CREATE TABLE responseloop_conversation_entries (
        conversation_id TEXT NOT NULL
            REFERENCES responseloop_conversations (id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        response_id TEXT,
        item_id TEXT,
        item TEXT,
        PRIMARY KEY (conversation_id, position)
    ) WITHOUT ROWID;
    CREATE TABLE responseloop_conversation_hidden (
        conversation_id TEXT NOT NULL
            REFERENCES responseloop_conversations (id) ON DELETE CASCADE,
        item_id TEXT NOT NULL,
        PRIMARY KEY (conversation_id, item_id)
    ) WITHOUT ROWID;
    """,
    # The once-only claims of approved MCP calls, by caller and approval request. The
    # caller is JSON-encoded ('null' for none), so no caller and an empty one differ. No
    # foreign key to the responses: a claim outlives its response (the call ran).
    """
    CREATE TABLE responseloop_approval_claims (
        caller TEXT NOT NULL,
        approval_request_id TEXT NOT NULL,
        response_id TEXT NOT NULL,
        PRIMARY KEY (caller, approval_request_id)
    ) WITHOUT ROWID;
    """,
)

_LIVE = "('queued', 'in_progress')"
# Whether the conversation row ``c`` is in use by a response other than parameter 1.
_IN_USE = (
    "c.active_response IS NOT NULL AND c.active_response IS NOT ? AND EXISTS (SELECT 1"
    " FROM responseloop_responses AS r WHERE r.id = c.active_response"
    f" AND r.status IN {_LIVE})"
)
# The live responses nobody runs (parameters: the unclaimed grace, now, the limit). The
# status list is the partial index's, so only live rows are read.
_EXPIRED = (
    "SELECT id FROM ("
    " SELECT id, CASE WHEN lease_holder IS NOT NULL THEN lease_expires"
    " ELSE coalesce(idle_since + ?, -1e308) END AS lapse"
    f" FROM responseloop_responses WHERE status IN {_LIVE})"
    " WHERE lapse <= ? ORDER BY lapse LIMIT ?"
)

# The top-level scope is stored as '' rather than NULL so one index lookup serves every
# scope (step ids are never empty).
_TOP = ""


class SQLiteStore(AsyncClosing):
    """A :class:`~responseloop.abc.ResponseStore` (with conversations and approval claims)
    in one SQLite file (stdlib :mod:`sqlite3`).

    Durable on one machine: a response survives its worker, and any process on the machine
    may resume it. The file is in WAL mode, so readers never wait for the writer; every
    call runs in a worker thread (:func:`anyio.to_thread.run_sync`) on one of a few
    pooled connections. The schema is created on first use and migrated by version.

    Use it as an async context manager, or call :meth:`aclose` when done::

        async with SQLiteStore("responses.db") as store:
            ...

    Args:
        path: the database file (created when missing). ``":memory:"`` is refused: use
            :class:`~responseloop.InMemoryStore` for a store that need not persist.
        synchronous: ``"FULL"`` (default) makes every commit survive a power cut;
            ``"NORMAL"`` survives a crash of the process but may lose the last commits
            on power loss, for faster writes.
        busy_timeout: seconds a write waits for another process's write to finish.
        max_connections: the most connections (and threads) used at once.
        step_ids: makes step ids (default ``step_<32 hex>``).
        clock: the time in seconds that leases expire by (default :func:`time.time`,
            shared by every process on the machine).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        busy_timeout: float = 30.0,
        max_connections: int = 4,
        step_ids: Callable[[], str] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.path = os.fspath(path)
        if self.path == ":memory:" or self.path.startswith("file::memory:"):
            raise ValueError("SQLiteStore needs a file; use InMemoryStore for memory only")
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections}")
        self._synchronous = synchronous
        self._busy_timeout = busy_timeout
        self._step_ids = step_ids or (lambda: random_id("step"))
        self._clock = clock or time.time
        self._limiter = anyio.CapacityLimiter(max_connections)
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._ready = False
        self._closed = False

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path!r}>"

    async def _enter(self) -> None:
        await self._run(lambda _conn: None)  # creates or migrates the schema now

    async def aclose(self) -> None:
        """Close every connection. The store cannot be used afterwards."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # -- responses -------------------------------------------------------------------------

    async def create_response(self, record: ResponseRecord) -> None:
        request = encode(dict(record.request))
        response = encode(record.response) if record.response is not None else None

        def create(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                "INSERT INTO responseloop_responses"
                " (id, request, model, caller, status, created_at, response, store, idle_since)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (
                    record.id,
                    request,
                    record.model,
                    record.caller,
                    record.status.value,
                    record.created_at,
                    response,
                    int(record.store),
                    self._clock(),
                ),
            )
            if cursor.rowcount != 1:
                raise ResponseExists(record.id)

        await self._run(create)

    async def get_response(self, response_id: str) -> ResponseRecord:
        def get(conn: sqlite3.Connection) -> ResponseRecord:
            row = conn.execute(
                "SELECT request, model, caller, status, created_at, response, store"
                " FROM responseloop_responses WHERE id = ?",
                (response_id,),
            ).fetchone()
            if row is None:
                raise ResponseNotFound(response_id)
            request, model, caller, status, created_at, response, store = row
            return ResponseRecord(
                id=response_id,
                request=decode(request),
                model=model,
                caller=caller,
                status=ResponseStatus(status),
                created_at=created_at,
                response=decode(response),
                store=bool(store),
            )

        return await self._run(get)

    async def update_response(
        self, response_id: str, update: ResponseUpdate, *, fence: str | None = None
    ) -> None:
        encoded = encode(update.response)

        def finish(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                row = conn.execute(
                    "SELECT store, lease_holder FROM responseloop_responses WHERE id = ?",
                    (response_id,),
                ).fetchone()
                if row is None:
                    raise ResponseNotFound(response_id)
                if fence is not None and row[1] != fence:
                    raise LeaseLost(response_id)
                if row[0] or not update.finishes:
                    conn.execute(
                        "UPDATE responseloop_responses SET status = ?, response = ? WHERE id = ?",
                        (update.status.value, encoded, response_id),
                    )
                else:
                    conn.execute("DELETE FROM responseloop_responses WHERE id = ?", (response_id,))

        await self._run(finish)

    async def delete_response(self, response_id: str) -> None:
        def delete(conn: sqlite3.Connection) -> None:
            cursor = conn.execute("DELETE FROM responseloop_responses WHERE id = ?", (response_id,))
            if cursor.rowcount != 1:
                raise ResponseNotFound(response_id)

        await self._run(delete)

    async def claim_response(self, response_id: str, claimant: str, lease_seconds: float) -> bool:
        def claim(conn: sqlite3.Connection) -> bool:
            now = self._clock()
            cursor = conn.execute(
                "UPDATE responseloop_responses SET lease_holder = ?, lease_expires = ?"
                " WHERE id = ? AND (lease_holder IS NULL OR lease_holder = ?"
                " OR lease_expires <= ?)",
                (claimant, now + lease_seconds, response_id, claimant, now),
            )
            if cursor.rowcount == 1:
                return True
            self._require_response(conn, response_id)
            return False

        return await self._run(claim)

    async def release_response(self, response_id: str, claimant: str) -> None:
        def release(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE responseloop_responses"
                " SET lease_holder = NULL, lease_expires = NULL, idle_since = NULL"
                " WHERE id = ? AND lease_holder = ?",
                (response_id, claimant),
            )

        await self._run(release)

    async def expired_responses(self, limit: int, *, unclaimed_grace: float) -> Sequence[str]:
        def expired(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(_EXPIRED, (unclaimed_grace, self._clock(), limit)).fetchall()
            return [row[0] for row in rows]

        return await self._run(expired)

    async def request_cancel(self, response_id: str) -> None:
        def ask(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                "UPDATE responseloop_responses SET cancel_requested = 1 WHERE id = ?",
                (response_id,),
            )
            if cursor.rowcount != 1:
                raise ResponseNotFound(response_id)

        await self._run(ask)

    async def cancels_requested(self, response_ids: Sequence[str]) -> Sequence[str]:
        ids = list(response_ids)

        def asked(conn: sqlite3.Connection) -> list[str]:
            found: list[str] = []
            for start in range(0, len(ids), 500):  # under SQLite's bound-parameter limit
                chunk = ids[start : start + 500]
                rows = conn.execute(
                    "SELECT id FROM responseloop_responses"
                    f" WHERE cancel_requested = 1 AND id IN ({_marks(tuple(chunk))})",
                    chunk,
                ).fetchall()
                found += [row[0] for row in rows]
            return found

        return await self._run(asked) if ids else []

    # -- the event log ---------------------------------------------------------------------

    async def append_events(
        self,
        response_id: str,
        first_sequence: int,
        events: Sequence[str],
        *,
        fence: str | None = None,
    ) -> None:
        rows = [(response_id, number, event) for number, event in enumerate(events, first_sequence)]

        def append(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                self._require_fence(conn, response_id, fence)
                conn.executemany(
                    "INSERT INTO responseloop_events (response_id, sequence, event)"
                    " VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                    rows,
                )

        await self._run(append)

    async def list_events(
        self, response_id: str, after: int, limit: int
    ) -> Sequence[tuple[int, str]]:
        def listed(conn: sqlite3.Connection) -> list[tuple[int, str]]:
            self._require_response(conn, response_id)
            rows = conn.execute(
                "SELECT sequence, event FROM responseloop_events"
                " WHERE response_id = ? AND sequence > ? ORDER BY sequence LIMIT ?",
                (response_id, after, limit),
            ).fetchall()
            return [(number, event) for number, event in rows]

        return await self._run(listed)

    # -- steps -----------------------------------------------------------------------------

    async def record_step(
        self,
        response_id: str,
        scope: str | None,
        prev_step_id: str | None,
        step: StepDescriptor,
        *,
        fence: str | None = None,
    ) -> RecordedStep:
        (recorded,) = await self._record(
            response_id, scope, prev_step_id, [step], StepState.PENDING, fence
        )
        return recorded

    async def record_started_steps(
        self,
        response_id: str,
        scope: str | None,
        prev_step_id: str | None,
        steps: Sequence[StepDescriptor],
        *,
        fence: str | None = None,
    ) -> Sequence[RecordedStep]:
        """Store ``steps`` in order, already ``processing``, each linked after the one
        before it, in one transaction (:class:`~responseloop.abc.StepStartingStore`)."""
        if not steps:
            return []
        return await self._record(
            response_id, scope, prev_step_id, steps, StepState.PROCESSING, fence
        )

    async def complete_and_start_steps(
        self,
        response_id: str,
        scope: str | None,
        completed_step_id: str,
        payload: JSON,
        steps: Sequence[StepDescriptor],
        *,
        fence: str | None = None,
    ) -> Sequence[RecordedStep]:
        """Complete one step and store ``steps`` after it, already ``processing``, in one
        transaction (:class:`~responseloop.abc.StepAdvancingStore`)."""
        return await self._record(
            response_id,
            scope,
            completed_step_id,
            steps,
            StepState.PROCESSING,
            fence,
            completed=encode(payload),
        )

    async def _record(
        self,
        response_id: str,
        scope: str | None,
        prev_step_id: str | None,
        steps: Sequence[StepDescriptor],
        state: StepState,
        fence: str | None,
        *,
        completed: str | None = None,
    ) -> list[RecordedStep]:
        """Store ``steps`` after ``prev_step_id``; with ``completed`` (a payload's text),
        complete step ``prev_step_id`` with it first, in the same transaction."""
        requests = [encode(dict(step.request_payload)) for step in steps]
        ids = [self._step_ids() for _ in steps]
        links = [prev_step_id, *ids[:-1]]

        def record(conn: sqlite3.Connection) -> list[RecordedStep]:
            # The counter row is updated and the steps inserted in one write transaction,
            # so concurrent writers (threads or processes) never share or skip a number.
            with _transaction(conn):
                self._require_fence(conn, response_id, fence)
                if completed is not None:
                    assert prev_step_id is not None
                    # Fenced already, by this transaction's check above.
                    _move_step(
                        conn, response_id, prev_step_id, StepState.COMPLETED, completed, None, None
                    )
                row = conn.execute(
                    "UPDATE responseloop_responses SET last_sequence = last_sequence + ?"
                    " WHERE id = ? RETURNING last_sequence",
                    (len(steps), response_id),
                ).fetchone()
                if row is None:
                    raise ResponseNotFound(response_id)
                first = row[0] - len(steps) + 1
                conn.executemany(
                    "INSERT INTO responseloop_steps"
                    " (id, response_id, scope, sequence, prev_step_id, kind, state, request)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            ids[index],
                            response_id,
                            _TOP if scope is None else scope,
                            first + index,
                            links[index],
                            step.kind.value,
                            state.value,
                            requests[index],
                        )
                        for index, step in enumerate(steps)
                    ],
                )
            return [RecordedStep(step_id, first + index) for index, step_id in enumerate(ids)]

        return await self._run(record)

    async def update_step(
        self, response_id: str, step_id: str, update: StepUpdate, *, fence: str | None = None
    ) -> None:
        response, error = encode_step_update(update)
        await self._run(
            lambda conn: _move_step(
                conn, response_id, step_id, update.state, response, error, fence
            )
        )

    async def list_chain(self, response_id: str, scope: str | None) -> Sequence[ChainStep]:
        def chain(conn: sqlite3.Connection) -> list[ChainStep]:
            # One query answers both "does the response exist" and "what is its chain":
            # a response without steps in this scope still gives one row of NULLs.
            rows = conn.execute(
                "SELECT s.id, s.kind, s.state, s.sequence, s.request, s.prev_step_id,"
                " s.response, s.error"
                " FROM responseloop_responses AS r LEFT JOIN responseloop_steps AS s"
                " ON s.response_id = r.id AND s.scope = ?"
                " WHERE r.id = ? ORDER BY s.sequence",
                (_TOP if scope is None else scope, response_id),
            ).fetchall()
            if not rows:
                raise ResponseNotFound(response_id)
            return [_chain_step(row, scope) for row in rows if row[0] is not None]

        return await self._run(chain)

    # -- approvals -------------------------------------------------------------------------

    async def claim_approvals(
        self, caller: str | None, approval_request_ids: Sequence[str], response_id: str
    ) -> Mapping[str, str]:
        key = json.dumps(caller)
        ids = list(dict.fromkeys(approval_request_ids))

        def claim(conn: sqlite3.Connection) -> dict[str, str]:
            with _transaction(conn):  # the write lock: the check and the claim are one
                owners: dict[str, str] = {}
                for start in range(0, len(ids), 500):  # under the bound-parameter limit
                    chunk = ids[start : start + 500]
                    rows = conn.execute(
                        "SELECT approval_request_id, response_id"
                        " FROM responseloop_approval_claims"
                        f" WHERE caller = ? AND approval_request_id IN ({_marks(tuple(chunk))})",
                        (key, *chunk),
                    ).fetchall()
                    owners.update((row[0], row[1]) for row in rows)
                if any(owner != response_id for owner in owners.values()):
                    return owners
                conn.executemany(
                    "INSERT INTO responseloop_approval_claims"
                    " (caller, approval_request_id, response_id) VALUES (?, ?, ?)"
                    " ON CONFLICT DO NOTHING",
                    [(key, each, response_id) for each in ids],
                )
                return dict.fromkeys(ids, response_id)

        return await self._run(claim) if ids else {}

    # -- conversations ---------------------------------------------------------------------

    async def create_conversation(
        self, record: ConversationRecord, items: Sequence[Mapping[str, Any]]
    ) -> None:
        metadata = encode(dict(record.metadata))
        rows = [(str(item["id"]), encode(dict(item))) for item in items]

        def create(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                cursor = conn.execute(
                    "INSERT INTO responseloop_conversations (id, caller, created_at, metadata)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                    (record.id, record.caller, record.created_at, metadata),
                )
                if cursor.rowcount != 1:
                    raise StoreError(f"conversation already exists: {record.id}")
                _append_items(conn, record.id, 0, rows)

        await self._run(create)

    async def get_conversation(self, conversation_id: str) -> ConversationRecord:
        return await self._run(lambda conn: _conversation(conn, conversation_id))

    async def update_conversation(
        self, conversation_id: str, metadata: Mapping[str, str]
    ) -> ConversationRecord:
        encoded = encode(dict(metadata))

        def update(conn: sqlite3.Connection) -> ConversationRecord:
            with _transaction(conn):
                conn.execute(
                    "UPDATE responseloop_conversations SET metadata = ? WHERE id = ?",
                    (encoded, conversation_id),
                )
                return _conversation(conn, conversation_id)

        return await self._run(update)

    async def delete_conversation(self, conversation_id: str) -> None:
        def delete(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                "DELETE FROM responseloop_conversations WHERE id = ?", (conversation_id,)
            )
            if cursor.rowcount != 1:
                raise ConversationNotFound(conversation_id)

        await self._run(delete)

    async def list_conversation(self, conversation_id: str) -> ConversationContents:
        def listed(conn: sqlite3.Connection) -> ConversationContents:
            # One read transaction: the record, entries and hidden ids agree.
            conn.execute("BEGIN")
            try:
                record = _conversation(conn, conversation_id)
                entries = conn.execute(
                    "SELECT position, response_id, item FROM responseloop_conversation_entries"
                    " WHERE conversation_id = ? ORDER BY position",
                    (conversation_id,),
                ).fetchall()
                hidden = conn.execute(
                    "SELECT item_id FROM responseloop_conversation_hidden"
                    " WHERE conversation_id = ?",
                    (conversation_id,),
                ).fetchall()
            finally:
                conn.rollback()
            return ConversationContents(
                record,
                [
                    ConversationEntry(position, response_id, decode(item))
                    for position, response_id, item in entries
                ],
                frozenset(row[0] for row in hidden),
            )

        return await self._run(listed)

    async def add_conversation_items(
        self, conversation_id: str, items: Sequence[Mapping[str, Any]]
    ) -> int:
        rows = [(str(item["id"]), encode(dict(item))) for item in items]

        def add(conn: sqlite3.Connection) -> int:
            with _transaction(conn):
                row = conn.execute(
                    f"SELECT c.next_position, {_IN_USE} FROM responseloop_conversations AS c"
                    " WHERE c.id = ?",
                    (None, conversation_id),
                ).fetchone()
                if row is None:
                    raise ConversationNotFound(conversation_id)
                if row[1]:
                    raise ConversationLocked(conversation_id)
                _append_items(conn, conversation_id, row[0], rows)
                return int(row[0])

        return await self._run(add)

    async def begin_conversation_turn(
        self, conversation_id: str, response_id: str, *, expected_position: int
    ) -> None:
        def begin(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                row = conn.execute(
                    f"SELECT c.next_position, c.active_response, {_IN_USE}"
                    " FROM responseloop_conversations AS c WHERE c.id = ?",
                    (response_id, conversation_id),
                ).fetchone()
                if row is None:
                    raise ConversationNotFound(conversation_id)
                position, active, in_use = row
                if active == response_id:
                    return
                if in_use or position != expected_position:
                    raise ConversationLocked(conversation_id)
                conn.execute(
                    "INSERT INTO responseloop_conversation_entries"
                    " (conversation_id, position, response_id) VALUES (?, ?, ?)",
                    (conversation_id, position, response_id),
                )
                conn.execute(
                    "UPDATE responseloop_conversations"
                    " SET next_position = ?, active_response = ? WHERE id = ?",
                    (position + 1, response_id, conversation_id),
                )

        await self._run(begin)

    async def delete_conversation_item(self, conversation_id: str, item_id: str) -> None:
        def delete(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                row = conn.execute(
                    f"SELECT {_IN_USE} FROM responseloop_conversations AS c WHERE c.id = ?",
                    (None, conversation_id),
                ).fetchone()
                if row is None:
                    raise ConversationNotFound(conversation_id)
                if row[0]:
                    raise ConversationLocked(conversation_id)
                cursor = conn.execute(
                    "DELETE FROM responseloop_conversation_entries"
                    " WHERE conversation_id = ? AND item_id = ?",
                    (conversation_id, item_id),
                )
                if cursor.rowcount == 0:
                    conn.execute(
                        "INSERT INTO responseloop_conversation_hidden (conversation_id, item_id)"
                        " VALUES (?, ?) ON CONFLICT DO NOTHING",
                        (conversation_id, item_id),
                    )

        await self._run(delete)

    # -- machinery -------------------------------------------------------------------------

    @staticmethod
    def _require_fence(conn: sqlite3.Connection, response_id: str, fence: str | None) -> None:
        """Inside a write transaction: the response exists and, with ``fence``, ``fence``
        holds its lease."""
        row = conn.execute(
            "SELECT lease_holder FROM responseloop_responses WHERE id = ?", (response_id,)
        ).fetchone()
        if row is None:
            raise ResponseNotFound(response_id)
        if fence is not None and row[0] != fence:
            raise LeaseLost(response_id)

    @staticmethod
    def _require_response(conn: sqlite3.Connection, response_id: str) -> None:
        row = conn.execute(
            "SELECT 1 FROM responseloop_responses WHERE id = ?", (response_id,)
        ).fetchone()
        if row is None:
            raise ResponseNotFound(response_id)

    async def _run(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        return await anyio.to_thread.run_sync(self._call, operation, limiter=self._limiter)

    def _call(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        conn = self._checkout()
        try:
            return operation(conn)
        except ResponseLoopError:
            raise
        except (sqlite3.Error, UnicodeError) as exc:
            raise StoreError(f"SQLite store {self.path!r} failed: {exc}") from exc
        finally:
            self._checkin(conn)

    def _checkout(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise StoreError(f"SQLite store {self.path!r} is closed")
            if self._idle:
                return self._idle.pop()
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout,
                isolation_level=None,  # autocommit: transactions are explicit
                check_same_thread=False,  # pooled: one thread at a time, not always the same
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite store {self.path!r}: {exc}") from exc
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            with self._lock:
                if not self._ready:
                    _migrate(conn)
                    self._ready = True
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cannot open SQLite store {self.path!r}: {exc}") from exc
            raise
        return conn

    def _checkin(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            conn.rollback()
        with self._lock:
            if not self._closed:
                self._idle.append(conn)
                return
        conn.close()


def _move_step(
    conn: sqlite3.Connection,
    response_id: str,
    step_id: str,
    state: StepState,
    response: str | None,
    error: str | None,
    fence: str | None,
) -> None:
    """Move step ``step_id`` to ``state`` with its ``response`` and ``error`` texts, when
    the move table allows it and (with ``fence``) the fence holds the lease, or raise."""
    allowed = tuple(source.value for source in step_move_sources(state))
    # The state guard (and the fence) make the check and the move one statement.
    fenced = (
        ""
        if fence is None
        else " AND EXISTS (SELECT 1 FROM responseloop_responses"
        " WHERE responseloop_responses.id = responseloop_steps.response_id"
        " AND lease_holder = ?)"
    )
    params = (state.value, response, error, step_id, response_id, *allowed)
    cursor = conn.execute(
        "UPDATE responseloop_steps SET state = ?, response = ?, error = ?"
        f" WHERE id = ? AND response_id = ? AND state IN ({_marks(allowed)}){fenced}",
        params if fence is None else (*params, fence),
    )
    if cursor.rowcount == 1:
        return
    if fence is not None:
        holder = conn.execute(
            "SELECT lease_holder FROM responseloop_responses WHERE id = ?",
            (response_id,),
        ).fetchone()
        if holder is not None and holder[0] != fence:
            raise LeaseLost(response_id)
    row = conn.execute(
        "SELECT state FROM responseloop_steps WHERE id = ? AND response_id = ?",
        (step_id, response_id),
    ).fetchone()
    if row is None:
        raise StepNotFound(step_id)
    raise refused_step_move(step_id, row[0], state)


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    # IMMEDIATE takes the write lock up front: a deferred transaction that reads and then
    # writes can fail with SQLITE_BUSY instead of waiting when another writer got there.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.rollback()
        raise
    conn.execute("COMMIT")


def _migrate(conn: sqlite3.Connection) -> None:
    with _transaction(conn):
        conn.execute("CREATE TABLE IF NOT EXISTS responseloop_schema (version INTEGER NOT NULL)")
        row = conn.execute("SELECT max(version) FROM responseloop_schema").fetchone()
        version = row[0] or 0
        if version > len(_MIGRATIONS):
            raise StoreError(
                f"the database is at schema version {version}, newer than the "
                f"{len(_MIGRATIONS)} this responseloop knows: upgrade responseloop"
            )
        for number in range(version, len(_MIGRATIONS)):
            for statement in _MIGRATIONS[number].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO responseloop_schema (version) VALUES (?)", (number + 1,))


def _conversation(conn: sqlite3.Connection, conversation_id: str) -> ConversationRecord:
    row = conn.execute(
        "SELECT caller, created_at, metadata, next_position, active_response"
        " FROM responseloop_conversations WHERE id = ?",
        (conversation_id,),
    ).fetchone()
    if row is None:
        raise ConversationNotFound(conversation_id)
    caller, created_at, metadata, next_position, active = row
    return ConversationRecord(
        conversation_id,
        caller,
        created_at,
        decode(metadata),
        next_position,
        active,
    )


def _append_items(
    conn: sqlite3.Connection, conversation_id: str, first: int, rows: Sequence[tuple[str, str]]
) -> None:
    """Inside a write transaction: ``rows`` (item id, encoded item) from position ``first``."""
    conn.executemany(
        "INSERT INTO responseloop_conversation_entries"
        " (conversation_id, position, item_id, item) VALUES (?, ?, ?, ?)",
        [(conversation_id, first + n, item_id, item) for n, (item_id, item) in enumerate(rows)],
    )
    conn.execute(
        "UPDATE responseloop_conversations SET next_position = ? WHERE id = ?",
        (first + len(rows), conversation_id),
    )


def _marks(values: tuple[Any, ...]) -> str:
    return ", ".join("?" for _ in values)


def _chain_step(row: tuple[Any, ...], scope: str | None) -> ChainStep:
    step_id, kind, state, sequence, request, prev_step_id, response, error = row
    return ChainStep(
        id=step_id,
        kind=StepKind(kind),
        state=StepState(state),
        sequence=sequence,
        request_payload=decode(request),
        prev_step_id=prev_step_id,
        scope=scope,
        response_payload=decode(response),
        error=decode(error),
    )
