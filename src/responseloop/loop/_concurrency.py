"""The loop's anyio helpers: a deadline that costs nothing without a limit, and the error
that broke a fan-out of concurrent steps."""

from __future__ import annotations

import anyio

__all__ = ["deadline_scope", "first_error"]


class _NoDeadline:
    """Stands in for a cancel scope when there is no time limit: a real scope costs time
    to enter and leave, and memory for every response in flight, for nothing."""

    cancelled_caught = False

    def __enter__(self) -> _NoDeadline:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


_NO_DEADLINE = _NoDeadline()


def deadline_scope(seconds: float | None) -> anyio.CancelScope | _NoDeadline:
    """A scope that gives up after ``seconds``, or none at all without a limit."""
    return anyio.move_on_after(seconds) if seconds is not None else _NO_DEADLINE


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that broke a fan-out (siblings cancelled because of it come second)."""
    cancelled = anyio.get_cancelled_exc_class()
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return first_error(exc)
        if not isinstance(exc, cancelled):
            return exc
    return group.exceptions[0]
