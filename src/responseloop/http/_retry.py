"""RetryPolicy: when and how long :class:`~responseloop.HttpxClient` waits before trying again.

Pure: the policy is a frozen value and its arithmetic takes every input (the attempt
number, the random draw) as an argument, so it is tested exactly. Reading the
``Retry-After`` header is :func:`responseloop.http.retry_after_seconds`.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

__all__ = ["RETRYABLE_STATUSES", "RetryPolicy"]

RETRYABLE_STATUSES: frozenset[int] = frozenset({429, 500, 502, 503, 504})
"""Statuses worth another try: rate limits and transient server or gateway failures."""


def _at_least(minimum: float) -> Any:
    def check(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
        if not value >= minimum or value == math.inf:
            raise ValueError(f"{attribute.name} must be finite and >= {minimum}, got {value!r}")

    return check


def _statuses(value: frozenset[int] | set[int] | tuple[int, ...]) -> frozenset[int]:
    return frozenset(value)


@attrs.frozen
class RetryPolicy:
    """How an upstream call is retried after a 429, a 5xx gateway status or a lost connection.

    The n-th retry (n = 1, 2, …) waits ``min(max_backoff, initial_backoff * multiplier**(n-1))``
    plus a random jitter of up to ``jitter`` seconds. When the upstream sends ``Retry-After``
    (seconds or an HTTP date), that wait is used instead, unless it is longer than
    ``max_retry_after``: then the call gives up at once with the upstream's error, since
    retrying sooner than asked would only be refused again.

    Attributes:
        attempts: tries in all, the first included (1 disables retries).
        initial_backoff: seconds before the first retry.
        max_backoff: the longest computed wait, in seconds.
        multiplier: how much each wait grows over the previous one.
        jitter: the most random seconds added to a computed wait, so that many clients
            failing together do not retry in lockstep.
        max_retry_after: the longest ``Retry-After`` the client will wait, in seconds.
        retry_statuses: the HTTP statuses that are retried.
    """

    attempts: int = attrs.field(default=3, validator=_at_least(1))
    initial_backoff: float = attrs.field(default=0.5, validator=_at_least(0))
    max_backoff: float = attrs.field(default=8.0, validator=_at_least(0))
    multiplier: float = attrs.field(default=2.0, validator=_at_least(1))
    jitter: float = attrs.field(default=0.25, validator=_at_least(0))
    max_retry_after: float = attrs.field(default=60.0, validator=_at_least(0))
    retry_statuses: frozenset[int] = attrs.field(default=RETRYABLE_STATUSES, converter=_statuses)

    @classmethod
    def no_retries(cls) -> RetryPolicy:
        """A policy that tries once and surfaces the first failure."""
        return cls(attempts=1)

    def backoff(self, retry_number: int, random_fraction: float = 0.0) -> float:
        """Seconds to wait before retry ``retry_number`` (1 for the first retry), given a
        uniform random draw in ``[0, 1)`` for the jitter."""
        if retry_number < 1:
            raise ValueError(f"retry_number starts at 1, got {retry_number}")
        # Cap the exponent before raising to the power: a huge attempt count must not
        # overflow a float on the way to being clamped by max_backoff.
        exponent = min(retry_number - 1, 1024)
        try:
            computed = self.initial_backoff * self.multiplier**exponent
        except OverflowError:
            computed = math.inf
        return min(self.max_backoff, computed) + self.jitter * random_fraction

    def delay(
        self, retry_number: int, retry_after: float | None, random_fraction: float = 0.0
    ) -> float | None:
        """Seconds to wait before retry ``retry_number``, or ``None`` to give up now because
        the upstream asked for a longer wait than ``max_retry_after``."""
        if retry_after is None:
            return self.backoff(retry_number, random_fraction)
        if retry_after > self.max_retry_after:
            return None
        return max(0.0, retry_after)
