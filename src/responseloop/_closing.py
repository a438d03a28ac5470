"""``async with`` for the package's resources that close with ``aclose()``."""

from __future__ import annotations

from types import TracebackType
from typing import Self

__all__ = ["AsyncClosing"]


class AsyncClosing:
    """Entering returns the resource (after :meth:`_enter`); leaving closes it with
    :meth:`aclose`, however the block ended."""

    async def _enter(self) -> None:
        """What entering does before the block runs (nothing unless overridden)."""

    async def aclose(self) -> None:
        """Release what the resource holds."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self._enter()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
