"""Response stores: where responses and their steps are persisted.

:class:`~responseloop.InMemoryStore` for tests and one process,
:class:`responseloop.stores.sqlite.SQLiteStore` for durable responses on one machine,
:class:`responseloop.stores.postgres.PostgresStore` (extra ``postgres``) for many workers on
many machines. Each lives in its own module, so importing one loads only its driver.
"""

__all__: list[str] = []
