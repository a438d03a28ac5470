"""RetryPolicy arithmetic and Retry-After parsing: pure, so tested exactly."""

from __future__ import annotations

import email.utils

import pytest
from hypothesis import given
from hypothesis import strategies as st

from responseloop import RetryPolicy
from responseloop.http import retry_after_seconds

NOW = 1_800_000_000.0


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    policy = RetryPolicy(initial_backoff=0.5, multiplier=2, max_backoff=3, jitter=0)
    assert [policy.backoff(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_jitter_adds_up_to_its_bound() -> None:
    policy = RetryPolicy(initial_backoff=1, jitter=0.5)
    assert policy.backoff(1, 0.0) == 1.0
    assert policy.backoff(1, 0.5) == 1.25


@given(
    retry_number=st.integers(1, 10_000),
    fraction=st.floats(0, 1, exclude_max=True),
    initial=st.floats(0, 100),
    multiplier=st.floats(1, 100),
    cap=st.floats(0, 1000),
    jitter=st.floats(0, 10),
)
def test_backoff_is_always_within_its_bounds(
    retry_number: int, fraction: float, initial: float, multiplier: float, cap: float, jitter: float
) -> None:
    policy = RetryPolicy(
        initial_backoff=initial, multiplier=multiplier, max_backoff=cap, jitter=jitter
    )
    delay = policy.backoff(retry_number, fraction)
    assert 0 <= delay <= cap + jitter


def test_retry_after_replaces_the_backoff_within_its_bound() -> None:
    policy = RetryPolicy(max_retry_after=10)
    assert policy.delay(1, 7.0, 0.9) == 7.0
    assert policy.delay(1, 11.0) is None
    assert policy.delay(2, None, 0.0) == policy.backoff(2)


def test_no_retries_tries_once() -> None:
    assert RetryPolicy.no_retries().attempts == 1


@pytest.mark.parametrize(
    "fields",
    [
        {"attempts": 0},
        {"initial_backoff": -1},
        {"multiplier": 0.5},
        {"jitter": float("inf")},
        {"max_retry_after": float("nan")},
    ],
)
def test_nonsense_policies_are_refused(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be finite"):
        RetryPolicy(**fields)  # type: ignore[arg-type]


def test_retry_number_starts_at_one() -> None:
    with pytest.raises(ValueError, match="starts at 1"):
        RetryPolicy().backoff(0)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("3", 3.0),
        (" 1.5 ", 1.5),
        ("-2", None),
        ("nan", None),
        ("soon", None),
        (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
        (email.utils.formatdate(NOW - 30, usegmt=True), 0.0),
        ("Sun, 06 Nov 1994 08:49:37", None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(
    header: str | None, expected: float | None
) -> None:
    assert retry_after_seconds(header, NOW) == expected
