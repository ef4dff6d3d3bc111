"""The feedback store's contracts, on both backends: SQLite (a file in tmp_path) and Redis
(``$REDIS_URL``, else a private ``redis-server``; skipped without one). ``store.new()`` opens
another client on the same store, as another replica (or a restarted one) would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from app.budget.ledger import LedgerSettings
from app.feedback.backends import build_store
from app.feedback.store import Decision, FeedbackStore, Rating, is_request_id
from app.feedback.store_redis import RedisFeedbackStore
from app.feedback.store_sqlite import SQLiteFeedbackStore
from tests.unit.redis_fixture import redis_url, unique_prefix  # noqa: F401 - the fixture

T0 = 1_750_000_000.0
MISTRAL = "mistral-7b-instruct"
FEATURES = {"tokens": 12, "complexity": 0.2, "task": "general", "metadata": []}


@dataclass
class Store:
    settings: LedgerSettings
    clients: list[FeedbackStore] = field(default_factory=list)

    def new(self) -> FeedbackStore:
        store = build_store(self.settings)
        self.clients.append(store)
        return store


@pytest.fixture(params=["sqlite", "redis"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        settings = LedgerSettings(backend="sqlite", path=str(tmp_path / "state" / "ledger.db"))
    else:
        url = request.getfixturevalue("redis_url")
        settings = LedgerSettings(backend="redis", redis_url=url, key_prefix=unique_prefix("feedback"))
    st = Store(settings)
    yield st
    for client in st.clients:
        await client.close()


@pytest.fixture
def store(stores: Store) -> FeedbackStore:
    return stores.new()


def decision(
    request_id: str,
    client: str | None = None,
    *,
    at: float = T0,
    model: str = MISTRAL,
    prompt: str | None = None,
) -> Decision:
    return Decision(request_id, model, "auto", at, dict(FEATURES), client, prompt)


def rating(request_id: str, score: float = 1.0, *, at: float = T0 + 60, client: str | None = None) -> Rating:
    return Rating(request_id, score, at, client)


async def rows(store: FeedbackStore, **kw: float) -> list[dict]:
    return [row.as_dict() async for row in store.training_rows(**kw)]


async def test_build_store_picks_the_backend(tmp_path: Path) -> None:
    sqlite = build_store(LedgerSettings(backend="sqlite", path=str(tmp_path / "x.db")))
    assert isinstance(sqlite, SQLiteFeedbackStore)
    await sqlite.close()
    with pytest.raises(ValueError):
        build_store(LedgerSettings(backend="redis"))
    redis_store = build_store(LedgerSettings(backend="redis", redis_url="redis://127.0.0.1:1/0"))
    assert isinstance(redis_store, RedisFeedbackStore)  # connects lazily
    await redis_store.close()


def test_request_ids_are_what_the_middleware_can_issue() -> None:
    assert is_request_id("req-0123") and is_request_id("x" * 64) and is_request_id("café")
    assert not any(map(is_request_id, ["", "x" * 65, "a\nb", "\ud800", "日本"]))


async def test_a_rating_is_recorded_once_and_exported_with_its_decision(stores: Store) -> None:
    first, other = stores.new(), stores.new()
    await first.save_decisions([decision("r1", prompt="What is Kubernetes?")])
    added = await other.add_rating(rating("r1", 0.75), owner=None)
    assert added.status == "recorded" and added.decision == decision("r1", prompt="What is Kubernetes?")
    assert (await first.add_rating(rating("r1", 0.1), owner=None)).status == "duplicate"
    assert await rows(stores.new()) == [
        {
            "request_id": "r1",
            "model": MISTRAL,
            "strategy": "auto",
            "features": FEATURES,
            "score": 0.75,
            "created_at": T0,
            "rated_at": T0 + 60,
            "prompt": "What is Kubernetes?",
        }
    ]


async def test_an_unknown_id_is_refused_and_changes_nothing(store: FeedbackStore) -> None:
    assert (await store.add_rating(rating("nobody"), owner=None)).status == "unknown"
    assert await rows(store) == []


async def test_the_first_decision_under_an_id_wins(store: FeedbackStore) -> None:
    await store.save_decisions([decision("r1", "alice", model="claude-opus"), decision("r1", "mallory")])
    await store.save_decisions([decision("r1", "mallory", model="gpt")])
    assert await store.decision("r1") == decision("r1", "alice", model="claude-opus")
    assert await store.decision("r2") is None


async def test_an_owner_rates_only_its_own_decisions_and_others_look_unknown(store: FeedbackStore) -> None:
    await store.save_decisions([decision("alice-1", "alice"), decision("bob-1", "bob"), decision("open-1")])
    assert (await store.add_rating(rating("alice-1"), owner="bob")).status == "unknown"
    assert (await store.add_rating(rating("open-1"), owner="bob")).status == "unknown"
    assert (await store.add_rating(rating("bob-1"), owner="bob")).status == "recorded"
    assert (await store.add_rating(rating("alice-1"), owner="alice")).status == "recorded"
    # Rated already: a duplicate for its owner, still unknown to anyone else.
    assert (await store.add_rating(rating("alice-1"), owner="alice")).status == "duplicate"
    assert (await store.add_rating(rating("alice-1"), owner="bob")).status == "unknown"
    assert (await store.add_rating(rating("alice-1"), owner=None)).status == "duplicate"


async def test_concurrent_ratings_of_one_answer_record_exactly_one(stores: Store) -> None:
    replicas = [stores.new() for _ in range(4)]
    await replicas[0].save_decisions([decision("r1")])
    results = await asyncio.gather(
        *(replicas[i % 4].add_rating(rating("r1", i / 20), owner=None) for i in range(20))
    )
    assert sorted(r.status for r in results).count("recorded") == 1
    assert len(await rows(replicas[1])) == 1


async def test_rows_are_read_in_pages_oldest_first_ties_included(store: FeedbackStore) -> None:
    ids = [f"r{i}" for i in range(7)]
    await store.save_decisions([decision(rid) for rid in ids])
    # Three share one rated_at: a page boundary falls among them with batch=2.
    times = [T0 + 1, T0 + 5, T0 + 5, T0 + 5, T0 + 2, T0 + 9, T0 + 3]
    for rid, at in zip(ids, times):
        await store.add_rating(rating(rid, at=at), owner=None)
    paged = await rows(store, batch=2)
    assert sorted(r["request_id"] for r in paged) == ids
    assert [r["rated_at"] for r in paged] == sorted(times)
    assert [r["request_id"] for r in await rows(store, since=T0 + 5)] == [
        r["request_id"] for r in paged if r["rated_at"] >= T0 + 5
    ]


async def test_prune_drops_what_is_past_retention(store: FeedbackStore) -> None:
    await store.save_decisions([decision("old", at=T0), decision("new", at=T0 + 160)])
    await store.add_rating(rating("old", at=T0 + 10), owner=None)
    await store.add_rating(rating("new", at=T0 + 200), owner=None)
    await store.prune(T0 + 150 + store.retention_s)
    assert [r["request_id"] for r in await rows(store)] == ["new"]
    if isinstance(store, SQLiteFeedbackStore):  # Redis drops decisions by key expiry
        assert await store.decision("old") is None and await store.decision("new") is not None


async def test_text_no_store_could_encode_is_kept_escaped(store: FeedbackStore) -> None:
    await store.save_decisions([decision("r1", prompt="lone \ud800 surrogate, newline\n and 日本")])
    await store.add_rating(Rating("r1", 0.5, T0, "bob", "a comment \udfff"), owner=None)
    (row,) = await rows(store)
    assert row["prompt"] == "lone \ud800 surrogate, newline\n and 日本"
    assert row["comment"] == "a comment \udfff"


async def test_redis_keys_expire_after_the_retention(redis_url: str) -> None:  # noqa: F811
    store = RedisFeedbackStore(redis_url, unique_prefix("feedback"), retention_s=3600)
    try:
        await store.save_decisions([decision("r1")])
        await store.add_rating(rating("r1"), owner=None)
        prefix = store.prefix
        ttls = [await store.client.ttl(f"{prefix}:{name}") for name in ("decision:r1", "rating:r1", "rated")]
        assert all(0 < ttl <= 3600 for ttl in ttls), ttls
    finally:
        await store.client.delete(*[k async for k in store.client.scan_iter(f"{store.prefix}:*")])
        await store.close()
