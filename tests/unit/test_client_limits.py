"""Per-key limits: requests and tokens per minute and a daily budget, shared by every replica
through the ledger; over a limit, a 429 with Retry-After; /v1/budget shows a key its own spend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import prometheus_client
import pytest
import yaml
from fastapi.testclient import TestClient

from app.api.routes import create_app
from app.budget.alerts import AlertSender
from app.budget.budgets import Budgets
from app.budget.ledger import LedgerSettings, build_ledger
from app.budget.pricing import Pricer
from app.config import parse_config
from app.observability.metrics import Metrics
from tests.conformance import assert_conforms
from tests.support.wiring import make_service

CONFIG = Path(__file__).parents[2] / "deployments/configs/router.yaml"
ASK = {
    "model": "auto:rules",
    "messages": [{"role": "user", "content": "What is Kubernetes?"}],
    "max_tokens": 10,
}
ALICE = {"authorization": "Bearer sk-alice"}
BOB = {"authorization": "Bearer sk-bob"}
OPS = {"authorization": "Bearer sk-ops"}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 26, 12, 0, 10, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def replica(tmp_path: Path, monkeypatch, clock: Clock, auth: dict) -> TestClient:
    """One ingress replica: its own service and ledger client, on the shared ledger file."""
    raw = yaml.safe_load(CONFIG.read_text())
    raw["auth"] = {"enabled": True, **auth}
    config = parse_config(raw)
    monkeypatch.setenv("ROUTER_API_KEYS", "alice:sk-alice,bob:sk-bob")
    monkeypatch.setenv("ROUTER_ADMIN_KEYS", "ops:sk-ops")
    metrics = Metrics(prometheus_client.CollectorRegistry())
    ledger = build_ledger(LedgerSettings(backend="sqlite", path=str(tmp_path / "ledger.db")))
    service = make_service(
        config,
        metrics=metrics,
        budgets=Budgets(
            config,
            Pricer(config.models),
            ledger,
            metrics,
            AlertSender(config.cost_rules.webhook, metrics, env={}),
            now=clock,
        ),
    )
    service.quota.now = clock
    return TestClient(create_app(service))


def test_requests_per_minute_across_two_replicas(tmp_path, monkeypatch):
    clock = Clock()
    auth = {"limits": {"requests_per_minute": 3}}
    with (
        replica(tmp_path, monkeypatch, clock, auth) as one,
        replica(tmp_path, monkeypatch, clock, auth) as two,
    ):
        statuses = [
            (one if i % 2 else two).post("/v1/chat/completions", json=ASK, headers=ALICE).status_code
            for i in range(5)
        ]
        assert statuses == [200, 200, 200, 429, 429]  # three in this minute, whichever replica took them
        refused = one.post("/v1/chat/completions", json=ASK, headers=ALICE)
        assert_conforms(refused.json(), "ErrorResponse")
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        assert refused.headers["retry-after"] == "50"  # the minute ends in 50 s
        assert two.post("/v1/chat/completions", json=ASK, headers=BOB).status_code == 200  # bob has his own
        clock.now += timedelta(minutes=1)
        assert one.post("/v1/chat/completions", json=ASK, headers=ALICE).status_code == 200


def test_tokens_per_minute(tmp_path, monkeypatch):
    clock = Clock()
    with replica(tmp_path, monkeypatch, clock, {"limits": {"tokens_per_minute": 100}}) as client:
        assert client.post("/v1/chat/completions", json=ASK, headers=ALICE).status_code == 200
        big = {**ASK, "max_tokens": 500}
        response = client.post("/v1/chat/completions", json=big, headers=ALICE)
        assert response.status_code == 429 and int(response.headers["retry-after"]) >= 1


def test_a_keys_daily_budget_and_what_each_key_sees(tmp_path, monkeypatch):
    clock = Clock()
    auth = {"key_limits": {"alice": {"daily_budget_usd": 0.000001}}}
    with replica(tmp_path, monkeypatch, clock, auth) as client:
        explicit = {**ASK, "model": "claude-haiku"}
        refused = client.post("/v1/chat/completions", json=explicit, headers=ALICE)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "budget_exhausted"
        assert client.post("/v1/chat/completions", json=explicit, headers=BOB).status_code == 200
        own = client.get("/v1/budget", headers=ALICE).json()["budgets"]
        assert set(own) == {"client:alice"} and own["client:alice"]["limit_usd"] == 0.000001
        everything = client.get("/v1/budget", headers=OPS).json()["budgets"]
        assert {"client:bob", "anthropic", "total"} <= set(everything)
        assert everything["client:bob"]["spent_usd"] > 0


@pytest.mark.parametrize("auth", [{"enabled": False}])
def test_no_limits_without_auth(tmp_path, monkeypatch, auth):
    clock = Clock()
    with replica(tmp_path, monkeypatch, clock, {**auth, "limits": {"requests_per_minute": 1}}) as client:
        assert [client.post("/v1/chat/completions", json=ASK).status_code for _ in range(3)] == [
            200,
            200,
            200,
        ]
