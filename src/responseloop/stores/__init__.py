"""Response stores: where responses and their steps are persisted."""

from ._memory import InMemoryStore

__all__ = ["InMemoryStore"]
