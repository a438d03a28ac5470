"""PostgresStore passes the store conformance suite against a real PostgreSQL, and keeps
the promises only a server store makes: migrations under a lock, cheap chains, and
connection loss surfaced as StoreError."""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import anyio
import psycopg
import psycopg_pool
import pytest

from responseloop import ResponseRecord
from responseloop.abc import (
    ResponseStatus,
    ResponseStore,
    ResponseUpdate,
    StepDescriptor,
    StepState,
    StepUpdate,
)
from responseloop.exceptions import LeaseLost, StoreError
from responseloop.stores.postgres import PostgresStore
from responseloop.testing import (
    ApprovalStoreConformance,
    ConversationStoreConformance,
    StepAdvancingStoreConformance,
    StepStartingStoreConformance,
    StoreConformance,
)
from tests.stores.postgres import drop_schema, new_schema, require_postgres


@pytest.fixture(scope="module")
def postgres_schema() -> Iterator[tuple[str, str]]:
    """One schema for this module's run, dropped at the end."""
    url = require_postgres()
    schema = new_schema()
    yield url, schema
    drop_schema(url, schema)


class TestPostgresStore(
    StoreConformance,
    ConversationStoreConformance,
    ApprovalStoreConformance,
    StepAdvancingStoreConformance,
    StepStartingStoreConformance,
):
    @pytest.fixture(autouse=True)
    def _database(self, postgres_schema: tuple[str, str]) -> None:
        self.url, self.schema = postgres_schema

    @contextlib.asynccontextmanager
    async def open_store(self, clock: Callable[[], float]) -> AsyncIterator[ResponseStore]:
        store = PostgresStore.from_url(self.url, schema=self.schema, max_size=4, clock=clock)
        async with store:
            yield store


async def test_workers_starting_together_migrate_once(postgres_schema: tuple[str, str]) -> None:
    url, _ = postgres_schema
    schema = new_schema()
    stores = [PostgresStore.from_url(url, schema=schema, max_size=1) for _ in range(6)]
    try:
        async with anyio.create_task_group() as group:
            for store in stores:
                group.start_soon(store.open)
        with psycopg.connect(url) as conn:
            versions = conn.execute(f'SELECT version FROM "{schema}".schema_version').fetchall()
        assert versions == [(1,), (2,), (3,), (4,)]
        await stores[0].create_response(ResponseRecord("resp_after_migration", {}))
        assert (await stores[5].get_response("resp_after_migration")).id == "resp_after_migration"
    finally:
        for store in stores:
            await store.aclose()
        drop_schema(url, schema)


async def test_a_newer_schema_is_refused(postgres_schema: tuple[str, str]) -> None:
    url, _ = postgres_schema
    schema = new_schema()
    try:
        async with PostgresStore.from_url(url, schema=schema, max_size=1):
            pass
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'INSERT INTO "{schema}".schema_version (version) VALUES (42)')
        with pytest.raises(StoreError, match="version 42"):
            async with PostgresStore.from_url(url, schema=schema, max_size=1):
                pass
    finally:
        drop_schema(url, schema)


async def test_list_chain_is_an_index_range_scan(postgres_schema: tuple[str, str]) -> None:
    url, schema = postgres_schema
    response_id = f"resp_{uuid.uuid4().hex}"
    async with PostgresStore.from_url(url, schema=schema, max_size=1) as store:
        await store.create_response(ResponseRecord(response_id, {}))
    with psycopg.connect(url) as conn:
        conn.execute("SET enable_seqscan = off")  # tiny tables would be scanned anyway
        plan = conn.execute(
            f'EXPLAIN SELECT s.id FROM "{schema}".responses AS r'
            f" LEFT JOIN \"{schema}\".steps AS s ON s.response_id = r.id AND s.scope = ''"
            " WHERE r.id = %s ORDER BY s.sequence",
            (response_id,),
        ).fetchall()
    text = "\n".join(line for (line,) in plan)
    assert "steps_chain" in text, text


