"""Retry delays: exponential backoff from ``base_delay_s``, capped at ``max_delay_s``, spread by
+/- ``jitter``; a server's ``Retry-After`` honoured exactly; None ("move on to the next target")
when the wait is longer than the policy allows or than what is left of the request's deadline."""

from __future__ import annotations

import random

import pytest

from app.config import RetryConfig
from app.resilience.retry import RetryPolicy

SEED = RetryConfig(attempts=2, base_delay_s=0.25, max_delay_s=4.0, jitter=0.25)
NO_JITTER = RetryConfig(attempts=10, base_delay_s=0.25, max_delay_s=4.0, jitter=0.0)


def policy(settings: RetryConfig = SEED, r: float = 0.5) -> RetryPolicy:
    """A policy whose ``random()`` always returns ``r`` (0.5: no jitter offset)."""
    return RetryPolicy(settings, random=lambda: r)


def test_attempts_come_from_the_config() -> None:
    assert policy().attempts == 2
    assert policy(NO_JITTER).attempts == 10


def test_backoff_doubles_from_base() -> None:
    p = policy(NO_JITTER)
    assert [p.delay(n) for n in range(5)] == [0.25, 0.5, 1.0, 2.0, 4.0]


def test_backoff_is_capped_at_max() -> None:
    p = policy(NO_JITTER)
    assert [p.delay(n) for n in range(5, 12)] == [4.0] * 7


def test_a_random_of_one_half_is_no_jitter() -> None:
    p = policy(SEED, r=0.5)
    assert p.delay(0) == pytest.approx(0.25)
    assert p.delay(1) == pytest.approx(0.5)


@pytest.mark.parametrize(("r", "expected"), [(0.0, 0.25 * 0.75), (1.0, 0.25 * 1.25), (0.25, 0.25 * 0.875)])
def test_jitter_spreads_by_the_configured_fraction(r: float, expected: float) -> None:
    assert policy(SEED, r=r).delay(0) == pytest.approx(expected)


def test_jitter_stays_within_bounds_over_many_draws() -> None:
    rng = random.Random(1234)
    p = RetryPolicy(SEED, random=rng.random)
    for attempt in range(4):
        nominal = 0.25 * 2**attempt
        waits = [p.delay(attempt) for _ in range(500)]
        assert all(nominal * 0.75 <= w <= nominal * 1.25 for w in waits), attempt
        assert max(waits) - min(waits) > nominal * 0.25  # it does spread


def test_default_random_is_used_when_none_is_injected() -> None:
    waits = {RetryPolicy(SEED).delay(1) for _ in range(50)}
    assert all(0.375 <= w <= 0.625 for w in waits)
    assert len(waits) > 1


@pytest.mark.parametrize("r", [0.75, 1.0])
def test_jittered_backoff_at_the_cap_still_waits(r: float) -> None:
    p = policy(RetryConfig(attempts=10, base_delay_s=1.0, max_delay_s=4.0, jitter=0.25), r=r)
    wait = p.delay(5)  # nominal 32 s, capped at 4 s
    assert wait is not None
    assert 3.0 <= wait <= 4.0


def test_jittered_backoff_below_the_cap_waits() -> None:
    p = policy(RetryConfig(attempts=10, base_delay_s=1.0, max_delay_s=4.0, jitter=0.25), r=0.0)
    assert p.delay(5) == pytest.approx(3.0)  # capped 4 s, jittered down


# --- Retry-After ------------------------------------------------------------------------


@pytest.mark.parametrize("retry_after", [0.0, 0.5, 2.0, 3.999, 4.0])
def test_retry_after_is_honoured_exactly(retry_after: float) -> None:
    for r in (0.0, 0.5, 1.0):  # no jitter on a server's own wait
        assert policy(SEED, r=r).delay(0, retry_after) == retry_after
        assert policy(SEED, r=r).delay(1, retry_after) == retry_after


@pytest.mark.parametrize("retry_after", [4.001, 30.0, 3600.0])
def test_retry_after_over_max_delay_moves_on(retry_after: float) -> None:
    assert policy().delay(0, retry_after) is None


def test_retry_after_beyond_the_remaining_deadline_moves_on() -> None:
    p = policy()
    assert p.delay(0, 2.0, remaining=10.0) == 2.0
    assert p.delay(0, 2.0, remaining=2.5) == 2.0
    assert p.delay(0, 2.0, remaining=2.0) is None  # waiting would use up the whole deadline
    assert p.delay(0, 2.0, remaining=1.0) is None
    assert p.delay(0, 2.0, remaining=0.0) is None
    assert p.delay(0, 2.0, remaining=-1.0) is None


def test_backoff_beyond_the_remaining_deadline_moves_on() -> None:
    p = policy(NO_JITTER)
    assert p.delay(3, remaining=10.0) == 2.0
    assert p.delay(3, remaining=1.0) is None
    assert p.delay(0, remaining=0.1) is None


def test_no_remaining_means_no_deadline_limit() -> None:
    assert policy().delay(0, 3.0, remaining=None) == 3.0


@pytest.mark.parametrize("retry_after", [-5.0, -0.001])
def test_a_negative_retry_after_never_gives_a_negative_wait(retry_after: float) -> None:
    wait = policy().delay(0, retry_after)
    assert wait == 0.0


def test_full_jitter_never_gives_a_negative_wait() -> None:
    p = policy(RetryConfig(base_delay_s=0.25, max_delay_s=4.0, jitter=1.0), r=0.0)
    assert p.delay(0) == 0.0
    rng = random.Random(7)
    p = RetryPolicy(RetryConfig(base_delay_s=0.25, max_delay_s=4.0, jitter=1.0), random=rng.random)
    assert all(0.0 <= p.delay(n) <= 0.5 * 2**n for n in range(3) for _ in range(200))


def test_zero_base_delay_retries_at_once() -> None:
    assert policy(RetryConfig(base_delay_s=0.0, max_delay_s=4.0), r=1.0).delay(3) == 0.0
