"""SQLiteStore passes the store conformance suite, and keeps its data in the file."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import pytest

from responseloop import ResponseRecord
from responseloop.abc import ResponseStore, StepDescriptor, StepUpdate
from responseloop.exceptions import StoreError
from responseloop.stores.sqlite import SQLiteStore
from responseloop.testing import (
    ApprovalStoreConformance,
    ConversationStoreConformance,
    StepAdvancingStoreConformance,
    StepStartingStoreConformance,
    StoreConformance,
)


class TestSQLiteStore(
    StoreConformance,
    ConversationStoreConformance,
    ApprovalStoreConformance,
    StepAdvancingStoreConformance,
    StepStartingStoreConformance,
):
    @pytest.fixture(autouse=True)
    def _database(self, tmp_path: Path) -> None:
        self.path = tmp_path / "responses.db"

    @contextlib.asynccontextmanager
    async def open_store(self, clock: Callable[[], float]) -> AsyncIterator[ResponseStore]:
        async with SQLiteStore(self.path, clock=clock) as store:
            yield store


async def test_responses_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "responses.db"
    record = ResponseRecord("resp_durable", {"model": "m", "input": "hi"}, model="m")
    async with SQLiteStore(path) as store:
        await store.create_response(record)
        step = await store.record_step(record.id, None, None, StepDescriptor.model_call({"a": 1}))
        await store.update_step(record.id, step.id, StepUpdate.completed({"answer": "kept"}))
    async with SQLiteStore(path) as reopened:
        assert await reopened.get_response(record.id) == record
        (stored,) = await reopened.list_chain(record.id, None)
        assert stored.response_payload == {"answer": "kept"}
        assert (await reopened.record_step(record.id, None, step.id, stored_model())).sequence == 2


def stored_model() -> StepDescriptor:
    return StepDescriptor.model_call({"model": "m", "messages": []})


async def test_schema_is_versioned_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "responses.db"
    async with SQLiteStore(path):
        pass
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT version FROM responseloop_schema").fetchall() == [
            (1,),
            (2,),
            (3,),
            (4,),
        ]


async def test_a_version_1_database_migrates_and_its_orphans_are_expired(tmp_path: Path) -> None:
    """A response left ``in_progress`` by a worker of an older responseloop is found by the
    first sweep after the upgrade; a finished one is not."""
    from responseloop.stores.sqlite import _MIGRATIONS

    path = tmp_path / "responses.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(_MIGRATIONS[0])
        conn.execute("CREATE TABLE responseloop_schema (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO responseloop_schema VALUES (1)")
        for response_id, status in (("resp_orphan", "in_progress"), ("resp_done", "completed")):
            conn.execute(
                "INSERT INTO responseloop_responses (id, request, status, created_at, store)"
                " VALUES (?, '{}', ?, 1, 1)",
                (response_id, status),
            )
        conn.commit()
    async with SQLiteStore(path) as store:
        assert list(await store.expired_responses(10, unclaimed_grace=60)) == ["resp_orphan"]
        assert (await store.get_response("resp_done")).status.value == "completed"


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "responses.db"
    async with SQLiteStore(path):
        pass
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("INSERT INTO responseloop_schema (version) VALUES (99)")
    with pytest.raises(StoreError, match="schema version 99"):
        async with SQLiteStore(path):
            pass


async def test_two_stores_on_one_file_allocate_gap_free(tmp_path: Path) -> None:
    path = tmp_path / "responses.db"
    async with SQLiteStore(path) as first, SQLiteStore(path) as second:
        await first.create_response(ResponseRecord("resp_shared", {}))
        sequences: list[int] = []

        async def record(store: SQLiteStore, index: int) -> None:
            step = StepDescriptor.tool_call("t", f"call_{index}", {})
            sequences.append((await store.record_step("resp_shared", None, None, step)).sequence)

        async with anyio.create_task_group() as group:
            for index in range(40):
                group.start_soon(record, first if index % 2 else second, index)
        assert sorted(sequences) == list(range(1, 41))


async def test_a_closed_store_refuses_work(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "responses.db")
    await store.create_response(ResponseRecord("resp_1", {}))
    await store.aclose()
    with pytest.raises(StoreError, match="closed"):
        await store.get_response("resp_1")


async def test_an_unwritable_path_is_a_store_error(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "missing-directory" / "responses.db")
    with pytest.raises(StoreError, match="cannot open"):
        await store.get_response("resp_1")


def test_memory_databases_are_refused() -> None:
    with pytest.raises(ValueError, match="InMemoryStore"):
        SQLiteStore(":memory:")


async def test_a_sweep_reads_only_the_live_responses(tmp_path: Path) -> None:
    """The recovery query is answered from the partial index on the live statuses, so its
    cost does not grow with the finished responses."""
    from responseloop.stores.sqlite import _EXPIRED

    path = tmp_path / "responses.db"
    async with SQLiteStore(path):
        pass
    with contextlib.closing(sqlite3.connect(path)) as conn:
        plan = " ".join(
            str(row[-1]) for row in conn.execute(f"EXPLAIN QUERY PLAN {_EXPIRED}", (60, 0, 10))
        )
    assert "responseloop_responses_live" in plan


async def test_a_version_2_database_migrates_to_conversations(tmp_path: Path) -> None:
    """A database of the release before conversations keeps its responses, and a turn on
    a new conversation is judged against them."""
    from responseloop.abc import ConversationRecord
    from responseloop.exceptions import ConversationLocked
    from responseloop.stores.sqlite import _MIGRATIONS

    path = tmp_path / "responses.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(_MIGRATIONS[0] + _MIGRATIONS[1])
        conn.execute("CREATE TABLE responseloop_schema (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO responseloop_schema VALUES (1), (2)")
        conn.execute(
            "INSERT INTO responseloop_responses (id, request, status, created_at, store)"
            " VALUES ('resp_old', '{}', 'in_progress', 1, 1)"
        )
        conn.commit()
    async with SQLiteStore(path) as store:
        await store.create_conversation(ConversationRecord("conv_new"), [])
        await store.begin_conversation_turn("conv_new", "resp_old", expected_position=0)
        with pytest.raises(ConversationLocked):
            await store.add_conversation_items("conv_new", [{"id": "msg_1"}])
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT max(version) FROM responseloop_schema").fetchone() == (4,)


async def test_a_version_3_database_migrates_to_approval_claims(tmp_path: Path) -> None:
    """A database of the release before approval claims keeps its responses and
    conversations, and claims approvals once migrated."""
    from responseloop.stores.sqlite import _MIGRATIONS

    path = tmp_path / "responses.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript("".join(_MIGRATIONS[:3]))
        conn.execute("CREATE TABLE responseloop_schema (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO responseloop_schema VALUES (1), (2), (3)")
        conn.execute(
            "INSERT INTO responseloop_responses (id, request, status, created_at, store)"
            " VALUES ('resp_old', '{}', 'completed', 1, 1)"
        )
        conn.commit()
    async with SQLiteStore(path) as store:
        assert (await store.get_response("resp_old")).status.value == "completed"
        assert await store.claim_approvals("c", ["mcpr_1"], "resp_old") == {"mcpr_1": "resp_old"}
        assert await store.claim_approvals("c", ["mcpr_1"], "resp_new") == {"mcpr_1": "resp_old"}
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT max(version) FROM responseloop_schema").fetchone() == (4,)
