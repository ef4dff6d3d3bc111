"""``POST /v1/feedback`` end to end: the real FastAPI app and ``RouterService`` over scripted
backends, the feedback store beside the config's ledger (a SQLite file in this test's state dir,
or Redis), and the export a training command reads. Plus the decision log's buffering: no store
call on a chat request, batches in the background, a flush on close."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api.routes import create_app
from app.budget.budgets import STATE_DIR_ENV, ledger_for
from app.config import RouterConfig
from app.errors import UpstreamBadRequestError
from app.feedback import export
from app.feedback.backends import store_for
from app.feedback.service import FeedbackService
from app.feedback.store import Decision
from app.service import RouterService
from tests.conformance import assert_conforms
from tests.unit.budget_support import MISTRAL, FakeNow, make_config, make_service, scripted_backends
from tests.unit.redis_fixture import redis_url, unique_prefix  # noqa: F401 - the fixture

PROMPT = "What is Kubernetes?"
ASK = {"model": "auto:rules", "messages": [{"role": "user", "content": PROMPT}]}
KEYS = {"ROUTER_API_KEYS": "alice:sk-alice-0123,bob:sk-bob-4567", "ROUTER_ADMIN_KEYS": "ops:sk-ops-8910"}
ALICE, BOB, OPS = ({"authorization": f"Bearer {k}"} for k in ("sk-alice-0123", "sk-bob-4567", "sk-ops-8910"))


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own ledger folder: the SQLite ledger and feedback tables live in it."""
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path))
    return tmp_path


@contextmanager
def served(config: RouterConfig, **kw: Any) -> Iterator[TestClient]:
    """The app over a service whose ledger and feedback store are the config's."""
    service = make_service(config, scripted_backends(config), ledger_for(config.ledger), FakeNow(), **kw)
    with TestClient(create_app(service)) as client:
        yield client


def chat(client: TestClient, body: Mapping[str, Any] = ASK, headers: Mapping[str, str] | None = None) -> str:
    """Asks, and returns the answer's request id (its x-request-id header)."""
    response = client.post("/v1/chat/completions", json=body, headers=dict(headers or {}))
    assert response.status_code == 200, response.text
    return response.headers["x-request-id"]


def rate(client: TestClient, headers: Mapping[str, str] | None = None, **body: Any) -> Any:
    return client.post("/v1/feedback", json=body, headers=dict(headers or {}))


def error_of(response: Any, status: int, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert_conforms(response.json(), "ErrorResponse")
    error = response.json()["error"]
    assert (code is None or error["code"] == code) and (param is None or error["param"] == param), error
    return error


# --- the endpoint -----------------------------------------------------------------------------


def test_a_rated_answer_is_stored_and_exported_with_its_features_and_no_prompt(state_dir: Path) -> None:
    config = make_config()
    with served(config) as client:
        rid = chat(client)
        response = rate(client, request_id=rid, score=0.8)
        features = client.post("/v1/route", json=ASK).json()["features"]
    assert response.status_code == 200, response.text
    assert response.json() == {"request_id": rid, "score": 0.8, "model": MISTRAL, "recorded": True}
    (row,) = export.read_rows(config)
    assert row == {
        "request_id": rid,
        "model": MISTRAL,
        "strategy": "rules",
        "features": row["features"],
        "score": 0.8,
        "created_at": row["created_at"],
        "rated_at": row["rated_at"],
    }
    assert row["features"] == {**features, "metadata": []}
    assert row["created_at"] <= row["rated_at"]
    assert PROMPT not in json.dumps(row)
    assert PROMPT.encode() not in b"".join(p.read_bytes() for p in state_dir.glob("ledger.db*"))  # nor stored


def test_thumbs_up_and_down_are_one_and_zero(state_dir: Path) -> None:
    with served(make_config()) as client:
        up, down, streamed = chat(client), chat(client), chat(client, {**ASK, "stream": True})
        assert rate(client, request_id=up, rating="up").json()["score"] == 1.0
        assert rate(client, request_id=down, rating="down").json()["score"] == 0.0
        assert rate(client, request_id=streamed, score=1).json() == {
            "request_id": streamed,
            "score": 1.0,
            "model": MISTRAL,
            "recorded": True,
        }


def test_unknown_duplicate_and_failed_requests(state_dir: Path) -> None:
    config = make_config()
    backends = scripted_backends(config)
    backends["claude-opus"].outcomes = [UpstreamBadRequestError("refused")]
    service = make_service(config, backends, ledger_for(config.ledger), FakeNow())
    with TestClient(create_app(service)) as client:
        error_of(rate(client, request_id="req-never-issued", score=1), 404, "request_not_found", "request_id")
        rid = chat(client)
        assert rate(client, request_id=rid, score=1).status_code == 200
        error_of(rate(client, request_id=rid, score=0), 409, "feedback_exists", "request_id")
        failed = client.post("/v1/chat/completions", json={**ASK, "model": "claude-opus"})
        assert failed.status_code == 400
        error_of(rate(client, request_id=failed.headers["x-request-id"], score=0), 404, "request_not_found")
    assert [r["score"] for r in export.read_rows(config)] == [1.0]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"score": 1.5}, "score"),
        ({"score": -0.1}, "score"),
        ({"score": "0.5"}, "score"),
        ({"score": True}, "score"),
        ({"score": 0.5, "rating": "up"}, "rating"),
        ({}, "score"),
        ({"rating": "sideways"}, "rating"),
        ({"score": 1, "comment": "x" * 1001}, "comment"),
        ({"score": 1, "stars": 5}, "stars"),
        ({"request_id": None, "score": 1}, "request_id"),
    ],
)
def test_a_bad_body_is_a_400_naming_the_field(state_dir: Path, body: dict[str, Any], param: str) -> None:
    with served(make_config()) as client:
        rid = chat(client)
        error_of(client.post("/v1/feedback", json={"request_id": rid, **body}), 400, param=param)
        assert rate(client, request_id=rid, score=1).status_code == 200  # nothing was recorded


