"""The budget ledger's contracts, on both backends: SQLite (a file in tmp_path) and Redis
(``$REDIS_URL``, else a private ``redis-server`` for the session; skipped without one).

Each test gets its own store (a fresh file, or a unique Redis key prefix); ``store.new()`` opens
another client on the same store, as another replica would.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.budget.ledger import KeySpend, Ledger, LedgerSettings, build_ledger, day_of
from app.budget.ledger_redis import RedisLedger
from app.budget.ledger_sqlite import SQLiteLedger
from app.budget.money import from_nanos, to_nanos
from tests.unit.redis_fixture import redis_url  # noqa: F401 - the fixture

D = Decimal
DAY = "2025-06-01"
OTHER_DAY = "2025-06-02"
KEYS = ("anthropic", "total")
LIMITS = {"anthropic": D("1.00"), "total": D("1.00")}


# --- stores -----------------------------------------------------------------------------


# The Redis server: tests.unit.redis_fixture (REDIS_URL, or a private redis-server).


@dataclass
class Store:
    """One ledger store; ``new()`` opens another client on it (closed at teardown)."""

    settings: LedgerSettings
    clients: list[Ledger] = field(default_factory=list)

    def new(self) -> Ledger:
        ledger = build_ledger(self.settings)
        self.clients.append(ledger)
        return ledger


@pytest.fixture(params=["sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        settings = LedgerSettings(backend="sqlite", path=str(tmp_path / "ledger" / "spend.sqlite3"))
    else:
        url = request.getfixturevalue("redis_url")
        settings = LedgerSettings(backend="redis", redis_url=url, key_prefix=f"test-{uuid.uuid4().hex}")
    st = Store(settings)
    yield st
    for client in st.clients:
        await client.close()


@pytest.fixture
def ledger(store: Store) -> Ledger:
    return store.new()


def both(amount: str) -> dict[str, Decimal]:
    return {key: D(amount) for key in KEYS}


async def spent(ledger: Ledger, key: str = "total", day: str = DAY) -> Decimal:
    return (await ledger.spend(day)).get(key, KeySpend(D(0), D(0))).spent


# --- the helpers ------------------------------------------------------------------------


def test_day_of_uses_the_time_zone() -> None:
    now = datetime(2025, 1, 1, 23, 30, tzinfo=UTC)
    assert day_of(now, "UTC") == "2025-01-01"
    assert day_of(now, "America/New_York") == "2025-01-01"
    assert day_of(now, "Asia/Tokyo") == "2025-01-02"
    with pytest.raises(ValueError):
        day_of(datetime(2025, 1, 1), "UTC")


def test_money_is_nano_dollars_rounded_up_for_amounts() -> None:
    assert to_nanos(D("0.0000123")) == 12_300
    assert to_nanos(D("0.0000000001")) == 1  # amounts round up
    assert to_nanos(D("0.0000000019"), rounding="ROUND_FLOOR") == 1
    assert to_nanos(0.1) == 100_000_000  # floats via str
    assert from_nanos(12_300) == D("0.0000123")
    with pytest.raises(ValueError):
        to_nanos(D("NaN"))


async def test_build_ledger_picks_the_backend(tmp_path: Path) -> None:
    sqlite = build_ledger(LedgerSettings(backend="sqlite", path=str(tmp_path / "x.db")))
    assert isinstance(sqlite, SQLiteLedger)
    await sqlite.close()
    with pytest.raises(ValueError):
        build_ledger(LedgerSettings(backend="redis"))
    redis_ledger = build_ledger(LedgerSettings(backend="redis", redis_url="redis://127.0.0.1:1/0"))
    assert isinstance(redis_ledger, RedisLedger)  # connects lazily
    await redis_ledger.close()


# --- reserve / settle / release ---------------------------------------------------------


async def test_reserve_within_the_limit(ledger: Ledger) -> None:
    rid = await ledger.reserve(DAY, both("0.40"), LIMITS, ttl_s=60)
    assert rid is not None and len(rid) == 32
    assert await ledger.spend(DAY) == {key: KeySpend(D(0), D("0.4")) for key in KEYS}
    assert await ledger.reserve(DAY, both("0.60"), LIMITS, ttl_s=60) is not None  # exactly at the limit


async def test_reserve_over_the_limit_is_refused_and_changes_nothing(ledger: Ledger) -> None:
    await ledger.record(DAY, {"anthropic": D("0.50"), "total": D("0.10")})
    assert await ledger.reserve(DAY, both("0.30"), LIMITS, ttl_s=60) is not None
    before = await ledger.spend(DAY)
    # "total" would fit (0.10 + 0.30 + 0.30), "anthropic" would not (0.50 + 0.30 + 0.30): neither changes
    assert await ledger.reserve(DAY, both("0.30"), LIMITS, ttl_s=60) is None
    assert await ledger.spend(DAY) == before
    assert before["anthropic"] == KeySpend(D("0.5"), D("0.3"))


async def test_keys_without_a_limit_are_reserved_unconditionally(ledger: Ledger) -> None:
    amounts = {"self_hosted": D("50"), "total": D("0.5")}
    assert await ledger.reserve(DAY, amounts, {"total": D(1)}, ttl_s=60) is not None
    assert await ledger.reserve(DAY, amounts, {"total": D(1)}, ttl_s=60) is not None
    assert await ledger.reserve(DAY, amounts, {"total": D(1)}, ttl_s=60) is None  # total is full
    assert (await ledger.spend(DAY))["self_hosted"].reserved == D(100)


async def test_settle_replaces_the_reservation_by_the_actual_cost(ledger: Ledger) -> None:
    rid = await ledger.reserve(DAY, both("0.10"), LIMITS, ttl_s=60)
    assert rid is not None
    await ledger.settle(rid, DAY, both("0.07"))
    assert await ledger.spend(DAY) == {key: KeySpend(D("0.07"), D(0)) for key in KEYS}


async def test_release_frees_the_reservation(ledger: Ledger) -> None:
    rid = await ledger.reserve(DAY, both("1.00"), LIMITS, ttl_s=60)
    assert rid is not None
    assert await ledger.reserve(DAY, both("0.01"), LIMITS, ttl_s=60) is None
    await ledger.release(rid, DAY)
    assert await ledger.spend(DAY) == {}  # nothing spent, nothing reserved
    assert await ledger.reserve(DAY, both("1.00"), LIMITS, ttl_s=60) is not None


async def test_settle_and_release_are_idempotent(store: Store) -> None:
    first, second = store.new(), store.new()
    rid = await first.reserve(DAY, both("0.10"), LIMITS, ttl_s=60)
    assert rid is not None
    await first.settle(rid, DAY, both("0.08"))
    await first.settle(rid, DAY, both("0.08"))
    await second.settle(rid, DAY, both("0.08"))  # a retry from another replica
    await second.release(rid, DAY)  # finished already: no effect
    assert await second.spend(DAY) == {key: KeySpend(D("0.08"), D(0)) for key in KEYS}

    other = await first.reserve(DAY, both("0.10"), LIMITS, ttl_s=60)
    assert other is not None
    await first.release(other, DAY)
    await second.release(other, DAY)
    await second.settle(other, DAY, both("0.09"))  # released first: stays released
    assert await first.spend(DAY) == {key: KeySpend(D("0.08"), D(0)) for key in KEYS}


async def test_expired_reservations_stop_counting(ledger: Ledger) -> None:
    assert await ledger.reserve(DAY, both("0.90"), LIMITS, ttl_s=0.2) is not None
    assert await ledger.reserve(DAY, both("0.20"), LIMITS, ttl_s=60) is None
    await asyncio.sleep(0.35)
    assert all(s.reserved == 0 for s in (await ledger.spend(DAY)).values())
    assert await ledger.reserve(DAY, both("0.90"), LIMITS, ttl_s=60) is not None


async def test_settling_an_expired_or_unknown_reservation_records_the_actual_once(ledger: Ledger) -> None:
    rid = await ledger.reserve(DAY, both("0.50"), LIMITS, ttl_s=0.2)
    assert rid is not None
    await asyncio.sleep(0.35)
    await ledger.settle(rid, DAY, both("0.30"))
    await ledger.settle(rid, DAY, both("0.30"))
    await ledger.settle("f" * 32, DAY, both("0.01"))
    await ledger.settle("f" * 32, DAY, both("0.01"))
    assert await ledger.spend(DAY) == {key: KeySpend(D("0.31"), D(0)) for key in KEYS}


async def test_record_without_a_reservation(ledger: Ledger) -> None:
    await ledger.record(DAY, {"openai": D("0.25"), "total": D("0.25")})
    await ledger.record(DAY, {"openai": D("0.5"), "total": D("0.5")})
    assert await ledger.spend(DAY) == {
        "openai": KeySpend(D("0.75"), D(0)),
        "total": KeySpend(D("0.75"), D(0)),
    }
    assert await ledger.reserve(DAY, {"total": D("0.26")}, {"total": D(1)}, ttl_s=60) is None


async def test_many_small_settles_sum_exactly(ledger: Ledger) -> None:
    for _ in range(100):
        rid = await ledger.reserve(DAY, both("0.001"), LIMITS, ttl_s=60)
        assert rid is not None
        await ledger.settle(rid, DAY, both("0.0000123"))
    await asyncio.gather(*(ledger.record(DAY, {"vertex_ai": D("0.000000075")}) for _ in range(40)))
    spend = await ledger.spend(DAY)
    assert spend["total"] == KeySpend(D("0.00123"), D(0))
    assert spend["vertex_ai"].spent == D("0.000003")


async def test_mark_alert_is_true_once_across_clients(store: Store) -> None:
    first, second = store.new(), store.new()
    results = await asyncio.gather(
        *(client.mark_alert(DAY, "total", "80%") for _ in range(10) for client in (first, second))
    )
    assert sorted(results) == [False] * 19 + [True]
    assert await first.mark_alert(DAY, "total", "100%") is True
    assert await second.mark_alert(DAY, "anthropic", "80%") is True
    assert await second.mark_alert(OTHER_DAY, "total", "80%") is True
    assert await first.mark_alert(DAY, "total", "80%") is False


async def test_days_are_independent(ledger: Ledger) -> None:
    await ledger.record(DAY, both("1.00"))
    assert await ledger.reserve(DAY, both("0.01"), LIMITS, ttl_s=60) is None
    rid = await ledger.reserve(OTHER_DAY, both("1.00"), LIMITS, ttl_s=60)
    assert rid is not None
    await ledger.settle(rid, OTHER_DAY, both("0.5"))
    assert await spent(ledger, day=DAY) == D(1)
    assert await spent(ledger, day=OTHER_DAY) == D("0.5")
    assert await ledger.spend("2025-06-03") == {}


async def test_negative_amounts_are_rejected(ledger: Ledger) -> None:
    with pytest.raises(ValueError):
        await ledger.record(DAY, {"total": D("-0.01")})
    with pytest.raises(ValueError):
        await ledger.reserve(DAY, {"total": D("-1")}, LIMITS, ttl_s=60)


# --- concurrency ------------------------------------------------------------------------

WORST = D("0.10")
LIMIT = D("1.00")


@dataclass
class InFlight:
    """Reservations granted and not yet settled, as this process saw them."""

    now: int = 0
    peak: int = 0


async def one_request(
    ledger: Ledger, rng: random.Random, flight: InFlight, *, overrun: bool
) -> Decimal | None:
    """Reserve the worst case, "call the model", settle the actual: the actual, or None if refused."""
    rid = await ledger.reserve(DAY, both(str(WORST)), LIMITS, ttl_s=60)
    if rid is None:
        return None
    flight.now += 1
    flight.peak = max(flight.peak, flight.now)
    high = 15 if overrun else 10
    actual = D(rng.randint(5 * 1000, high * 1000)) / 100_000  # $0.05 .. $0.10 (or .. $0.15)
    await asyncio.sleep(rng.uniform(0, 0.01))
    flight.now -= 1
    await ledger.settle(rid, DAY, both(str(actual)))
    return actual


async def run_requests(
    clients: list[Ledger], n: int, seed: int, *, overrun: bool = False
) -> tuple[list[Decimal], int]:
    rng, flight = random.Random(seed), InFlight()
    results = await asyncio.gather(
        *(one_request(clients[i % len(clients)], rng, flight, overrun=overrun) for i in range(n))
    )
    return [r for r in results if r is not None], flight.peak


async def check_totals(ledger: Ledger, actuals: list[Decimal]) -> Decimal:
    spend = await ledger.spend(DAY)
    assert spend["anthropic"] == spend["total"] == KeySpend(sum(actuals, D(0)), D(0))  # none lost
    return spend["total"].spent


async def test_concurrent_reservations_never_overspend(store: Store) -> None:
    clients = [store.new() for _ in range(4)]
    actuals, peak = await run_requests(clients, 100, seed=1)
    total = await check_totals(clients[0], actuals)
    assert total <= LIMIT
    assert peak <= LIMIT / WORST  # never more worst cases in flight than fit
    # at least the first ten fit; settles below the worst case free room for a few more
    assert LIMIT / WORST <= len(actuals) <= LIMIT / D("0.05")


async def test_concurrent_overruns_overspend_by_at_most_the_overruns(store: Store) -> None:
    clients = [store.new() for _ in range(4)]
    actuals, _ = await run_requests(clients, 100, seed=2, overrun=True)
    total = await check_totals(clients[0], actuals)
    assert total <= LIMIT + sum((max(a - WORST, D(0)) for a in actuals), D(0))


async def test_sequential_overruns_overspend_by_at_most_one_worst_case(ledger: Ledger) -> None:
    granted = []
    for _ in range(20):
        rid = await ledger.reserve(DAY, both(str(WORST)), LIMITS, ttl_s=60)
        if rid is not None:
            await ledger.settle(rid, DAY, both("0.15"))
            granted.append(D("0.15"))
    total = await check_totals(ledger, granted)
    assert LIMIT < total <= LIMIT + WORST
    assert len(granted) == 7  # 6 * 0.15 + 0.10 <= 1.00 < 7 * 0.15 + 0.10


def _process_worker(settings: LedgerSettings, seed: int, barrier: Any, results: Any) -> None:
    """One replica in its own process: 25 concurrent requests on its own ledger and loop."""

    async def main() -> tuple[list[Decimal], int]:
        ledger = build_ledger(settings)
        try:
            await ledger.spend(DAY)  # connect (and create the schema) before the race
            await asyncio.to_thread(barrier.wait, 30)
            return await run_requests([ledger], 25, seed)
        finally:
            await ledger.close()

    try:
        actuals, _ = asyncio.run(main())
        results.put([str(a) for a in actuals])
    except Exception as exc:  # noqa: BLE001 - report it rather than leave the parent waiting
        results.put(f"error: {exc!r}")


@pytest.mark.slow
async def test_concurrent_processes_never_overspend(store: Store) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [
        ctx.Process(target=_process_worker, args=(store.settings, seed, barrier, results))
        for seed in range(4)
    ]
    for proc in procs:
        proc.start()
    try:
        outcomes = [await asyncio.to_thread(results.get, True, 60) for _ in procs]
    finally:
        for proc in procs:
            await asyncio.to_thread(proc.join, 30)
    assert not [o for o in outcomes if isinstance(o, str)]
    actuals = [D(a) for outcome in outcomes for a in outcome]
    total = await check_totals(store.new(), actuals)
    assert total <= LIMIT
    assert LIMIT / WORST <= len(actuals) <= LIMIT / D("0.05")


# --- durability -------------------------------------------------------------------------


async def test_spend_survives_closing_and_reopening(store: Store) -> None:
    first = store.new()
    rid = await first.reserve(DAY, both("0.10"), LIMITS, ttl_s=60)
    assert rid is not None
    await first.settle(rid, DAY, both("0.0123"))
    await first.mark_alert(DAY, "total", "50%")
    await first.close()
    store.clients.remove(first)
    again = store.new()
    assert await again.spend(DAY) == {key: KeySpend(D("0.0123"), D(0)) for key in KEYS}
    assert await again.mark_alert(DAY, "total", "50%") is False
    await again.settle(rid, DAY, both("0.0123"))  # still finished
    assert await spent(again) == D("0.0123")


def _killed_worker(settings: LedgerSettings, ready: Any) -> None:
    """Record spend, leave a short reservation behind, say so, then hang until killed."""

    async def main() -> None:
        ledger = build_ledger(settings)
        await ledger.record(DAY, both("0.42"))
        await ledger.reserve(DAY, both("0.50"), LIMITS, ttl_s=1.0)

    asyncio.run(main())
    ready.put("ready")
    time.sleep(120)


@pytest.mark.slow
async def test_spend_survives_a_killed_process(store: Store) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Queue()
    proc = ctx.Process(target=_killed_worker, args=(store.settings, ready))
    proc.start()
    try:
        assert await asyncio.to_thread(ready.get, True, 60) == "ready"
    finally:
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.to_thread(proc.join, 30)
    assert proc.exitcode == -signal.SIGKILL
    ledger = store.new()
    assert (await ledger.spend(DAY))["total"] == KeySpend(D("0.42"), D("0.5"))
    assert await ledger.reserve(DAY, both("0.10"), LIMITS, ttl_s=60) is None  # the orphan still counts
    await asyncio.sleep(1.1)  # ... until it expires
    assert (await ledger.spend(DAY))["total"] == KeySpend(D("0.42"), D(0))
    assert await ledger.reserve(DAY, both("0.58"), LIMITS, ttl_s=60) is not None


def _start_redis(port: int, data_dir: Path, args: list[str]) -> subprocess.Popen:
    import redis

    proc = subprocess.Popen(
        [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data_dir),
            *args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    try:
        for _ in range(400):
            try:
                client.ping()
                return proc
            except redis.ConnectionError:
                time.sleep(0.025)
    finally:
        client.close()
    proc.kill()
    raise AssertionError("redis-server did not start")


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server binary")
async def test_spend_survives_a_redis_restart_with_the_manifests_persistence(tmp_path: Path) -> None:
    """kuberay/redis.yaml runs Redis with these arguments on a persistent volume: a restart (a
    rescheduled pod reattaching its disk) must keep the day's spend and finished reservations."""
    manifest = yaml.safe_load_all((Path(__file__).parents[2] / "kuberay/redis.yaml").read_text())
    (redis_doc,) = [d for d in manifest if d["kind"] == "StatefulSet"]
    args = list(redis_doc["spec"]["template"]["spec"]["containers"][0]["args"])
    i = args.index("--dir")
    args = args[:i] + args[i + 2 :]  # this test's own data directory instead of the volume's
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url, day = f"redis://127.0.0.1:{port}/0", "2026-12-02"
    proc = _start_redis(port, tmp_path, args)
    try:
        ledger = RedisLedger(url, prefix="restart")
        rid = await ledger.reserve(
            day, {"anthropic": D("0.5"), "total": D("0.5")}, {"total": D("10")}, ttl_s=60
        )
        assert rid is not None
        await ledger.settle(rid, day, {"anthropic": D("0.25"), "total": D("0.25")})
        await ledger.record(day, {"self_hosted": D("0.01"), "total": D("0.01")})
        await ledger.close()
    finally:
        proc.terminate()  # SIGTERM: Redis flushes its append-only file and exits
        proc.wait(timeout=20)
    proc = _start_redis(port, tmp_path, args)
    try:
        ledger = RedisLedger(url, prefix="restart")
        spend = await ledger.spend(day)
        assert spend["anthropic"] == KeySpend(D("0.25"), D(0))
        assert spend["total"].spent == D("0.26") and spend["self_hosted"].spent == D("0.01")
        await ledger.settle(rid, day, {"anthropic": D("9"), "total": D("9")})  # finished before the restart
        assert (await ledger.spend(day))["anthropic"].spent == D("0.25")
        await ledger.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


