"""PostgresStore: the store many workers on many machines share (extra ``postgres``)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

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
from ._codec import encode, encode_step_update

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

__all__ = ["PostgresStore"]

_T = TypeVar("_T")

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# Each entry migrates the schema from version N to N + 1, run under an advisory lock so
# workers starting together never race. Append, never edit.
#
# Payload columns are ``json``, not ``jsonb``: json keeps the exact text (key order,
# number spelling) and accepts every string JSON can carry, where jsonb reorders keys and
# refuses "\u0000" (a tool output containing a NUL byte would fail its step). No query
# looks inside a payload, so jsonb's indexing would buy nothing.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE {schema}.responses (
        id text PRIMARY KEY,
        request json NOT NULL,
        model text,
        caller text,
        status text NOT NULL,
        created_at bigint NOT NULL,
        response json,
        store boolean NOT NULL,
        last_sequence bigint NOT NULL DEFAULT 0,
        lease_holder text,
        lease_expires double precision
    );
    CREATE TABLE {schema}.steps (
        id text PRIMARY KEY,
        response_id text NOT NULL REFERENCES {schema}.responses (id) ON DELETE CASCADE,
        scope text NOT NULL,
        sequence bigint NOT NULL,
        prev_step_id text,
        kind text NOT NULL,
        state text NOT NULL,
        request json NOT NULL,
        response json,
        error json,
        UNIQUE (response_id, sequence)
    );
    CREATE INDEX steps_chain ON {schema}.steps (response_id, scope, sequence);
    """,
    # Recovery, cross-replica cancel and the event log. ``idle_since`` is when a response
    # nobody holds became claimable by a sweep (NULL: at once, as for a released one);
    # the partial index keeps the sweep's cost to the live responses.
    """
    ALTER TABLE {schema}.responses ADD COLUMN idle_since double precision;
    ALTER TABLE {schema}.responses
        ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false;
    CREATE INDEX responses_live ON {schema}.responses (lease_expires)
        WHERE status IN ('queued', 'in_progress');
    CREATE TABLE {schema}.events (
        response_id text NOT NULL REFERENCES {schema}.responses (id) ON DELETE CASCADE,
        sequence bigint NOT NULL,
        event text NOT NULL,
        PRIMARY KEY (response_id, sequence)
    );
    """,
    # Conversations: a view over the responses, never a copy of their items. An entry is
    # a turn (``response_id``) or an item added directly (``item``, its id beside it for
    # deleting it); ``conversation_hidden`` holds the ids of a turn's items deleted from
    # the view. No foreign key to the responses: a deleted response leaves its entry empty.
    """
    CREATE TABLE {schema}.conversations (
        id text PRIMARY KEY,
        caller text,
        created_at bigint NOT NULL,
        metadata json NOT NULL,
        next_position bigint NOT NULL DEFAULT 0,
        active_response text
    );
    CREATE TABLE {schema}.conversation_entries (
        conversation_id text NOT NULL
            REFERENCES {schema}.conversations (id) ON DELETE CASCADE,
        position bigint NOT NULL,
        response_id text,
        item_id text,
        item json,
        PRIMARY KEY (conversation_id, position)
    );
    CREATE TABLE {schema}.conversation_hidden (
        conversation_id text NOT NULL
            REFERENCES {schema}.conversations (id) ON DELETE CASCADE,
        item_id text NOT NULL,
        PRIMARY KEY (conversation_id, item_id)
    );
    """,
    # The once-only claims of approved MCP calls, by caller and approval request. The
    # caller is JSON-encoded ('null' for none), so no caller and an empty one differ. No
    # foreign key to the responses: a claim outlives its response (the call ran).
    """
    CREATE TABLE {schema}.approval_claims (
        caller text NOT NULL,
        approval_request_id text NOT NULL,
        response_id text NOT NULL,
        PRIMARY KEY (caller, approval_request_id)
    );
    """,
)

# Now, in seconds: the injected clock's reading, else the database's own.
_NOW = "coalesce(%(now)s::float8, extract(epoch FROM clock_timestamp())::float8)"

# The top-level scope is stored as '' rather than NULL so that `scope = $1` serves every
# scope from one index (step ids are never empty).
_TOP = ""


def _psycopg_pool() -> Any:
    try:
        import psycopg_pool
    except ImportError as exc:
        raise ImportError(
            "PostgresStore needs psycopg and psycopg-pool: pip install 'responseloop[postgres]'"
        ) from exc
    return psycopg_pool