def test_with_auth_a_client_rates_only_its_own_answers(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    config = make_config(sections={"auth": {"enabled": True}})
    with served(config) as client:
        alices, bobs = chat(client, headers=ALICE), chat(client, headers=BOB)
        error_of(rate(client, request_id=alices, score=1), 401)
        error_of(rate(client, BOB, request_id=alices, score=0), 404, "request_not_found")
        assert rate(client, ALICE, request_id=alices, score=1).status_code == 200
        # Rated already: still unknown to bob, a duplicate to alice; an admin key may rate any answer.
        error_of(rate(client, BOB, request_id=alices, score=0), 404, "request_not_found")
        error_of(rate(client, ALICE, request_id=alices, score=0), 409, "feedback_exists")
        assert rate(client, OPS, request_id=bobs, rating="down").status_code == 200
    assert sorted(r["score"] for r in export.read_rows(config)) == [0.0, 1.0]


def test_prompt_and_comment_are_kept_only_with_log_prompts(state_dir: Path) -> None:
    quiet, logged = make_config(), make_config(sections={"logging": {"log_prompts": True}})
    with served(quiet) as client:
        rate(client, request_id=chat(client), score=1, comment=f"it answered {PROMPT!r} well")
    with served(logged) as client:
        rid = chat(client)
        rate(client, request_id=rid, score=0.5, comment="too short")
    first, second = export.read_rows(logged)
    assert "prompt" not in first and "comment" not in first
    assert second["prompt"] == PROMPT and second["comment"] == "too short"


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_decisions_and_ratings_survive_a_restart(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, backend: str
) -> None:
    ledger: dict[str, Any] = {"backend": backend}
    if backend == "redis":
        monkeypatch.setenv("REDIS_URL", request.getfixturevalue("redis_url"))
        ledger["key_prefix"] = unique_prefix("feedback")
    config = make_config(ledger=ledger)
    with served(config) as client:
        rid = chat(client)  # still buffered when the service closes: the close writes it
    with served(config) as client:
        assert rate(client, request_id=rid, rating="up").json()["model"] == MISTRAL
    with served(config) as client:
        error_of(rate(client, request_id=rid, rating="down"), 409, "feedback_exists")
    assert [(r["request_id"], r["score"]) for r in export.read_rows(config)] == [(rid, 1.0)]


def test_the_export_command_writes_jsonl(
    state_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config()
    with served(config) as client:
        ids = [chat(client) for _ in range(3)]
        for rid, score in zip(ids, (0.0, 0.5, 1.0)):
            rate(client, request_id=rid, score=score)
    out = tmp_path / "feedback.jsonl"
    config_file = Path(__file__).parents[2] / "deployments/configs/router.yaml"
    assert export.main(["--config", str(config_file), "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["request_id"], r["score"]) for r in lines] == list(zip(ids, (0.0, 0.5, 1.0)))
    fields = {"request_id", "model", "strategy", "features", "score", "created_at", "rated_at"}
    assert all(set(r) == fields for r in lines)
    assert "3 feedback rows" in capsys.readouterr().err
    assert export.main(["--config", str(config_file), "--since", "2999-01-01"]) == 0
    assert capsys.readouterr().out == ""


# --- the decision log: off the hot path ----------------------------------------------------------


class CountingStore:
    """A real store that counts the writes it is asked for."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.batches: list[list[Decision]] = []
        self.retention_s = inner.retention_s
        self.fail = 0

    async def save_decisions(self, decisions: Any) -> None:
        if self.fail:
            self.fail -= 1
            raise OSError("disk on fire")
        self.batches.append(list(decisions))
        await self.inner.save_decisions(decisions)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def counted_service() -> tuple[RouterService, CountingStore]:
    """A service whose feedback store (the config's, in the test's state dir) counts writes."""
    config = make_config()
    store = CountingStore(store_for(config.ledger))
    service = make_service(
        config,
        scripted_backends(config),
        ledger_for(config.ledger),
        FakeNow(),
        feedback=FeedbackService(store),
    )
    return service, store


async def test_answers_wait_in_memory_and_a_rating_of_a_buffered_one_works(state_dir: Path) -> None:
    service, store = counted_service()
    try:
        for i in range(20):
            await service.complete(ASK, f"req-{i}")
        assert store.batches == [] and service.feedback.decisions.pending() == 20  # no store call per request
        assert await store.decision("req-3") is None
        result = await service.feedback.rate("req-3", score=0.25)  # flushes the buffer first
        assert result == {"request_id": "req-3", "score": 0.25, "model": MISTRAL, "recorded": True}
        assert [len(b) for b in store.batches] == [20] and service.feedback.decisions.pending() == 0
        await service.complete(ASK, "req-last")
    finally:
        await service.close()
    reopened = store_for(make_config().ledger)
    try:
        assert (await reopened.decision("req-last")) is not None  # written on close
    finally:
        await reopened.close()


async def test_the_background_task_writes_batches(state_dir: Path) -> None:
    service, store = counted_service()
    log = service.feedback.decisions
    log.flush_every_s, log.batch = 60.0, 5  # only a full batch wakes it
    await service.start()
    try:
        for i in range(4):
            await service.complete(ASK, f"req-{i}")
        await asyncio.sleep(0.05)
        assert store.batches == []
        await service.complete(ASK, "req-4")
        for _ in range(100):
            if store.batches:
                break
            await asyncio.sleep(0.01)
        assert [len(b) for b in store.batches] == [5]
    finally:
        await service.close()


async def test_the_buffer_is_bounded_and_a_failing_store_loses_at_most_a_batch(state_dir: Path) -> None:
    service, store = counted_service()
    log = service.feedback.decisions
    log.max_pending = 3
    try:
        for i in range(5):
            await service.complete(ASK, f"req-{i}")
        assert list(log._pending) == ["req-2", "req-3", "req-4"]  # the oldest were dropped
        store.fail = 1
        with pytest.raises(OSError):
            await log.flush()
        assert log.pending() == 3  # kept for the next try
        await log.flush()
        assert [d.request_id for d in store.batches[0]] == ["req-2", "req-3", "req-4"]
        store.fail = 99
        await service.complete(ASK, "req-5")
        for _ in range(3):
            with pytest.raises(OSError):
                await log.flush()
        assert log.pending() == 0  # dropped after MAX_ATTEMPTS, so that nothing piles up behind it
    finally:
        store.fail = 0
        await service.close()


async def test_a_decision_log_ignores_ids_the_router_cannot_issue(state_dir: Path) -> None:
    service, _ = counted_service()
    try:
        for rid in ("ok-id", "bad\nid", "x" * 65, "ok-id"):
            await service.complete(ASK, rid)
        assert list(service.feedback.decisions._pending) == ["ok-id"]
    finally:
        await service.close()


def test_exported_ratings_fold_into_the_quality_predictors_training(state_dir: Path) -> None:
    from app.routing.quality import train
    from app.routing.quality.features import NAMES

    config = make_config()
    with served(config) as client:
        rate(client, request_id=chat(client), rating="down")
    role_of = {m: s.quality_role for m, s in config.models.items() if s.quality_role}
    (example,) = train.examples_from_feedback(export.read_rows(config), role_of)
    assert len(example.vector) == len(NAMES) and example.labels == {role_of[MISTRAL]: 0.0}
