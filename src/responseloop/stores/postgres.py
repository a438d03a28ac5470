"""PostgresStore: the store many workers on many machines share (extra ``postgres``)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from .._closing import AsyncClosing
from ..abc._records import ResponseRecord, ResponseStatus, ResponseUpdate
from ..abc._steps import ChainStep, RecordedStep, StepDescriptor, StepKind, StepState, StepUpdate
from ..core._steps import refused_step_move, step_move_sources
from ..exceptions import (
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
)

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
    """A :class:`~responseloop.abc.ResponseStore` in PostgreSQL, for many workers on many
    machines: any worker can resume any response, and ``GET`` works from every node.

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
        self._step_ids = step_ids or (lambda: f"step_{uuid.uuid4().hex}")
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

    async def update_response(self, response_id: str, update: ResponseUpdate) -> None:
        params = {
            "id": response_id,
            "status": update.status.value,
            "response": encode(update.response),
        }
        statement = self._sql.finish if update.finishes else self._sql.reopen
        row = await self._fetchone(statement, params)
        if row is None or not row[0]:
            raise ResponseNotFound(response_id)

    async def delete_response(self, response_id: str) -> None:
        if await self._fetchone(self._sql.delete, {"id": response_id}) is None:
            raise ResponseNotFound(response_id)

    async def claim_response(self, response_id: str, claimant: str, lease_seconds: float) -> bool:
        params = {
            "id": response_id,
            "claimant": claimant,
            "lease": float(lease_seconds),
            "now": self._clock() if self._clock is not None else None,
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

    # -- steps -----------------------------------------------------------------------------

    async def record_step(
        self,
        response_id: str,
        scope: str | None,
        prev_step_id: str | None,
        step: StepDescriptor,
    ) -> RecordedStep:
        step_id = self._step_ids()
        params = {
            "response_id": response_id,
            "id": step_id,
            "scope": _TOP if scope is None else scope,
            "prev_step_id": prev_step_id,
            "kind": step.kind.value,
            "request": encode(dict(step.request_payload)),
        }
        row = await self._fetchone(self._sql.record_step, params)
        if row is None:
            raise ResponseNotFound(response_id)
        return RecordedStep(step_id, row[0])

    async def update_step(self, response_id: str, step_id: str, update: StepUpdate) -> None:
        response, error = encode_step_update(update)
        params = {
            "response_id": response_id,
            "id": step_id,
            "state": update.state.value,
            "allowed": [state.value for state in step_move_sources(update.state)],
            "response": response,
            "error": error,
        }
        row = await self._fetchone(self._sql.move, params)
        assert row is not None
        moved, current = row
        if moved:
            return
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

    # -- machinery -------------------------------------------------------------------------

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


class _Statements:
    """Every statement of the store, one round trip each, for one schema."""

    def __init__(self, schema: str) -> None:
        responses, steps = f"{schema}.responses", f"{schema}.steps"
        self.create = (
            f"INSERT INTO {responses}"
            " (id, request, model, caller, status, created_at, response, store)"
            " VALUES (%(id)s, %(request)s::json, %(model)s, %(caller)s, %(status)s,"
            " %(created_at)s, %(response)s::json, %(store)s)"
            " ON CONFLICT (id) DO NOTHING RETURNING 1"
        )
        self.get = (
            "SELECT request, model, caller, status, created_at, response, store"
            f" FROM {responses} WHERE id = %(id)s"
        )
        # A store=False response is deleted instead of finished (steps go by cascade).
        self.finish = (
            f"WITH target AS (SELECT store FROM {responses} WHERE id = %(id)s),"
            f" finalised AS (UPDATE {responses} SET status = %(status)s,"
            " response = %(response)s::json WHERE id = %(id)s AND store RETURNING 1),"
            f" dropped AS (DELETE FROM {responses} WHERE id = %(id)s AND NOT store RETURNING 1)"
            " SELECT EXISTS (SELECT 1 FROM target)"
        )
        self.reopen = (
            f"UPDATE {responses} SET status = %(status)s, response = %(response)s::json"
            " WHERE id = %(id)s RETURNING 1"
        )
        self.delete = f"DELETE FROM {responses} WHERE id = %(id)s RETURNING 1"
        # Row locking serialises concurrent claims: the loser re-checks the row as the
        # winner left it, sees a live lease held by someone else, and changes nothing.
        self.claim = (
            "WITH now AS (SELECT coalesce(%(now)s::float8,"
            " extract(epoch FROM clock_timestamp())::float8) AS t),"
            f" claimed AS (UPDATE {responses} SET lease_holder = %(claimant)s,"
            " lease_expires = (SELECT t FROM now) + %(lease)s"
            " WHERE id = %(id)s AND (lease_holder IS NULL OR lease_holder = %(claimant)s"
            " OR lease_expires <= (SELECT t FROM now)) RETURNING 1)"
            " SELECT EXISTS (SELECT 1 FROM claimed),"
            f" EXISTS (SELECT 1 FROM {responses} WHERE id = %(id)s)"
        )
        self.release = (
            f"UPDATE {responses} SET lease_holder = NULL, lease_expires = NULL"
            " WHERE id = %(id)s AND lease_holder = %(claimant)s"
        )
        # The counter update and the insert are one statement, hence one transaction: the
        # response row's lock orders concurrent inserts, and a failed insert gives its
        # number back, so sequences have no gaps.
        self.record_step = (
            f"WITH seq AS (UPDATE {responses} SET last_sequence = last_sequence + 1"
            " WHERE id = %(response_id)s RETURNING last_sequence)"
            f" INSERT INTO {steps}"
            " (id, response_id, scope, sequence, prev_step_id, kind, state, request)"
            " SELECT %(id)s, %(response_id)s, %(scope)s, last_sequence, %(prev_step_id)s,"
            " %(kind)s, 'pending', %(request)s::json FROM seq RETURNING sequence"
        )
        # The sub-select sees the state before this statement: when nothing moved, it says
        # whether the step is missing or in a state that forbids the move.
        self.move = (
            f"WITH moved AS (UPDATE {steps} SET state = %(state)s,"
            " response = %(response)s::json, error = %(error)s::json"
            " WHERE response_id = %(response_id)s AND id = %(id)s"
            " AND state = ANY(%(allowed)s) RETURNING 1)"
            " SELECT EXISTS (SELECT 1 FROM moved),"
            f" (SELECT state FROM {steps} WHERE response_id = %(response_id)s AND id = %(id)s)"
        )
        # One row of NULLs for a response without steps in the scope; none for no response.
        self.chain = (
            "SELECT s.id, s.kind, s.state, s.sequence, s.request, s.prev_step_id,"
            " s.response, s.error"
            f" FROM {responses} AS r LEFT JOIN {steps} AS s"
            " ON s.response_id = r.id AND s.scope = %(scope)s"
            " WHERE r.id = %(id)s ORDER BY s.sequence"
        )
