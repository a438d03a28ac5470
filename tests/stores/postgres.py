"""Shared PostgreSQL setup for the store tests: the URL, reachability, a schema per run."""

from __future__ import annotations

import os
import uuid

import psycopg

from tests.conftest import require_service

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_url() -> str:
    """The test database's URL (``RESPONSELOOP_TEST_POSTGRES_URL`` or the local default)."""
    return os.environ.get("RESPONSELOOP_TEST_POSTGRES_URL", DEFAULT_URL)


def require_postgres() -> str:
    """The URL of a reachable test database; skips (or fails under CI) without one."""
    url = postgres_url()
    try:
        with psycopg.connect(url, connect_timeout=3):
            pass
    except psycopg.Error as exc:
        require_service("PostgreSQL", False, f"{url}: {exc}".strip())
    return url


def new_schema() -> str:
    """A schema name no other test run uses."""
    return f"rl_test_{uuid.uuid4().hex[:16]}"


def drop_schema(url: str, schema: str) -> None:
    """Remove a test schema and everything in it."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
