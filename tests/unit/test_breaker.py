"""The circuit breaker's state machine, stepped through with a fake clock (no sleeping).

closed --(failure_threshold failures in a row)--> open
open --(timeout_seconds pass)--> half_open: at most half_open_requests probes at a time
half_open --(half_open_requests probes succeed)--> closed
half_open --(a probe fails)--> open again, its timeout counted from then
"""

from __future__ import annotations

import pytest

from app.config import CircuitBreakerConfig
from app.resilience.breaker import CLOSED, HALF_OPEN, OPEN, STATE_VALUES, BreakerBoard, CircuitBreaker

SEED = CircuitBreakerConfig(failure_threshold=5, timeout_seconds=60, half_open_requests=3)


class FakeClock:
    """A mutable monotonic clock: ``clock()`` reads it, ``clock.advance(s)`` moves it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(SEED, clock)


def fail(breaker: CircuitBreaker, times: int) -> None:
    """``times`` admitted calls that each fail."""
    for _ in range(times):
        assert breaker.allow()
        breaker.failure()


def open_breaker(breaker: CircuitBreaker) -> None:
    fail(breaker, SEED.failure_threshold)
    assert breaker.current() == OPEN


def half_open_breaker(breaker: CircuitBreaker, clock: FakeClock) -> None:
    open_breaker(breaker)
    clock.advance(SEED.timeout_seconds)
    assert breaker.current() == HALF_OPEN


# --- closed -----------------------------------------------------------------------------


def test_a_new_breaker_is_closed_and_allows(breaker: CircuitBreaker) -> None:
    assert breaker.current() == CLOSED
    assert breaker.would_allow() and breaker.allow()
    assert breaker.describe() == {"state": CLOSED, "consecutive_failures": 0}


def test_stays_closed_below_the_threshold(breaker: CircuitBreaker) -> None:
    fail(breaker, SEED.failure_threshold - 1)
    assert breaker.current() == CLOSED
    assert breaker.failures == SEED.failure_threshold - 1
    assert breaker.would_allow() and breaker.allow()


def test_opens_at_the_threshold_of_consecutive_failures(breaker: CircuitBreaker) -> None:
    fail(breaker, SEED.failure_threshold)
    assert breaker.current() == OPEN
    assert breaker.describe() == {"state": OPEN, "consecutive_failures": SEED.failure_threshold}


def test_a_success_in_between_resets_the_count(breaker: CircuitBreaker) -> None:
    fail(breaker, SEED.failure_threshold - 1)
    assert breaker.allow()
    breaker.success()
    assert breaker.failures == 0
    fail(breaker, SEED.failure_threshold - 1)
    assert breaker.current() == CLOSED  # 4 + 4 failures, but never 5 in a row
    fail(breaker, 1)
    assert breaker.current() == OPEN


def test_release_while_closed_neither_counts_nor_resets(breaker: CircuitBreaker) -> None:
    fail(breaker, 3)
    assert breaker.allow()
    breaker.release()
    assert breaker.failures == 3 and breaker.current() == CLOSED
    fail(breaker, 2)
    assert breaker.current() == OPEN


def test_a_threshold_of_one_opens_on_the_first_failure(clock: FakeClock) -> None:
    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold=1), clock)
    fail(breaker, 1)
    assert breaker.current() == OPEN


# --- open -------------------------------------------------------------------------------


def test_open_refuses_until_the_timeout_passes(breaker: CircuitBreaker, clock: FakeClock) -> None:
    open_breaker(breaker)
    for _ in range(3):
        assert not breaker.would_allow()
        assert not breaker.allow()
    clock.advance(SEED.timeout_seconds - 0.001)
    assert breaker.current() == OPEN
    assert not breaker.would_allow() and not breaker.allow()
    clock.advance(0.001)
    assert breaker.current() == HALF_OPEN
    assert breaker.would_allow()


def test_refused_calls_do_not_take_probe_slots_later(breaker: CircuitBreaker, clock: FakeClock) -> None:
    open_breaker(breaker)
    for _ in range(10):
        assert not breaker.allow()
    clock.advance(SEED.timeout_seconds)
    for _ in range(SEED.half_open_requests):
        assert breaker.allow()


def test_the_open_timeout_counts_from_the_moment_it_opened(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, SEED.failure_threshold - 1)
    clock.advance(50)  # the earlier failures' time does not count toward the open period
    fail(breaker, 1)
    clock.advance(SEED.timeout_seconds - 1)
    assert breaker.current() == OPEN
    clock.advance(1)
    assert breaker.current() == HALF_OPEN


# --- half-open --------------------------------------------------------------------------


def test_half_open_admits_at_most_the_probe_count_concurrently(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    half_open_breaker(breaker, clock)
    for _ in range(SEED.half_open_requests):
        assert breaker.would_allow()
        assert breaker.allow()
    assert breaker.probes_in_flight == SEED.half_open_requests
    assert not breaker.would_allow()
    assert not breaker.allow()
    assert breaker.current() == HALF_OPEN


def test_would_allow_does_not_take_a_probe_slot(breaker: CircuitBreaker, clock: FakeClock) -> None:
    half_open_breaker(breaker, clock)
    for _ in range(10):
        assert breaker.would_allow()
    assert breaker.probes_in_flight == 0


def test_all_probes_succeeding_closes_it(breaker: CircuitBreaker, clock: FakeClock) -> None:
    half_open_breaker(breaker, clock)
    for _ in range(SEED.half_open_requests):
        assert breaker.allow()
    for i in range(SEED.half_open_requests):
        assert breaker.current() == HALF_OPEN, f"closed after only {i} probe successes"
        breaker.success()
    assert breaker.current() == CLOSED
    assert breaker.failures == 0
    # closed again: a fresh run of failures is needed to open it
    fail(breaker, SEED.failure_threshold - 1)
    assert breaker.current() == CLOSED


def test_sequential_probes_succeeding_close_it(breaker: CircuitBreaker, clock: FakeClock) -> None:
    half_open_breaker(breaker, clock)
    for _ in range(SEED.half_open_requests - 1):
        assert breaker.allow()
        breaker.success()
        assert breaker.current() == HALF_OPEN
    assert breaker.allow()
    breaker.success()
    assert breaker.current() == CLOSED
    for _ in range(10):
        assert breaker.allow()  # no probe limit once closed


def test_a_finished_probe_frees_its_slot(breaker: CircuitBreaker, clock: FakeClock) -> None:
    half_open_breaker(breaker, clock)
    for _ in range(SEED.half_open_requests):
        assert breaker.allow()
    assert not breaker.allow()
    breaker.success()
    assert breaker.allow()


@pytest.mark.parametrize("which", [0, 1, 2])
def test_any_probe_failing_reopens_it(breaker: CircuitBreaker, clock: FakeClock, which: int) -> None:
    half_open_breaker(breaker, clock)
    for _ in range(SEED.half_open_requests):
        assert breaker.allow()
    for _ in range(which):
        breaker.success()
    breaker.failure()
    assert breaker.current() == OPEN
    assert not breaker.would_allow() and not breaker.allow()


def test_a_reopened_breaker_times_out_from_the_reopening(breaker: CircuitBreaker, clock: FakeClock) -> None:
    half_open_breaker(breaker, clock)
    clock.advance(30)  # time spent half-open before the probe fails
    assert breaker.allow()
    breaker.failure()
    assert breaker.current() == OPEN
    clock.advance(SEED.timeout_seconds - 0.5)
    assert breaker.current() == OPEN and not breaker.allow()
    clock.advance(0.5)
    assert breaker.current() == HALF_OPEN
    # and the new half-open period starts with all probe slots free and no successes carried over
    assert breaker.probes_in_flight == 0 and breaker.probe_successes == 0
    for _ in range(SEED.half_open_requests):
        assert breaker.allow()
    assert not breaker.allow()


def test_release_frees_a_probe_slot_without_counting(breaker: CircuitBreaker, clock: FakeClock) -> None:
    half_open_breaker(breaker, clock)
    for _ in range(SEED.half_open_requests):
        assert breaker.allow()
    assert not breaker.allow()
    breaker.release()
    assert breaker.current() == HALF_OPEN
    assert breaker.probe_successes == 0
    assert breaker.probes_in_flight == SEED.half_open_requests - 1
    assert breaker.allow()  # the freed slot is usable again
    # released probes never count as successes: it takes half_open_requests real successes to close
    for _ in range(SEED.half_open_requests):
        breaker.release()
    assert breaker.current() == HALF_OPEN
    for _ in range(SEED.half_open_requests):
        assert breaker.allow()
        breaker.success()
    assert breaker.current() == CLOSED


def test_release_never_makes_the_slot_count_negative(breaker: CircuitBreaker, clock: FakeClock) -> None:
    half_open_breaker(breaker, clock)
    breaker.release()
    breaker.release()
    assert breaker.probes_in_flight == 0
    for _ in range(SEED.half_open_requests):
        assert breaker.allow()
    assert not breaker.allow()


# --- disabled ---------------------------------------------------------------------------


def test_a_disabled_breaker_always_allows(clock: FakeClock) -> None:
    breaker = CircuitBreaker(CircuitBreakerConfig(enabled=False, failure_threshold=2), clock)
    for _ in range(20):
        assert breaker.would_allow()
        assert breaker.allow()
        breaker.failure()
    assert breaker.would_allow() and breaker.allow()
    board = BreakerBoard(CircuitBreakerConfig(enabled=False, failure_threshold=1), clock)
    board["m"].failure()
    assert board.unavailable_reason("m") is None


def test_a_disabled_breaker_reports_closed(clock: FakeClock) -> None:
    board = BreakerBoard(CircuitBreakerConfig(enabled=False, failure_threshold=2), clock)
    for _ in range(5):
        assert board["m"].allow()
        board["m"].failure()
    assert board["m"].current() == CLOSED
    assert board.states() == {"m": CLOSED}


# --- the board --------------------------------------------------------------------------


def test_board_makes_one_breaker_per_model_on_first_use(clock: FakeClock) -> None:
    board = BreakerBoard(SEED, clock)
    assert board.states() == {}
    assert board["a"] is board["a"]
    assert board["a"] is not board["b"]
    assert board.states() == {"a": CLOSED, "b": CLOSED}


def test_board_unavailable_reason_and_states(clock: FakeClock) -> None:
    board = BreakerBoard(SEED, clock)
    assert board.unavailable_reason("healthy") is None
    fail(board["broken"], SEED.failure_threshold)
    assert board.unavailable_reason("broken") == "circuit breaker open"
    assert board.unavailable_reason("healthy") is None
    assert board.states() == {"healthy": CLOSED, "broken": OPEN}
    clock.advance(SEED.timeout_seconds)
    assert board.unavailable_reason("broken") is None  # half-open: probes may go
    assert board.states() == {"healthy": CLOSED, "broken": HALF_OPEN}
    for _ in range(SEED.half_open_requests):
        assert board["broken"].allow()
    # every probe slot taken: planning skips it until one comes back
    assert board.unavailable_reason("broken") == "circuit breaker half_open"


def test_breakers_of_one_board_share_its_clock_and_settings(clock: FakeClock) -> None:
    board = BreakerBoard(SEED, clock)
    fail(board["a"], SEED.failure_threshold)
    clock.advance(30)
    fail(board["b"], SEED.failure_threshold)
    clock.advance(30)
    assert board.states() == {"a": HALF_OPEN, "b": OPEN}
    clock.advance(30)
    assert board.states() == {"a": HALF_OPEN, "b": HALF_OPEN}


def test_state_values_encode_the_metric() -> None:
    assert STATE_VALUES == {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}
