"""Random ids: a prefix and 32 hex digits."""

from __future__ import annotations

import secrets

__all__ = ["random_id"]


def random_id(prefix: str) -> str:
    """``<prefix>_<32 hex digits>``: 128 random bits, as many as a uuid4's hex carries
    (a step's id is made for every step, and ``uuid.uuid4()`` costs four times as much)."""
    return f"{prefix}_{secrets.token_hex(16)}"