class PostgresStore(AsyncClosing):
    """A :class:`~responseloop.abc.ResponseStore` (with conversations and approval claims)
    in PostgreSQL, for many workers on many machines: any worker can resume any response,
    and ``GET`` works from every node.

    Every operation is one statement, so one round trip: a step's sequence is allocated by
    the same statement that inserts it (a per-response counter row, so concurrent workers
    never share or skip a number), and state changes report a wrong state or a missing step
    from that same statement. ``list_chain`` is one index range scan, whatever the table's
    size. The schema is created or migrated by :meth:`open`, under an advisory lock, so
    workers may start together. Lost connections and pool timeouts raise
    :class:`StoreError`; the pool replaces broken connections for the next operation.

    Calls run on a psycopg connection pool in worker threads (:mod:`anyio.to_thread`):
    psycopg's async API is asyncio-only, and this store must work under trio too. A call
    in flight finishes (or fails) before a cancellation takes effect, so no operation is
    ever left half-known to its caller.

    Use it as an async context manager::

        async with PostgresStore.from_url("postgresql://app@db/app") as store:
            ...

    Args:
        pool: a :class:`psycopg_pool.ConnectionPool`, opened by :meth:`open` if it is not
            open yet. Give its connections ``autocommit=True`` (as :meth:`from_url` does):
            otherwise every operation pays a second round trip for its ``COMMIT``.
        schema: the PostgreSQL schema holding the tables (created when missing).
        owns_pool: close ``pool`` on :meth:`aclose`.
        step_ids: makes step ids (default ``step_<32 hex>``).
        clock: the time in seconds that leases expire by; by default the database's own
            clock, so workers whose clocks disagree still agree on leases.
    """

    def __init__(
        self,
        pool: psycopg_pool.ConnectionPool[Any],
        *,
        schema: str = "responseloop",
        owns_pool: bool = False,
        step_ids: Callable[[], str] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not _SCHEMA_NAME.match(schema):
            raise ValueError(
                f"schema must be a lower-case SQL identifier (a-z, 0-9, _), got {schema!r}"
            )
        self.schema = schema
        self._pool = pool
        self._owns_pool = owns_pool
        self._step_ids = step_ids or (lambda: random_id("step"))
        self._clock = clock
        self._limiter = anyio.CapacityLimiter(max(1, pool.max_size))
        self._sql = _Statements(f'"{schema}"')

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        schema: str = "responseloop",
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 30.0,
        step_ids: Callable[[], str] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> PostgresStore:
        """A store with its own connection pool to ``url`` (opened by :meth:`open`).

        ``timeout`` is how long an operation waits for a connection before it fails
        with :class:`StoreError`.
        """
        pool = _psycopg_pool().ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            open=False,
            kwargs={"autocommit": True},
            name=f"responseloop-{schema}",
        )
        return cls(pool, schema=schema, owns_pool=True, step_ids=step_ids, clock=clock)

    def __repr__(self) -> str:
        return f"<PostgresStore schema={self.schema!r}>"

    async def open(self) -> None:
        """Open the pool (waiting for its first connections) and create or migrate the
        schema. Raises :class:`StoreError` when the database cannot be reached."""
        await anyio.to_thread.run_sync(self._open, limiter=self._limiter)

    async def aclose(self) -> None:
        """Close the pool, when this store owns it."""
        if self._owns_pool:
            await anyio.to_thread.run_sync(self._pool.close)

    async def _enter(self) -> None:
        await self.open()

    # -- responses -------------------------------------------------------------------------

    async def create_response(self, record: ResponseRecord) -> None:
        params = {
            "id": record.id,
            "request": encode(dict(record.request)),
            "model": record.model,
            "caller": record.caller,
            "status": record.status.value,
            "created_at": record.created_at,
            "response": encode(record.response) if record.response is not None else None,
            "store": record.store,
            "now": self._now(),
        }
        if await self._fetchone(self._sql.create, params) is None:
            raise ResponseExists(record.id)

    async def get_response(self, response_id: str) -> ResponseRecord:
        row = await self._fetchone(self._sql.get, {"id": response_id})
        if row is None:
            raise ResponseNotFound(response_id)
        request, model, caller, status, created_at, response, store = row
        return ResponseRecord(
            id=response_id,
            request=request,
            model=model,
            caller=caller,
            status=ResponseStatus(status),
            created_at=created_at,
            response=response,
            store=store,
        )

    async def update_response(
        self, response_id: str, update: ResponseUpdate, *, fence: str | None = None
    ) -> None:
        params = {
            "id": response_id,
            "status": update.status.value,
            "response": encode(update.response),
            "fence": fence,
        }
        statement = self._sql.finish if update.finishes else self._sql.reopen
        row = await self._fetchone(statement, params)
        assert row is not None
        exists, written = row
        if not exists:
            raise ResponseNotFound(response_id)
        if not written:
            raise LeaseLost(response_id)

    async def delete_response(self, response_id: str) -> None:
        if await self._fetchone(self._sql.delete, {"id": response_id}) is None:
            raise ResponseNotFound(response_id)

    async def claim_response(self, response_id: str, claimant: str, lease_seconds: float) -> bool:
        params = {
            "id": response_id,
            "claimant": claimant,
            "lease": float(lease_seconds),
            "now": self._now(),
        }
        row = await self._fetchone(self._sql.claim, params)
        assert row is not None
        claimed, exists = row
        if not exists:
            raise ResponseNotFound(response_id)
        return bool(claimed)

    async def release_response(self, response_id: str, claimant: str) -> None:
        params = {"id": response_id, "claimant": claimant}
        await self._offload(lambda conn: conn.execute(self._sql.release, params))

    async def expired_responses(self, limit: int, *, unclaimed_grace: float) -> Sequence[str]:
        params = {"limit": limit, "grace": float(unclaimed_grace), "now": self._now()}
        rows = await self._offload(lambda conn: conn.execute(self._sql.expired, params).fetchall())
        return [row[0] for row in rows]

    async def request_cancel(self, response_id: str) -> None:
        if await self._fetchone(self._sql.request_cancel, {"id": response_id}) is None:
            raise ResponseNotFound(response_id)

    async def cancels_requested(self, response_ids: Sequence[str]) -> Sequence[str]:
        if not response_ids:
            return []
        params = {"ids": list(response_ids)}
        rows = await self._offload(
            lambda conn: conn.execute(self._sql.cancels_requested, params).fetchall()
        )
        return [row[0] for row in rows]

    # -- the event log ---------------------------------------------------------------------

    async def append_events(
        self,
        response_id: str,
        first_sequence: int,
        events: Sequence[str],
        *,
        fence: str | None = None,
    ) -> None:
        params = {
            "id": response_id,
            "numbers": list(range(first_sequence, first_sequence + len(events))),
            "events": list(events),
            "fence": fence,
        }
        statement = self._sql.append_fenced if fence is not None else self._sql.append
        row = await self._fetchone(statement, params)
        assert row is not None
        exists, fenced = row
        if not exists:
            raise ResponseNotFound(response_id)
        if not fenced:
            raise LeaseLost(response_id)

    async def list_events(
        self, response_id: str, after: int, limit: int
    ) -> Sequence[tuple[int, str]]:
        params = {"id": response_id, "after": after, "limit": limit}
        rows = await self._offload(lambda conn: conn.execute(self._sql.events, params).fetchall())
        if not rows:
            raise ResponseNotFound(response_id)
        return [(number, event) for number, event in rows if number is not None]

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
        before it, in one statement (:class:`~responseloop.abc.StepStartingStore`)."""
        if not steps:
            return []
        return await self._record(
            response_id, scope, prev_step_id, steps, StepState.PROCESSING, fence
        )

    async def _record(
        self,
        response_id: str,
        scope: str | None,
        prev_step_id: str | None,
        steps: Sequence[StepDescriptor],
        state: StepState,
        fence: str | None,
    ) -> list[RecordedStep]:
        ids, params = self._steps_params(response_id, scope, prev_step_id, steps, state, fence)
        row = await self._fetchone(self._sql.record_steps, params)
        assert row is not None
        first, exists = row
        if first is None:
            raise LeaseLost(response_id) if exists else ResponseNotFound(response_id)
        return [RecordedStep(step_id, first + index) for index, step_id in enumerate(ids)]

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
        statement (:class:`~responseloop.abc.StepAdvancingStore`)."""
        if not steps:
            # The statement links each step after the one before it; with none there is
            # nothing to link, and completing the step is all that is asked.
            await self.update_step(
                response_id, completed_step_id, StepUpdate.completed(payload), fence=fence
            )
            return []
        ids, params = self._steps_params(
            response_id, scope, completed_step_id, steps, StepState.PROCESSING, fence
        )
        params["completed"] = completed_step_id
        params["response"] = encode(payload)
        params["allowed"] = [state.value for state in step_move_sources(StepState.COMPLETED)]
        row = await self._fetchone(self._sql.complete_and_record_steps, params)
        assert row is not None
        first, exists, leased, moved, current = row
        if not exists:
            raise ResponseNotFound(response_id)
        if not leased:
            raise LeaseLost(response_id)
        if not moved:
            if current is None:
                raise StepNotFound(completed_step_id)
            raise refused_step_move(completed_step_id, current, StepState.COMPLETED)
        return [RecordedStep(step_id, first + index) for index, step_id in enumerate(ids)]

    def _steps_params(
        self,
        response_id: str,
        scope: str | None,
        prev_step_id: str | None,
        steps: Sequence[StepDescriptor],
        state: StepState,
        fence: str | None,
    ) -> tuple[list[str], dict[str, Any]]:
        """New ids for ``steps``, and the parameters that insert them after
        ``prev_step_id`` (``_Statements.insert_steps``)."""
        ids = [self._step_ids() for _ in steps]
        return ids, {
            "response_id": response_id,
            "scope": _TOP if scope is None else scope,
            "count": len(steps),
            "ids": ids,
            "prevs": [prev_step_id, *ids[:-1]],
            "kinds": [step.kind.value for step in steps],
            "requests": [encode(dict(step.request_payload)) for step in steps],
            "state": state.value,
            "fence": fence,
        }

    async def update_step(
        self, response_id: str, step_id: str, update: StepUpdate, *, fence: str | None = None
    ) -> None:
        response, error = encode_step_update(update)
        params = {
            "response_id": response_id,
            "id": step_id,
            "state": update.state.value,
            "allowed": [state.value for state in step_move_sources(update.state)],
            "response": response,
            "error": error,
            "fence": fence,
        }
        row = await self._fetchone(
            self._sql.move_fenced if fence is not None else self._sql.move, params
        )
        assert row is not None
        moved, current, fenced = row
        if moved:
            return
        if fence is not None and not fenced and current is not None:
            raise LeaseLost(response_id)
        if current is None:
            raise StepNotFound(step_id)
        raise refused_step_move(step_id, current, update.state)

    async def list_chain(self, response_id: str, scope: str | None) -> Sequence[ChainStep]:
        params = {"id": response_id, "scope": _TOP if scope is None else scope}
        rows = await self._offload(lambda conn: conn.execute(self._sql.chain, params).fetchall())
        if not rows:
            raise ResponseNotFound(response_id)
        return [
            ChainStep(
                id=step_id,
                kind=StepKind(kind),
                state=StepState(state),
                sequence=sequence,
                request_payload=request,
                prev_step_id=prev_step_id,
                scope=scope,
                response_payload=response,
                error=error,
            )
            for step_id, kind, state, sequence, request, prev_step_id, response, error in rows
            if step_id is not None
        ]

    # -- approvals -------------------------------------------------------------------------

    async def claim_approvals(
        self, caller: str | None, approval_request_ids: Sequence[str], response_id: str
    ) -> Mapping[str, str]:
        sql = self._sql
        # Sorted, so two claims of overlapping sets take the index entries in one order
        # (the second waits for the first instead of deadlocking with it).
        ids = sorted(set(approval_request_ids))
        params = {"caller": json.dumps(caller), "ids": ids, "response": response_id}

        def claim(conn: psycopg.Connection[Any]) -> dict[str, str]:
            import psycopg

            owners: dict[str, str] = {}
            with conn.transaction():
                # An insert meeting a concurrent one's uncommitted row waits for it, and
                # the read after it (a statement of its own, so a snapshot of its own)
                # sees what that one committed.
                inserted = {row[0] for row in conn.execute(sql.claim_approvals, params)}
                rows = conn.execute(sql.approval_owners, params).fetchall()
                owners = {str(each): str(owner) for each, owner in rows}
                if any(owner != response_id for owner in owners.values()):
                    owners = {k: v for k, v in owners.items() if k not in inserted}
                    raise psycopg.Rollback()
            return owners

        return await self._offload(claim) if ids else {}

    # -- conversations ---------------------------------------------------------------------
    #
    # A write that depends on what it read takes the conversation's row lock first
    # (``FOR UPDATE``), so two turns, or a turn and an append, are ordered one way or the
    # other and the second sees what the first wrote.

    async def create_conversation(
        self, record: ConversationRecord, items: Sequence[Mapping[str, Any]]
    ) -> None:
        sql = self._sql
        params = {
            "id": record.id,
            "caller": record.caller,
            "created_at": record.created_at,
            "metadata": encode(dict(record.metadata)),
        }
        rows = [(str(item["id"]), encode(dict(item))) for item in items]

        def create(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                if conn.execute(sql.create_conversation, params).fetchone() is None:
                    raise StoreError(f"conversation already exists: {record.id}")
                self._append_items(conn, record.id, 0, rows)

        await self._offload(create)

    async def get_conversation(self, conversation_id: str) -> ConversationRecord:
        return await self._offload(lambda conn: self._conversation(conn, conversation_id))

    async def update_conversation(
        self, conversation_id: str, metadata: Mapping[str, str]
    ) -> ConversationRecord:
        params = {"id": conversation_id, "metadata": encode(dict(metadata))}
        row = await self._fetchone(self._sql.update_conversation, params)
        if row is None:
            raise ConversationNotFound(conversation_id)
        return _conversation_record(conversation_id, row)

    async def delete_conversation(self, conversation_id: str) -> None:
        if await self._fetchone(self._sql.delete_conversation, {"id": conversation_id}) is None:
            raise ConversationNotFound(conversation_id)

    async def list_conversation(self, conversation_id: str) -> ConversationContents:
        row = await self._fetchone(self._sql.list_conversation, {"id": conversation_id})
        if row is None:
            raise ConversationNotFound(conversation_id)
        entries, hidden = row[5] or [], row[6] or []
        return ConversationContents(
            _conversation_record(conversation_id, row[:5]),
            [ConversationEntry(position, response, item) for position, response, item in entries],
            frozenset(hidden),
        )

    async def add_conversation_items(
        self, conversation_id: str, items: Sequence[Mapping[str, Any]]
    ) -> int:
        sql = self._sql
        rows = [(str(item["id"]), encode(dict(item))) for item in items]
        params = {"id": conversation_id, "response": None}

        def add(conn: psycopg.Connection[Any]) -> int:
            with conn.transaction():
                row = conn.execute(sql.lock_conversation, params).fetchone()
                if row is None:
                    raise ConversationNotFound(conversation_id)
                position, _active, in_use = row
                if in_use:
                    raise ConversationLocked(conversation_id)
                self._append_items(conn, conversation_id, position, rows)
                return int(position)

        return await self._offload(add)

    async def begin_conversation_turn(
        self, conversation_id: str, response_id: str, *, expected_position: int
    ) -> None:
        sql = self._sql
        params = {"id": conversation_id, "response": response_id}

        def begin(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                row = conn.execute(sql.lock_conversation, params).fetchone()
                if row is None:
                    raise ConversationNotFound(conversation_id)
                position, active, in_use = row
                if active == response_id:
                    return
                if in_use or position != expected_position:
                    raise ConversationLocked(conversation_id)
                conn.execute(sql.begin_turn, {**params, "position": position})

        await self._offload(begin)

    async def delete_conversation_item(self, conversation_id: str, item_id: str) -> None:
        sql = self._sql
        params = {"id": conversation_id, "item_id": item_id, "response": None}

        def delete(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                row = conn.execute(sql.lock_conversation, params).fetchone()
                if row is None:
                    raise ConversationNotFound(conversation_id)
                if row[2]:
                    raise ConversationLocked(conversation_id)
                conn.execute(sql.delete_conversation_item, params)

        await self._offload(delete)

    def _conversation(
        self, conn: psycopg.Connection[Any], conversation_id: str
    ) -> ConversationRecord:
        row = conn.execute(self._sql.get_conversation, {"id": conversation_id}).fetchone()
        if row is None:
            raise ConversationNotFound(conversation_id)
        return _conversation_record(conversation_id, row)

    def _append_items(
        self,
        conn: psycopg.Connection[Any],
        conversation_id: str,
        first: int,
        rows: Sequence[tuple[str, str]],
    ) -> None:
        """Inside a transaction: ``rows`` (item id, encoded item) from position ``first``."""
        params = {
            "id": conversation_id,
            "first": first,
            "item_ids": [item_id for item_id, _ in rows],
            "items": [item for _, item in rows],
        }
        conn.execute(self._sql.append_items, params)

    # -- machinery -------------------------------------------------------------------------

    def _now(self) -> float | None:
        return self._clock() if self._clock is not None else None

    async def _fetchone(self, query: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
        return await self._offload(lambda conn: conn.execute(query, params).fetchone())

    async def _offload(self, operation: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        return await anyio.to_thread.run_sync(self._call, operation, limiter=self._limiter)

    def _call(self, operation: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        import psycopg

        if self._pool.closed:
            raise StoreError(
                f"PostgresStore ({self.schema}) is not open: use `async with` or await open()"
            )
        try:
            with self._pool.connection() as conn:
                return operation(conn)
        except ResponseLoopError:
            raise
        except (psycopg.Error, UnicodeError) as exc:
            # Connection loss, pool timeouts and server errors alike: never swallowed.
            raise StoreError(f"PostgreSQL store ({self.schema}) failed: {exc}") from exc

    def _open(self) -> None:
        import psycopg

        try:
            if self._pool.closed:
                self._pool.open(wait=True, timeout=self._pool.timeout)
            with self._pool.connection() as conn, conn.transaction():
                conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"responseloop:{self.schema}",)
                )
                self._migrate(conn)
        except ResponseLoopError:
            raise
        except psycopg.Error as exc:
            raise StoreError(f"cannot open PostgreSQL store ({self.schema}): {exc}") from exc

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        schema = f'"{self.schema}"'
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {schema}.schema_version (version integer NOT NULL)"
        )
        row = conn.execute(f"SELECT max(version) FROM {schema}.schema_version").fetchone()
        version = (row[0] if row is not None else None) or 0
        if version > len(_MIGRATIONS):
            raise StoreError(
                f"schema {self.schema} is at version {version}, newer than the "
                f"{len(_MIGRATIONS)} this responseloop knows: upgrade responseloop"
            )
        for number in range(version, len(_MIGRATIONS)):
            for statement in _MIGRATIONS[number].format(schema=schema).split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                f"INSERT INTO {schema}.schema_version (version) VALUES (%s)", (number + 1,)
            )


def _conversation_record(conversation_id: str, row: tuple[Any, ...]) -> ConversationRecord:
    caller, created_at, metadata, next_position, active = row
    return ConversationRecord(conversation_id, caller, created_at, metadata, next_position, active)


class _Statements:
    """Every statement of the store, one round trip each, for one schema."""

    def __init__(self, schema: str) -> None:
        responses, steps, events = f"{schema}.responses", f"{schema}.steps", f"{schema}.events"
        # A fenced write holds only while its writer holds the lease; in an UPDATE's own
        # WHERE the condition is re-checked on the row as a concurrent claim left it.
        fenced = "(%(fence)s::text IS NULL OR lease_holder = %(fence)s)"
        self.create = (
            f"INSERT INTO {responses}"
            " (id, request, model, caller, status, created_at, response, store, idle_since)"
            " VALUES (%(id)s, %(request)s::json, %(model)s, %(caller)s, %(status)s,"
            f" %(created_at)s, %(response)s::json, %(store)s, {_NOW})"
            " ON CONFLICT (id) DO NOTHING RETURNING 1"
        )
        self.get = (
            "SELECT request, model, caller, status, created_at, response, store"
            f" FROM {responses} WHERE id = %(id)s"
        )
        # A store=False response is deleted instead of finished (steps go by cascade).
        self.finish = (
            f"WITH finalised AS (UPDATE {responses} SET status = %(status)s,"
            f" response = %(response)s::json WHERE id = %(id)s AND store AND {fenced}"
            " RETURNING 1),"
            f" dropped AS (DELETE FROM {responses} WHERE id = %(id)s AND NOT store"
            f" AND {fenced} RETURNING 1)"
            f" SELECT EXISTS (SELECT 1 FROM {responses} WHERE id = %(id)s),"
            " EXISTS (SELECT 1 FROM finalised) OR EXISTS (SELECT 1 FROM dropped)"
        )
        self.reopen = (
            f"WITH reopened AS (UPDATE {responses} SET status = %(status)s,"
            f" response = %(response)s::json WHERE id = %(id)s AND {fenced} RETURNING 1)"
            f" SELECT EXISTS (SELECT 1 FROM {responses} WHERE id = %(id)s),"
            " EXISTS (SELECT 1 FROM reopened)"
        )
        self.delete = f"DELETE FROM {responses} WHERE id = %(id)s RETURNING 1"
        # Row locking serialises concurrent claims: the loser re-checks the row as the
        # winner left it, sees a live lease held by someone else, and changes nothing.
        self.claim = (
            f"WITH now AS (SELECT {_NOW} AS t),"
            f" claimed AS (UPDATE {responses} SET lease_holder = %(claimant)s,"
            " lease_expires = (SELECT t FROM now) + %(lease)s"
            " WHERE id = %(id)s AND (lease_holder IS NULL OR lease_holder = %(claimant)s"
            " OR lease_expires <= (SELECT t FROM now)) RETURNING 1)"
            " SELECT EXISTS (SELECT 1 FROM claimed),"
            f" EXISTS (SELECT 1 FROM {responses} WHERE id = %(id)s)"
        )
        self.release = (
            f"UPDATE {responses} SET lease_holder = NULL, lease_expires = NULL,"
            " idle_since = NULL WHERE id = %(id)s AND lease_holder = %(claimant)s"
        )
        # The status list matches the partial index's, so only live rows are read.
        self.expired = (
            "SELECT id FROM (SELECT id, CASE WHEN lease_holder IS NOT NULL THEN lease_expires"
            " ELSE coalesce(idle_since + %(grace)s, '-infinity'::float8) END AS lapse"
            f" FROM {responses} WHERE status IN ('queued', 'in_progress')) AS live"
            f" WHERE lapse <= {_NOW} ORDER BY lapse LIMIT %(limit)s"
        )
        self.request_cancel = (
            f"UPDATE {responses} SET cancel_requested = true WHERE id = %(id)s RETURNING 1"
        )
        self.cancels_requested = (
            f"SELECT id FROM {responses} WHERE id = ANY(%(ids)s) AND cancel_requested"
        )
        # The counter update and the inserts are one statement, hence one transaction: the
        # response row's lock orders concurrent inserts, and a failed insert gives its
        # numbers back, so sequences have no gaps. The counter (the CTE ``seq``) moves by
        # the number of steps and each takes its place in the order given (WITH
        # ORDINALITY); both step-recording statements share this insert.
        inserted = (
            f"inserted AS (INSERT INTO {steps}"
            " (id, response_id, scope, sequence, prev_step_id, kind, state, request)"
            " SELECT given.id, %(response_id)s, %(scope)s,"
            " seq.last_sequence - %(count)s + given.ord, given.prev, given.kind, %(state)s,"
            " given.request::json FROM seq,"
            " unnest(%(ids)s::text[], %(prevs)s::text[], %(kinds)s::text[], %(requests)s::text[])"
            " WITH ORDINALITY AS given(id, prev, kind, request, ord) RETURNING sequence)"
        )
        self.record_steps = (
            f"WITH seq AS (UPDATE {responses} SET last_sequence = last_sequence + %(count)s"
            f" WHERE id = %(response_id)s AND {fenced} RETURNING last_sequence),"
            f" {inserted}"
            " SELECT (SELECT min(sequence) FROM inserted),"
            f" EXISTS (SELECT 1 FROM {responses} WHERE id = %(response_id)s)"
        )
        # The response row is locked first (FOR UPDATE waits for a concurrent claim and
        # re-checks the holder on the row it left), the step is completed only under that
        # lock, and the counter moves and the steps go in only when the step was completed:
        # one statement, so all of it or none. The trailing sub-selects see the state
        # before the statement, telling a missing response, a lost lease, a missing step
        # and a refused move apart.
        self.complete_and_record_steps = (
            f"WITH lease AS (SELECT 1 FROM {responses} WHERE id = %(response_id)s"
            f" AND {fenced} FOR UPDATE),"
            f" moved AS (UPDATE {steps} SET state = 'completed',"
            " response = %(response)s::json, error = NULL"
            " WHERE response_id = %(response_id)s AND id = %(completed)s"
            " AND state = ANY(%(allowed)s) AND EXISTS (SELECT 1 FROM lease) RETURNING 1),"
            f" seq AS (UPDATE {responses} SET last_sequence = last_sequence + %(count)s"
            " WHERE id = %(response_id)s AND EXISTS (SELECT 1 FROM moved)"
            " RETURNING last_sequence),"
            f" {inserted}"
            " SELECT (SELECT min(sequence) FROM inserted),"
            f" EXISTS (SELECT 1 FROM {responses} WHERE id = %(response_id)s),"
            " EXISTS (SELECT 1 FROM lease), EXISTS (SELECT 1 FROM moved),"
            f" (SELECT state FROM {steps} WHERE response_id = %(response_id)s"
            " AND id = %(completed)s)"
        )
        # The sub-select sees the state before this statement: when nothing moved, it says
        # whether the step is missing or in a state that forbids the move.
        move = (
            "{lease} moved AS (UPDATE {steps} SET state = %(state)s,"
            " response = %(response)s::json, error = %(error)s::json"
            " WHERE response_id = %(response_id)s AND id = %(id)s"
            " AND state = ANY(%(allowed)s){guard} RETURNING 1)"
            " SELECT EXISTS (SELECT 1 FROM moved),"
            " (SELECT state FROM {steps} WHERE response_id = %(response_id)s AND id = %(id)s),"
            " {held}"
        )
        self.move = move.format(lease="WITH", steps=steps, guard="", held="true")
        # FOR SHARE waits for a concurrent claim and re-checks the holder on the row it
        # left, so a takeover and a fenced move are ordered one way or the other.
        self.move_fenced = move.format(
            lease=f"WITH lease AS (SELECT 1 FROM {responses} WHERE id = %(response_id)s"
            " AND lease_holder = %(fence)s FOR SHARE),",
            steps=steps,
            guard=" AND EXISTS (SELECT 1 FROM lease)",
            held="EXISTS (SELECT 1 FROM lease)",
        )
        append = (
            "WITH lease AS (SELECT 1 FROM {responses} WHERE id = %(id)s{guard}),"
            " appended AS (INSERT INTO {events} (response_id, sequence, event)"
            " SELECT %(id)s, n, e FROM unnest(%(numbers)s::bigint[], %(events)s::text[])"
            " AS x (n, e) WHERE EXISTS (SELECT 1 FROM lease)"
            " ON CONFLICT DO NOTHING RETURNING 1)"
            " SELECT EXISTS (SELECT 1 FROM {responses} WHERE id = %(id)s),"
            " EXISTS (SELECT 1 FROM lease)"
        )
        self.append = append.format(responses=responses, events=events, guard="")
        self.append_fenced = append.format(
            responses=responses, events=events, guard=" AND lease_holder = %(fence)s FOR SHARE"
        )
        # One row of NULLs for a response without such events; none for no response.
        self.events = (
            f"SELECT e.sequence, e.event FROM {responses} AS r LEFT JOIN {events} AS e"
            " ON e.response_id = r.id AND e.sequence > %(after)s"
            " WHERE r.id = %(id)s ORDER BY e.sequence LIMIT %(limit)s"
        )
        approvals = f"{schema}.approval_claims"
        self.claim_approvals = (
            f"INSERT INTO {approvals} (caller, approval_request_id, response_id)"
            " SELECT %(caller)s, x, %(response)s FROM unnest(%(ids)s::text[]) AS x ORDER BY x"
            " ON CONFLICT DO NOTHING RETURNING approval_request_id"
        )
        self.approval_owners = (
            f"SELECT approval_request_id, response_id FROM {approvals}"
            " WHERE caller = %(caller)s AND approval_request_id = ANY(%(ids)s::text[])"
        )
        conversations = f"{schema}.conversations"
        entries = f"{schema}.conversation_entries"
        hidden = f"{schema}.conversation_hidden"
        record = "caller, created_at, metadata, next_position, active_response"
        self.create_conversation = (
            f"INSERT INTO {conversations} (id, caller, created_at, metadata)"
            " VALUES (%(id)s, %(caller)s, %(created_at)s, %(metadata)s::json)"
            " ON CONFLICT (id) DO NOTHING RETURNING 1"
        )
        self.get_conversation = f"SELECT {record} FROM {conversations} WHERE id = %(id)s"
        self.update_conversation = (
            f"UPDATE {conversations} SET metadata = %(metadata)s::json WHERE id = %(id)s"
            f" RETURNING {record}"
        )
        self.delete_conversation = f"DELETE FROM {conversations} WHERE id = %(id)s RETURNING 1"
        # One statement, so one snapshot: the record, its entries and its hidden ids agree.
        self.list_conversation = (
            f"SELECT {record},"
            " (SELECT json_agg(json_build_array(e.position, e.response_id, e.item)"
            f" ORDER BY e.position) FROM {entries} AS e WHERE e.conversation_id = c.id),"
            f" (SELECT array_agg(h.item_id) FROM {hidden} AS h WHERE h.conversation_id = c.id)"
            f" FROM {conversations} AS c WHERE c.id = %(id)s"
        )
        # In use: its latest turn's response exists and has not ended (and is not the
        # caller's own, %(response)s).
        self.lock_conversation = (
            "SELECT c.next_position, c.active_response,"
            " c.active_response IS NOT NULL"
            " AND c.active_response IS DISTINCT FROM %(response)s::text"
            f" AND EXISTS (SELECT 1 FROM {responses} AS r WHERE r.id = c.active_response"
            " AND r.status IN ('queued', 'in_progress'))"
            f" FROM {conversations} AS c WHERE c.id = %(id)s FOR UPDATE OF c"
        )
        self.append_items = (
            "WITH appended AS ("
            f"INSERT INTO {entries} (conversation_id, position, item_id, item)"
            " SELECT %(id)s, %(first)s + x.n - 1, x.item_id, x.item::json"
            " FROM unnest(%(item_ids)s::text[], %(items)s::text[]) WITH ORDINALITY"
            " AS x (item_id, item, n) RETURNING 1)"
            f" UPDATE {conversations} SET next_position = %(first)s"
            " + (SELECT count(*) FROM appended) WHERE id = %(id)s"
        )
        self.begin_turn = (
            "WITH turn AS ("
            f"INSERT INTO {entries} (conversation_id, position, response_id)"
            " VALUES (%(id)s, %(position)s, %(response)s) RETURNING 1)"
            f" UPDATE {conversations} SET next_position = %(position)s + 1,"
            " active_response = %(response)s WHERE id = %(id)s"
            " AND EXISTS (SELECT 1 FROM turn)"
        )
        # Removes an added item, else hides a turn's item; no row for no conversation.
        self.delete_conversation_item = (
            f"WITH conv AS (SELECT id FROM {conversations} WHERE id = %(id)s),"
            f" removed AS (DELETE FROM {entries} WHERE conversation_id = %(id)s"
            " AND item_id = %(item_id)s AND EXISTS (SELECT 1 FROM conv) RETURNING 1),"
            f" hid AS (INSERT INTO {hidden} (conversation_id, item_id)"
            " SELECT id, %(item_id)s FROM conv WHERE NOT EXISTS (SELECT 1 FROM removed)"
            " ON CONFLICT DO NOTHING RETURNING 1)"
            " SELECT 1 FROM conv"
        )
        # One row of NULLs for a response without steps in the scope; none for no response.
        self.chain = (
            "SELECT s.id, s.kind, s.state, s.sequence, s.request, s.prev_step_id,"
            " s.response, s.error"
            f" FROM {responses} AS r LEFT JOIN {steps} AS s"
            " ON s.response_id = r.id AND s.scope = %(scope)s"
            " WHERE r.id = %(id)s ORDER BY s.sequence"
        )
