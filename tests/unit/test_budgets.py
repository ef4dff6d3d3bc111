"""Daily budgets end to end: the real ``RouterService`` and FastAPI app over scripted backends,
each test with its own ledger (an SQLite file in tmp_path, or a unique Redis prefix), its own
metrics registry, and a fake wall clock for the budget day.

Prices (genai-prices): claude-haiku-4-5 is $1 in / $5 out per million tokens. The scripted
backends answer "Hello from the fake backend" (5 completion tokens) and count the prompt's
words as its tokens ("What is Kubernetes?": 3), so a JSON answer from claude-haiku costs
(3 x 1 + 5 x 5) / 1M = $0.000028.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import pytest
from fastapi.testclient import TestClient

from app.api.routes import create_app
from app.budget.ledger import KeySpend, Ledger, LedgerSettings, build_ledger
from app.budget.ledger_sqlite import SQLiteLedger
from app.budget.pricing import Pricer
from app.config import RouterConfig
from app.observability.logs import JsonFormatter
from app.routing.analysis import Analyzer
from app.routing.tokens import encoding
from app.service import RouterService
from tests.conformance import assert_conforms
from tests.fakes.backends import ScriptedBackend
from tests.unit.budget_support import (
    ANTHROPIC_MODELS,
    HAIKU,
    MISTRAL,
    CostedBackend,
    FakeNow,
    collect_events,
    events_named,
    make_budgets,
    make_config,
    make_service,
    scripted_backends,
)
from tests.unit.redis_fixture import redis_url, unique_prefix  # noqa: F401 - the fixture

D = Decimal
ROOT = Path(__file__).parents[2]
QUESTION = [{"role": "user", "content": "What is Kubernetes?"}]
HAIKU_JSON_COST = (D(3) * 1 + D(5) * 5) / D(10**6)  # see the module docstring
ALERT_80, ALERT_100 = "daily_budget_80_percent", "daily_budget_100_percent"
CLOUD_PROVIDERS = ("vertex_ai", "openai", "anthropic")


def chat(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": QUESTION, **extra}


def sqlite(path: Path) -> Ledger:
    return build_ledger(LedgerSettings(backend="sqlite", path=str(path)))


def spend_of(spend: dict[str, KeySpend], key: str) -> KeySpend:
    return spend.get(key, KeySpend(D(0), D(0)))


def error_of(response: Any) -> dict[str, Any]:
    body = response.json()
    assert_conforms(body, "ErrorResponse")
    return body["error"]


def sse_events(response: Any) -> list[str]:
    return [line[len("data: ") :] for line in response.text.split("\n") if line.startswith("data: ")]


class App:
    """The real app over ``service``, through TestClient; ``call`` runs a coroutine function on
    the app's own event loop (where the service's ledger and background refreshes live)."""

    def __init__(self, service: RouterService) -> None:
        self.service = service
        self.budgets = service.budgets
        self.client = TestClient(create_app(service))

    def __enter__(self) -> Self:
        self.client.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.__exit__(*exc)

    def call(self, fn: Any, *args: Any) -> Any:
        assert self.client.portal is not None
        return self.client.portal.call(fn, *args)

    def record(self, **amounts: str) -> None:
        """Spend recorded straight into the ledger today (another replica's, say), then refreshed."""
        self.call(self.budgets.ledger.record, self.budgets.today(), {k: D(v) for k, v in amounts.items()})
        self.call(self.budgets.refresh)

    def spend(self) -> dict[str, KeySpend]:
        self.call(self.budgets.settled)
        return self.call(self.budgets.ledger.spend, self.budgets.today())

    def post(self, body: dict[str, Any]) -> Any:
        return self.client.post("/v1/chat/completions", json=body)

    def route(self, body: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post("/v1/route", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    def budget(self) -> dict[str, Any]:
        response = self.client.get("/v1/budget")
        assert response.status_code == 200, response.text
        return response.json()


def app_for(
    tmp_path: Path, config: RouterConfig, backends: dict[str, Any] | None = None, now: FakeNow | None = None
) -> App:
    backends = backends if backends is not None else scripted_backends(config)
    return App(make_service(config, backends, sqlite(tmp_path / "ledger.sqlite3"), now or FakeNow()))


# --- budgets steer routing -------------------------------------------------------------------


def test_cloud_model_that_cannot_cover_its_worst_case_is_skipped_for_self_hosted(tmp_path: Path) -> None:
    config = make_config(budgets={"anthropic": 1.0})
    backends = scripted_backends(config)
    with collect_events() as events, app_for(tmp_path, config, backends) as app:
        app.record(anthropic="0.999")  # under the switch (100%), but a ~$0.005 worst case does not fit
        # Planning knows: the route leaves haiku out, saying why.
        plan = app.route(chat("auto:haiku_first", max_tokens=1000))
        assert plan["model"] == MISTRAL
        assert any(d["model"] == HAIKU and d["reason"].startswith("budget") for d in plan["dropped"])
        # The ledger knows too, when the planner's view is stale (another replica just spent it):
        app.call(app.budgets.ledger.record, app.budgets.today(), {"anthropic": D("0")})
        app.budgets._snapshot = {}  # as if not yet read: only the reservation can refuse now
        response = app.post(chat("auto:haiku_first", max_tokens=1000))
        spend = app.spend()

    assert response.status_code == 200, response.text
    assert response.json()["model"] == MISTRAL
    assert response.headers["x-router-model"] == MISTRAL
    assert response.headers["x-router-provider"] == "self_hosted"
    assert response.headers["x-router-fallbacks"] == "1"
    assert backends[HAIKU].calls == []  # never called: its reservation was refused first
    assert len(backends[MISTRAL].calls) == 1

    [fallback] = events_named(events, "fallback")
    assert (fallback["from_model"], fallback["to_model"]) == (HAIKU, MISTRAL)
    assert fallback["reason"] == "BudgetExhaustedError"
    assert "budget" in fallback["detail"] and "worst case" in fallback["detail"]
    [decision] = events_named(events, "route_decision")
    assert decision["model"] == MISTRAL and decision["failures"] == [HAIKU] and decision["fallbacks"] == 1
    assert (
        app.service.metrics.sample(
            "router_fallbacks_total", from_model=HAIKU, to_model=MISTRAL, reason="BudgetExhaustedError"
        )
        == 1.0
    )
    # Nothing of the refused reservation stays, and the self-hosted answer is recorded.
    assert spend_of(spend, "anthropic") == KeySpend(D("0.999"), D(0))
    assert spend_of(spend, "self_hosted").spent > 0


def test_explicit_model_without_budget_is_a_429_budget_exhausted(tmp_path: Path) -> None:
    config = make_config(budgets={"anthropic": 1.0})
    backends = scripted_backends(config)
    with app_for(tmp_path, config, backends) as app:
        app.record(anthropic="0.999")
        refused = app.post(chat(HAIKU, max_tokens=1000))  # the reservation is refused: no fallback
        app.record(anthropic="0.001")  # now at 100%: taken out at planning
        switched_off = app.post(chat("claude-sonnet"))
        streamed = app.post(chat(HAIKU, stream=True))

    for response in (refused, switched_off, streamed):
        assert response.status_code == 429, response.text
        error = error_of(response)
        assert error["code"] == "budget_exhausted"
        assert error["type"] == "insufficient_quota"
        assert "budget" in error["message"]
    assert refused.headers.get("content-type", "").startswith("application/json")
    assert backends[HAIKU].calls == [] and backends["claude-sonnet"].calls == []
    assert all(b.calls == [] for b in backends.values())


@pytest.mark.parametrize(
    "left",
    [pytest.param("0", id="switched-off-at-planning"), pytest.param("0.001", id="reservations-refused")],
)
def test_cloud_only_with_every_cloud_budget_spent_is_a_429(tmp_path: Path, left: str) -> None:
    config = make_config()
    backends = scripted_backends(config)
    limits = config.cost_rules.daily_budgets
    with app_for(tmp_path, config, backends) as app:
        app.record(**{p: str(D(str(limits[p])) - D(left)) for p in CLOUD_PROVIDERS})
        route_dropped = {d["model"]: d["reason"] for d in app.route(chat("auto:quality"))["dropped"]}
        cloud_only = app.post(chat("auto:cloud_only"))
        answered = app.post(chat("auto:haiku_first", max_tokens=1000))

    assert cloud_only.status_code == 429
    assert error_of(cloud_only)["code"] == "budget_exhausted"
    cloud = [m for m in config.models if not config.is_self_hosted(m)]
    assert all(backends[m].calls == [] for m in cloud)
    if left == "0":
        assert all(route_dropped[m].startswith("budget") for m in cloud)
    # ... while a plan with a self-hosted model in it is still answered.
    assert answered.status_code == 200 and answered.json()["model"] == MISTRAL


def test_total_nearly_spent_still_answers_from_self_hosted(tmp_path: Path) -> None:
    config = make_config()
    backends = scripted_backends(config)
    with app_for(tmp_path, config, backends) as app:
        app.record(total="199.999")  # $0.001 left: no cloud worst case fits, but not "at 100%"
        answered = app.post(chat("auto:quality"))
    cloud = [m for m in config.models if not config.is_self_hosted(m)]
    assert all(backends[m].calls == [] for m in cloud)
    assert answered.status_code == 200, answered.text
    assert config.is_self_hosted(answered.json()["model"])
    # ... while self-hosted models still answer.
    assert answered.status_code == 200
    assert config.is_self_hosted(answered.json()["model"])


# --- THE concurrency test ------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_concurrent_requests_on_three_replicas_never_overspend(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        settings = LedgerSettings(backend="sqlite", path=str(tmp_path / "shared.sqlite3"))
    else:
        url = request.getfixturevalue("redis_url")
        settings = LedgerSettings(backend="redis", redis_url=url, key_prefix=unique_prefix("budgets"))
    body = chat("auto:haiku_first", max_tokens=1000)
    pricer = Pricer(make_config().models)
    tokens = Analyzer(make_config().routing.thresholds).analyze(body).tokens
    worst = pricer.worst_case(HAIKU, tokens, 1000)
    limit = worst * 10 + worst / 2  # about ten requests' worst cases
    cost = pricer.usage_cost(HAIKU, {"prompt_tokens": tokens, "completion_tokens": 900})
    assert worst * D("0.8") < cost < worst  # the real cost is a bit under the worst case

    config = make_config(budgets={"anthropic": float(limit)})
    assert D(str(config.cost_rules.daily_budgets["anthropic"])) == limit
    haiku = CostedBackend(HAIKU, prompt_tokens=tokens, completion_tokens=900, jitter_s=0.005)
    mistral = CostedBackend(MISTRAL, jitter_s=0.002)
    backends = scripted_backends(config, **{HAIKU: haiku, MISTRAL: mistral})
    now = FakeNow()
    replicas = [make_service(config, backends, build_ledger(settings), now) for _ in range(3)]
    observer = build_ledger(settings)
    day = replicas[0].budgets.today()
    peak = {"committed": D(0), "spent": D(0)}
    stop = asyncio.Event()

    async def watch() -> None:  # spend and reservations as seen from outside, all along
        while not stop.is_set():
            anthropic = spend_of(await observer.spend(day), "anthropic")
            peak["committed"] = max(peak["committed"], anthropic.spent + anthropic.reserved)
            peak["spent"] = max(peak["spent"], anthropic.spent)
            await asyncio.sleep(0.001)

    try:
        await asyncio.gather(*(r.start() for r in replicas))
        watcher = asyncio.create_task(watch())
        results = await asyncio.gather(
            *(replicas[i % 3].complete(dict(body), f"req-{i}") for i in range(100)), return_exceptions=True
        )
        stop.set()
        await watcher
        await asyncio.gather(*(r.budgets.settled() for r in replicas))
        final = await observer.spend(day)
    finally:
        await asyncio.gather(*(r.close() for r in replicas))
        await observer.close()

    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []  # nothing lost, nothing failed
    outcomes = [outcome for _response, outcome in results]  # type: ignore[misc]
    answered = [response["model"] for response, _outcome in results]  # type: ignore[misc]
    by_haiku = [o for o in outcomes if o.target.model == HAIKU]
    refused = [o for o in outcomes if o.target.model != HAIKU]
    assert set(answered) <= {HAIKU, MISTRAL}
    assert 10 <= len(by_haiku) <= 11  # at least the ten worst cases that fit; at most what spend allows
    assert len(haiku.calls) == len(by_haiku)  # a refused reservation never reached the model
    for outcome in refused:  # the rest fell back to the self-hosted model, with the reason
        assert outcome.target.model == MISTRAL and outcome.status == "ok"
        assert [model for model, _why in outcome.failures] == [HAIKU]
        assert "budget" in outcome.failures[0][1]
    for outcome in by_haiku:
        assert outcome.fallbacks == 0 and outcome.cost_usd == cost

    anthropic = spend_of(final, "anthropic")
    assert anthropic.reserved == 0
    assert anthropic.spent == sum((o.cost_usd for o in by_haiku), D(0))  # nothing unrecorded
    assert anthropic.spent <= limit + worst  # the brief's bound ...
    assert anthropic.spent <= limit  # ... and the ledger's contract (each cost <= its reservation)
    assert peak["committed"] <= limit and peak["spent"] <= limit
    self_hosted_spend = sum((o.cost_usd for o in refused), D(0))
    assert spend_of(final, "self_hosted").spent == self_hosted_spend
    assert spend_of(final, "total").spent == anthropic.spent + self_hosted_spend


# --- spend survives restarts and killed processes --------------------------------------------


def test_spend_survives_a_service_restart(tmp_path: Path) -> None:
    config = make_config()
    path = tmp_path / "ledger.sqlite3"
    now = FakeNow()
    first = App(make_service(config, scripted_backends(config), sqlite(path), now))
    with first:
        assert first.post(chat(HAIKU)).status_code == 200
        assert first.post(chat("auto:rules")).status_code == 200  # self-hosted spend too
        first.spend()  # background refresh done
        before = first.budget()
    assert before["budgets"]["anthropic"]["spent_usd"] == float(HAIKU_JSON_COST)
    assert before["budgets"]["self_hosted"]["spent_usd"] > 0

    second = App(make_service(config, scripted_backends(config), sqlite(path), now))
    with second:
        after = second.budget()
    assert after == before
    assert after["budgets"]["total"]["spent_usd"] == pytest.approx(
        before["budgets"]["anthropic"]["spent_usd"] + before["budgets"]["self_hosted"]["spent_usd"]
    )


KILLED_SCRIPT = """
import asyncio, sys
from decimal import Decimal
from tests.unit.budget_support import FakeNow, make_budgets, make_config
from app.budget.ledger import LedgerSettings, build_ledger

async def main():
    budgets = make_budgets(make_config(), build_ledger(LedgerSettings(path=sys.argv[1])), FakeNow())
    done = await budgets.reserve("claude-haiku", 11, 1000)
    await budgets.settle(done, Decimal(sys.argv[2]))
    await budgets.reserve("claude-haiku", 11, 1000)  # in flight when the process dies
    print("ready", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


def _spend_then_die(path: Path, tmp_path: Path) -> None:
    """Runs KILLED_SCRIPT in a new process on the ledger at ``path`` and SIGKILLs it mid-request."""
    script = tmp_path / "spend_then_die.py"
    script.write_text(KILLED_SCRIPT)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path), "0.004511"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.strip() == "ready", proc.stderr.read() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


async def test_spend_survives_a_killed_process(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    _spend_then_die(path, tmp_path)
    config = make_config()
    budgets = make_budgets(config, sqlite(path), FakeNow())
    try:
        await budgets.refresh()
        report = budgets.report()["budgets"]
    finally:
        await budgets.close()
    worst = Pricer(config.models).worst_case(HAIKU, 11, 1000)
    assert report["anthropic"]["spent_usd"] == 0.004511
    assert report["total"]["spent_usd"] == 0.004511
    assert report["anthropic"]["reserved_usd"] == float(worst)  # until its ttl lapses


# --- alerts ----------------------------------------------------------------------------------


async def test_80_percent_alert_fires_once_across_requests_and_replicas(tmp_path: Path) -> None:
    config = make_config(budgets={"anthropic": 0.1})
    now = FakeNow()
    path = tmp_path / "ledger.sqlite3"
    backends = scripted_backends(config, **{HAIKU: CostedBackend(HAIKU, completion_tokens=900)})
    service = make_service(config, backends, sqlite(path), now)
    budgets, metrics = service.budgets, service.metrics
    body = chat(HAIKU, max_tokens=1000)
    labels = {"provider": "anthropic", "alert": ALERT_80}
    second = make_budgets(config, sqlite(path), now)
    with collect_events() as events:
        try:
            await service.start()
            await budgets.ledger.record(budgets.today(), {"anthropic": D("0.078")})
            await budgets.refresh()
            assert events_named(events, "budget_alert") == []  # 78%: not yet

            await service.complete(body, "crosses-80")  # $0.004503: 82.5%
            await budgets.settled()
            [alert] = events_named(events, "budget_alert")
            assert metrics.sample("router_budget_alerts_total", **labels) == 1.0

            await service.complete(body, "still-above-80")  # 87%
            await budgets.settled()
            await second.refresh()  # another replica on the same ledger
            assert second.report()["budgets"]["anthropic"]["alerts"] == [ALERT_80]
        finally:
            await second.close()
            await service.close()

    assert alert["level"] == "warning"
    assert {k: alert[k] for k in ("budget", "alert", "action", "threshold", "limit_usd", "day")} == {
        "budget": "anthropic",
        "alert": ALERT_80,
        "action": "notify_ops_team",
        "threshold": 0.8,
        "limit_usd": 0.1,
        "day": "2025-06-01",
    }
    assert alert["spent_usd"] == pytest.approx(0.078 + 0.004503)
    assert len(events_named(events, "budget_alert")) == 1  # not again: not by the next request, nor replica
    assert metrics.sample("router_budget_alerts_total", **labels) == 1.0
    assert not second.metrics.sample("router_budget_alerts_total", **labels)
    assert metrics.sample("router_budget_spend_usd", provider="anthropic") == pytest.approx(
        0.078 + 2 * 0.004503
    )
    assert metrics.sample("router_budget_limit_usd", provider="anthropic") == 0.1


class _Webhook(ThreadingHTTPServer):
    """Records each POST (path, JSON body); answers 500 to the first, 204 to the rest."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _WebhookHandler)
        self.posts: list[tuple[str, dict[str, Any]]] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _WebhookHandler(BaseHTTPRequestHandler):
    server: _Webhook

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.posts.append((self.path, body))
        self.send_response(500 if len(self.server.posts) == 1 else 204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:  # keep the test's stderr clean
        pass


@pytest.fixture
def webhook() -> Iterator[_Webhook]:
    server = _Webhook()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def every_log_line() -> Iterator[list[str]]:
    """Every log record of every logger, formatted, at the loggers' own levels (as deployed)."""
    lines: list[str] = []
    seen: set[int] = set()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if id(record) not in seen:
                seen.add(id(record))
                lines.append(JsonFormatter().format(record) + " " + record.getMessage())

    handler = Collect(logging.DEBUG)
    targets = [logging.getLogger(), logging.getLogger("hybrid_router")]  # the latter may not propagate
    for target in targets:
        target.addHandler(handler)
    yield lines
    for target in targets:
        target.removeHandler(handler)


WEBHOOK_TOKEN = "T0KEN-s3cr3t-4f9a"


async def _fire_80_percent_alert_to(url: str, tmp_path: Path) -> None:
    config = make_config(budgets={"anthropic": 0.1})
    budgets = make_budgets(
        config, sqlite(tmp_path / "ledger.sqlite3"), FakeNow(), env={"BUDGET_ALERT_WEBHOOK_URL": url}
    )
    try:
        await budgets.ledger.record(budgets.today(), {"anthropic": D("0.085")})
        await budgets.refresh()
        await budgets.alerts.drain()  # the POST, its retry after 0.5 s
    finally:
        await budgets.close()


async def test_webhook_gets_the_alert_after_a_retry_and_its_url_is_never_logged(
    tmp_path: Path, webhook: _Webhook, every_log_line: list[str]
) -> None:
    url = f"{webhook.base}/hooks/{WEBHOOK_TOKEN}"
    with collect_events() as events:
        await _fire_80_percent_alert_to(url, tmp_path)

    assert len(webhook.posts) == 2  # the first got a 500, the retry got through
    (path1, first), (path2, body) = webhook.posts
    assert path1 == path2 == f"/hooks/{WEBHOOK_TOKEN}"
    assert first == body
    assert body["event"] == "budget_alert"
    assert {k: body[k] for k in ("budget", "alert", "threshold", "spent_usd", "limit_usd")} == {
        "budget": "anthropic",
        "alert": ALERT_80,
        "threshold": 0.8,
        "spent_usd": 0.085,
        "limit_usd": 0.1,
    }
    [sent] = events_named(events, "budget_alert_sent")
    assert sent["status"] == 204 and sent["budget"] == "anthropic"
    assert events_named(events, "budget_alert_undelivered") == []
    logged = [json.dumps(e) for e in events] + every_log_line
    assert logged
    assert not [line for line in logged if WEBHOOK_TOKEN in line or webhook.base in line]


async def test_webhook_url_stays_out_of_logs_with_info_logging_on(
    tmp_path: Path, webhook: _Webhook, every_log_line: list[str]
) -> None:
    root = logging.getLogger()
    old = root.level
    root.setLevel(logging.INFO)  # as logging.basicConfig(level=logging.INFO) in a deployment would
    try:
        await _fire_80_percent_alert_to(f"{webhook.base}/hooks/{WEBHOOK_TOKEN}", tmp_path)
    finally:
        root.setLevel(old)
    assert len(webhook.posts) == 2
    assert [line for line in every_log_line if WEBHOOK_TOKEN in line] == []


def test_at_100_percent_the_provider_is_taken_out_of_routing(tmp_path: Path) -> None:
    config = make_config(budgets={"anthropic": 0.1})
    backends = scripted_backends(config)
    with collect_events() as events, app_for(tmp_path, config, backends) as app:
        app.record(anthropic="0.1", total="0.1")
        report = app.budget()
        haiku_first = app.route(chat("auto:haiku_first"))
        quality = app.route(chat("auto:quality"))
        models = {m["id"]: m for m in app.client.get("/v1/models").json()["data"]}
        answered = app.post(chat("auto:haiku_first"))

    anthropic = report["budgets"]["anthropic"]
    assert anthropic["mode"] == "self_hosted_only"
    assert anthropic["alerts"] == [ALERT_80, ALERT_100]
    assert anthropic["spent_usd"] == 0.1 and anthropic["used"] == 1.0
    assert all(
        report["budgets"][k]["mode"] == "normal" for k in ("openai", "vertex_ai", "self_hosted", "total")
    )

    assert haiku_first["model"] == MISTRAL
    dropped = {d["model"]: d["reason"] for d in haiku_first["dropped"]}
    assert dropped[HAIKU].startswith("budget")
    dropped = {d["model"]: d["reason"] for d in quality["dropped"]}
    planned = [quality["model"], *(t["model"] for t in quality["fallbacks"])]
    for model in ANTHROPIC_MODELS:
        assert dropped[model].startswith("budget") and "anthropic" in dropped[model]
        assert model not in planned
        assert models[model]["available"] is False and models[model]["unavailable_reason"].startswith(
            "budget"
        )
    assert models["gpt"]["available"] is True

    assert answered.status_code == 200 and answered.json()["model"] == MISTRAL
    assert answered.headers["x-router-fallbacks"] == "0"  # dropped at planning, never tried
    assert backends[HAIKU].calls == []
    fired = [(e["budget"], e["alert"]) for e in events_named(events, "budget_alert")]
    assert sorted(fired) == [("anthropic", ALERT_100), ("anthropic", ALERT_80)]
    actions = {e["alert"]: e["action"] for e in events_named(events, "budget_alert")}
    assert actions[ALERT_100] == "switch_to_self_hosted_only"


def test_total_at_100_percent_takes_every_cloud_model_out(tmp_path: Path) -> None:
    config = make_config()
    backends = scripted_backends(config)
    with app_for(tmp_path, config, backends) as app:
        app.record(total="200")
        report = app.budget()
        quality = app.route(chat("auto:quality"))
        answered = app.post(chat("auto:quality"))
        explicit = app.post(chat("gpt"))
        cloud_only = app.post(chat("auto:cloud_only"))
        cheap = app.post(chat("auto:rules"))

    assert report["budgets"]["total"]["mode"] == "self_hosted_only"
    assert report["budgets"]["total"]["alerts"] == [ALERT_80, ALERT_100]
    assert report["budgets"]["anthropic"]["mode"] == "normal"
    cloud = [m for m in config.models if not config.is_self_hosted(m)]
    dropped = {d["model"]: d["reason"] for d in quality["dropped"]}
    assert all(dropped[m].startswith("budget") and "total" in dropped[m] for m in cloud)
    assert config.is_self_hosted(quality["model"])
    assert answered.status_code == 200 and config.is_self_hosted(answered.json()["model"])
    assert cheap.status_code == 200 and cheap.json()["model"] == MISTRAL
    for refused in (explicit, cloud_only):
        assert refused.status_code == 429 and error_of(refused)["code"] == "budget_exhausted"
    assert all(backends[m].calls == [] for m in cloud)


RESETS = [
    pytest.param(
        "UTC",
        datetime(2025, 6, 1, 23, 50, tzinfo=UTC),
        None,
        datetime(2025, 6, 2, 0, 10, tzinfo=UTC),
        id="utc",
    ),
    # New York is UTC-4 in June: 00:10 UTC is still 20:10 on June 1 there; the reset is 04:00 UTC.
    pytest.param(
        "America/New_York",
        datetime(2025, 6, 1, 23, 50, tzinfo=UTC),
        datetime(2025, 6, 2, 0, 10, tzinfo=UTC),
        datetime(2025, 6, 2, 4, 10, tzinfo=UTC),
        id="new-york",
    ),
]


@pytest.mark.parametrize(("zone", "before", "midnight_utc", "after"), RESETS)
def test_budgets_reset_at_midnight_in_the_configured_zone(
    tmp_path: Path, zone: str, before: datetime, midnight_utc: datetime | None, after: datetime
) -> None:
    config = make_config(budgets={"anthropic": 0.1}, timezone=zone)
    backends = scripted_backends(config)
    now = FakeNow(before)
    with app_for(tmp_path, config, backends, now) as app:
        app.record(anthropic="0.1", total="0.1")
        spent = app.budget()
        assert spent["day"] == "2025-06-01" and spent["timezone"] == zone
        assert spent["budgets"]["anthropic"]["mode"] == "self_hosted_only"
        assert app.route(chat("auto:haiku_first"))["model"] == MISTRAL

        if midnight_utc is not None:  # midnight UTC is not this zone's reset
            now.set(midnight_utc)
            same_day = app.budget()
            assert same_day["day"] == "2025-06-01"
            assert same_day["budgets"]["anthropic"]["spent_usd"] == 0.1
            assert same_day["budgets"]["anthropic"]["mode"] == "self_hosted_only"
            assert app.route(chat("auto:haiku_first"))["model"] == MISTRAL

        now.set(after)
        assert app.route(chat("auto:haiku_first"))["model"] == HAIKU  # back even before a refresh
        fresh = app.budget()
        answered = app.post(chat("auto:haiku_first", max_tokens=1000))  # a worst case the $0.10 covers

    assert fresh["day"] == "2025-06-02"
    for key, entry in fresh["budgets"].items():
        assert (entry["spent_usd"], entry["reserved_usd"], entry["alerts"], entry["mode"]) == (
            0,
            0,
            [],
            "normal",
        ), key
    assert answered.status_code == 200 and answered.json()["model"] == HAIKU
    assert len(backends[HAIKU].calls) == 1


# --- costs in headers and logs ----------------------------------------------------------------


def test_costs_in_headers_logs_and_route_estimates(tmp_path: Path) -> None:
    config = make_config()
    pricer = Pricer(config.models)
    with collect_events() as events, app_for(tmp_path, config) as app:
        answered = app.post(chat(HAIKU, max_tokens=1000))
        route = app.route(chat(HAIKU, max_tokens=1000))
        route_unbounded = app.route(chat(HAIKU))
        streamed = app.post(chat(HAIKU, max_tokens=1000, stream=True))
        spend = app.spend()

    assert answered.status_code == 200
    assert answered.headers["x-router-cost-usd"] == f"{HAIKU_JSON_COST:.8f}" == "0.00002800"
    assert answered.headers["x-router-cost-kind"] == "actual"
    assert answered.headers["x-router-cache"] == "miss"

    tokens = route["features"]["tokens"]
    worst = pricer.worst_case(HAIKU, tokens, 1000)
    assert route["estimated_cost_usd"]["worst_case"] == float(worst)
    assert worst == (tokens * D(1) + 1000 * D(5)) / D(10**6)
    assert route_unbounded["estimated_cost_usd"]["worst_case"] == float(
        pricer.worst_case(HAIKU, tokens, None)
    )

    assert streamed.status_code == 200 and sse_events(streamed)[-1] == "[DONE]"
    assert streamed.headers["x-router-cost-kind"] == "reserved"
    assert streamed.headers["x-router-cost-usd"] == f"{worst:.8f}"

    decisions = events_named(events, "route_decision")
    assert [d["model"] for d in decisions] == [HAIKU, HAIKU]
    assert [d["cost_usd"] for d in decisions] == [float(HAIKU_JSON_COST)] * 2  # the stream's, once known
    assert spend_of(spend, "anthropic") == KeySpend(2 * HAIKU_JSON_COST, D(0))


# --- cancellation settles ---------------------------------------------------------------------


async def test_cancelled_stream_records_the_prompt_and_what_was_streamed(tmp_path: Path) -> None:
    config = make_config()
    text = " ".join(f"word{i}" for i in range(40))
    haiku = ScriptedBackend(HAIKU, text=text)
    service = make_service(
        config, scripted_backends(config, **{HAIKU: haiku}), sqlite(tmp_path / "l.sqlite3"), FakeNow()
    )
    body = chat(HAIKU, max_tokens=1000, stream=True)
    with collect_events() as events:
        try:
            chunks, outcome = await service.stream(body, "cancelled-stream")
            received: list[str] = []
            async for chunk in chunks:
                received += [c["delta"].get("content") or "" for c in chunk["choices"]]
                if len([piece for piece in received if piece]) == 3:
                    break
            await chunks.aclose()  # the client goes away
            await service.budgets.settled()
            spend = await service.budgets.ledger.spend(service.budgets.today())
        finally:
            await service.close()

    streamed = "".join(received)
    assert streamed == "word0 word1 word2"
    prompt = outcome.plan.features.tokens
    expected = Pricer(config.models).usage_cost(
        HAIKU, {"prompt_tokens": prompt, "completion_tokens": len(encoding().encode_ordinary(streamed))}
    )
    assert 0 < expected < outcome.reservation.amount
    assert spend_of(spend, "anthropic") == KeySpend(expected, D(0))  # spent, and nothing held back
    assert spend_of(spend, "total") == KeySpend(expected, D(0))
    assert haiku.closed_streams == 1
    [decision] = events_named(events, "route_decision")
    assert decision["status"] == "cancelled" and decision["cost_usd"] == float(expected)


async def test_cancelled_json_request_releases_its_reservation(tmp_path: Path) -> None:
    config = make_config()

    class Hanging(ScriptedBackend):
        def __init__(self) -> None:
            super().__init__(HAIKU)
            self.started = asyncio.Event()

        async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
            self.calls.append(request)
            self.started.set()
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

    haiku = Hanging()
    service = make_service(
        config, scripted_backends(config, **{HAIKU: haiku}), sqlite(tmp_path / "l.sqlite3"), FakeNow()
    )
    ledger, day = service.budgets.ledger, service.budgets.today()
    try:
        task = asyncio.create_task(service.complete(chat(HAIKU, max_tokens=1000), "cancelled-json"))
        await asyncio.wait_for(haiku.started.wait(), 5)
        during = spend_of(await ledger.spend(day), "anthropic")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await service.budgets.settled()
        after = await ledger.spend(day)
    finally:
        await service.close()

    worst = Pricer(config.models).worst_case(HAIKU, 11, 1000)
    assert during == KeySpend(D(0), worst)
    assert spend_of(after, "anthropic") == KeySpend(D(0), D(0))
    assert spend_of(after, "total") == KeySpend(D(0), D(0))


class _SlowReserveLedger(SQLiteLedger):
    """An SQLite ledger whose next operation takes a while in its worker thread, as a busy file
    or a slow disk would make it: a cancellation then lands while the transaction runs."""

    slow_next = False

    async def _run(self, fn: Any) -> Any:
        if not self.slow_next:
            return await super()._run(fn)
        self.slow_next = False

        def slow(conn: Any) -> Any:
            time.sleep(0.2)  # in the worker thread
            return fn(conn)

        return await super()._run(slow)


async def test_request_cancelled_during_its_reservation_holds_no_budget(tmp_path: Path) -> None:
    config = make_config()
    ledger = _SlowReserveLedger(tmp_path / "l.sqlite3")
    service = make_service(config, scripted_backends(config), ledger, FakeNow())
    day = service.budgets.today()
    try:
        await ledger.spend(day)  # opened
        ledger.slow_next = True
        task = asyncio.create_task(service.complete(chat(HAIKU, max_tokens=1000), "cancelled-in-reserve"))
        await asyncio.sleep(0.05)  # the reservation's transaction is running in the worker
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.3)  # the worker has committed it by now
        await service.budgets.settled()
        after = spend_of(await ledger.spend(day), "anthropic")
    finally:
        await service.close()
    assert service.backends[HAIKU].calls == []
    assert after == KeySpend(D(0), D(0))