async def test_an_operator_reset_zeroes_spend_and_clears_alerts_of_those_keys_only(ledger: Ledger) -> None:
    from app.budget import admin

    await ledger.record(DAY, {"anthropic": D("2"), "openai": D("3"), "total": D("5")})
    assert await ledger.mark_alert(DAY, "anthropic", "daily_budget_80_percent")
    assert await ledger.mark_alert(DAY, "openai", "daily_budget_80_percent")
    live = await ledger.reserve(DAY, {"anthropic": D("1")}, {}, ttl_s=60)
    assert await admin.reset(ledger, DAY, ["anthropic", "total"]) == ["anthropic", "total"]
    assert await spent(ledger, "anthropic") == 0 and await spent(ledger, "total") == 0
    assert await spent(ledger, "openai") == D("3")
    assert (await ledger.spend(DAY))["anthropic"].reserved == D(
        "1"
    )  # requests in flight still count and settle
    assert await ledger.mark_alert(DAY, "anthropic", "daily_budget_80_percent")  # can fire again
    assert not await ledger.mark_alert(DAY, "openai", "daily_budget_80_percent")
    await ledger.settle(live, DAY, {"anthropic": D("0.5")})
    assert await spent(ledger, "anthropic") == D("0.5")
    assert await admin.reset(ledger, DAY, []) == ["anthropic", "openai"]  # every key with spend
    assert all(s.spent == 0 for s in (await ledger.spend(DAY)).values())


def test_the_admin_command_shows_and_resets_the_configured_ledger(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    from app.budget import admin
    from app.budget.budgets import STATE_DIR_ENV

    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path))
    config = admin.DEFAULT_CONFIG

    async def spend_some() -> None:
        from app.budget.budgets import ledger_for
        from app.config import load_config

        ledger = ledger_for(load_config(config).ledger)
        await ledger.record(DAY, {"anthropic": D("1.5"), "total": D("1.5")})
        await ledger.close()

    asyncio.run(spend_some())
    admin.main(["show", "--day", DAY])
    assert "anthropic" in (out := capsys.readouterr().out) and "1.500000" in out and "50.00" in out
    with pytest.raises(SystemExit):
        admin.main(["reset", "--day", DAY])  # needs --yes
    admin.main(["reset", "--day", DAY, "--key", "anthropic", "--yes"])
    assert "anthropic" in capsys.readouterr().out
    admin.main(["show", "--day", DAY])
    assert "1.500000" in capsys.readouterr().out  # total kept