async def test_connection_loss_is_a_store_error(postgres_schema: tuple[str, str]) -> None:
    url, schema = postgres_schema
    name = f"rl_loss_{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in url else "?"
    store = PostgresStore.from_url(
        f"{url}{separator}application_name={name}", schema=schema, min_size=1, max_size=1
    )
    async with store:
        await store.create_response(ResponseRecord(f"resp_{name}", {}))
        with psycopg.connect(url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(*) FROM pg_stat_activity AS a, pg_terminate_backend(a.pid) AS t"
                " WHERE a.application_name = %s AND t",
                (name,),
            ).fetchone()
        assert killed is not None
        assert killed[0] >= 1
        with pytest.raises(StoreError, match="PostgreSQL store"):
            await store.get_response(f"resp_{name}")
        # The broken connection was discarded: the next operation gets a fresh one.
        assert (await store.get_response(f"resp_{name}")).id == f"resp_{name}"


async def test_an_unreachable_server_is_a_store_error() -> None:
    store = PostgresStore.from_url(
        "postgresql://postgres@127.0.0.1:1/test?connect_timeout=1", max_size=1, timeout=1
    )
    with pytest.raises(StoreError, match="cannot open"):
        await store.open()
    await store.aclose()


async def test_a_store_that_was_never_opened_refuses_work() -> None:
    store = PostgresStore.from_url("postgresql://postgres@127.0.0.1:1/test", max_size=1)
    with pytest.raises(StoreError, match="not open"):
        await store.record_step("resp_x", None, None, StepDescriptor.model_call({}))


def test_schema_names_are_checked() -> None:
    with pytest.raises(ValueError, match="identifier"):
        PostgresStore.from_url("postgresql://localhost/test", schema='x"; DROP TABLE y; --')


def test_a_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg_pool", None)
    with pytest.raises(ImportError, match=r"responseloop\[postgres\]"):
        PostgresStore.from_url("postgresql://localhost/test")


class CountingConnection(psycopg.Connection[Any]):
    """Counts the statements sent: autocommit, so each is one round trip."""

    statements = 0

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        CountingConnection.statements += 1
        return super().execute(*args, **kwargs)


async def test_every_operation_is_one_statement(postgres_schema: tuple[str, str]) -> None:
    url, schema = postgres_schema
    pool = psycopg_pool.ConnectionPool(
        url,
        min_size=1,
        max_size=1,
        open=False,
        connection_class=CountingConnection,
        kwargs={"autocommit": True},
    )
    store = PostgresStore(pool, schema=schema, owns_pool=True)
    response_id = f"resp_{uuid.uuid4().hex}"
    steps: list[str] = []

    async def record() -> None:
        steps.append((await store.record_step(response_id, None, None, _step())).id)

    async def record_started() -> None:
        (started,) = await store.record_started_steps(response_id, None, steps[-1], [_step()])
        steps.append(started.id)

    async def complete_and_start() -> None:
        (started,) = await store.complete_and_start_steps(
            response_id, None, steps[-1], {"ok": 2}, [_step()]
        )
        steps.append(started.id)

    operations: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("create_response", lambda: store.create_response(ResponseRecord(response_id, {}))),
        ("get_response", lambda: store.get_response(response_id)),
        ("claim_response", lambda: store.claim_response(response_id, "w", 60)),
        ("record_step", record),
        (
            "update_step:processing",
            lambda: store.update_step(response_id, steps[0], StepUpdate.processing()),
        ),
        (
            "update_step:completed",
            lambda: store.update_step(response_id, steps[0], StepUpdate.completed({"ok": 1})),
        ),
        ("record_step", record),
        (
            "update_step:failed",
            lambda: store.update_step(response_id, steps[1], StepUpdate.failed({"message": "x"})),
        ),
        ("record_step", record),
        (
            "update_step:cancelled",
            lambda: store.update_step(response_id, steps[2], StepUpdate.cancelled()),
        ),
        ("record_started_steps", lambda: record_started()),
        ("complete_and_start_steps", lambda: complete_and_start()),
        ("list_chain", lambda: store.list_chain(response_id, None)),
        ("release_response", lambda: store.release_response(response_id, "w")),
        (
            "update_response",
            lambda: store.update_response(
                response_id, ResponseUpdate.finished(ResponseStatus.COMPLETED, {})
            ),
        ),
        ("delete_response", lambda: store.delete_response(response_id)),
    ]
    async with store:
        for name, operation in operations:
            before = CountingConnection.statements
            await operation()
            assert CountingConnection.statements - before == 1, name


