"""Response stores: where responses and their steps are persisted.

:class:`InMemoryStore` for tests and one process, :class:`SQLiteStore` for durable
responses on one machine, :class:`PostgresStore` for many workers on many machines.
"""

from ._memory import InMemoryStore
from ._postgres import PostgresStore
from ._sqlite import SQLiteStore

__all__ = ["InMemoryStore", "PostgresStore", "SQLiteStore"]
