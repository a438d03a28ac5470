"""Which upstream dialect the wire functions read model steps in when none is given."""

from __future__ import annotations

from ..abc._dialect import UpstreamDialect

__all__ = ["default_dialect"]


def default_dialect(dialect: UpstreamDialect | None) -> UpstreamDialect:
    """``dialect``, or Chat Completions when it is ``None``.

    The Responses wire knows no upstream format: the default is looked up when first
    needed, so importing :mod:`responseloop.openresponses` loads no dialect and the chat
    dialect (which builds on the wire's request values) can import the wire.
    """
    if dialect is not None:
        return dialect
    from ..chat._dialect import CHAT_COMPLETIONS

    return CHAT_COMPLETIONS