def _step() -> StepDescriptor:
    return StepDescriptor.tool_call("t", "call_1", {})


async def test_a_sweep_reads_only_the_live_responses(postgres_schema: tuple[str, str]) -> None:
    """With 2,000 finished responses and 3 live ones the recovery query is answered from the
    partial index on the live statuses, not by reading the finished ones."""
    url, _ = postgres_schema
    schema = new_schema()
    try:
        async with PostgresStore.from_url(url, schema=schema) as store:
            for index in range(3):
                await store.create_response(ResponseRecord(f"resp_live_{index}", {}))
        plan = _plan_of_the_sweep(url, schema)
    finally:
        drop_schema(url, schema)
    assert "responses_live" in plan, plan


def _plan_of_the_sweep(url: str, schema: str) -> str:
    from responseloop.stores.postgres import _Statements

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f'INSERT INTO "{schema}".responses (id, request, status, created_at, store)'
            " SELECT 'resp_done_' || n, '{}', 'completed', 1, true"
            " FROM generate_series(1, 2000) AS n"
        )
        conn.execute(f'ANALYZE "{schema}".responses')
        statement = _Statements(f'"{schema}"').expired
        plan = conn.execute(
            f"EXPLAIN {statement}", {"grace": 60.0, "now": None, "limit": 10}
        ).fetchall()
    return " ".join(row[0] for row in plan)


async def test_advancing_waits_for_a_concurrent_takeover_and_then_writes_nothing(
    postgres_schema: tuple[str, str],
) -> None:
    """A claim by another worker, not yet committed when ``complete_and_start_steps``
    arrives, is waited for, and the write is judged by the lease it left: LeaseLost, and
    neither the completion nor the next steps land (nor a sequence number is taken)."""
    url, schema = postgres_schema
    async with PostgresStore.from_url(url, schema=schema) as store:
        response_id = f"resp_{uuid.uuid4().hex}"
        await store.create_response(ResponseRecord(response_id, {}))
        assert await store.claim_response(response_id, "a", 60)
        (model,) = await store.record_started_steps(
            response_id, None, None, [StepDescriptor.model_call({"model": "m"})], fence="a"
        )
        outcome: list[object] = []
        with psycopg.connect(url) as rival:
            rival.execute(
                f"UPDATE {schema}.responses SET lease_holder = 'b' WHERE id = %s", (response_id,)
            )

            async def advance() -> None:
                try:
                    outcome.append(
                        await store.complete_and_start_steps(
                            response_id, None, model.id, {"x": 1}, [_step()], fence="a"
                        )
                    )
                except LeaseLost as exc:
                    outcome.append(exc)

            async with anyio.create_task_group() as group:
                group.start_soon(advance)
                await _until_a_statement_waits_for_a_lock(url)
                assert outcome == []
                rival.commit()
        assert len(outcome) == 1
        assert isinstance(outcome[0], LeaseLost)
        (only,) = await store.list_chain(response_id, None)
        assert only.state is StepState.PROCESSING
        (after,) = await store.record_started_steps(response_id, None, model.id, [_step()])
        assert after.sequence == model.sequence + 1


async def _until_a_statement_waits_for_a_lock(url: str) -> None:
    """Returns once some backend of the database waits for a row lock."""
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(2000):
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            if row is not None and row[0] > 0:
                return
            await anyio.sleep(0.005)
    raise AssertionError("no statement ever waited for the rival's lock")
