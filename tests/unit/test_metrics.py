"""Requests in, metrics read back with exact values per label (outside Ray: a private registry)."""

from __future__ import annotations

from pathlib import Path

import prometheus_client
import pytest

from app.errors import UpstreamUnavailableError
from app.observability.metrics import Metrics
from tests.support.wiring import app_client, make_service

CONFIG = Path(__file__).parents[2] / "deployments/configs/router.yaml"
ASK = {"model": "auto:rules", "messages": [{"role": "user", "content": "What is Kubernetes?"}]}


@pytest.fixture
def setup():
    metrics = Metrics(prometheus_client.CollectorRegistry())
    service = make_service(metrics=metrics)
    with app_client(service) as client:
        yield client, service.backends, metrics, service


def test_requests_cost_tokens_and_latency_per_label(setup):
    client, backends, metrics, _ = setup
    for _ in range(3):
        assert client.post("/v1/chat/completions", json=ASK).status_code == 200
    labels = {"model": "mistral-7b-instruct", "provider": "self_hosted", "strategy": "rules", "status": "200"}
    assert metrics.sample("router_requests_total", **labels) == 3
    # ScriptedBackend usage: prompt = words + 0, completion = 5 words; mistral costs $0.01 per million tokens.
    usage = backends["mistral-7b-instruct"]._usage(backends["mistral-7b-instruct"].calls[0])
    assert (
        metrics.sample("router_tokens_total", model="mistral-7b-instruct", direction="in")
        == 3 * usage["prompt_tokens"]
    )
    assert metrics.sample("router_tokens_total", model="mistral-7b-instruct", direction="out") == 15
    expected_cost = 3 * (usage["prompt_tokens"] + 5) * 0.01 / 1e6
    assert metrics.sample(
        "router_cost_usd_total", model="mistral-7b-instruct", provider="self_hosted"
    ) == pytest.approx(expected_cost)
    assert metrics.sample("router_request_duration_seconds_count", model="mistral-7b-instruct") == 3
    assert metrics.sample("router_overhead_seconds_count") == 3
    assert metrics.sample("router_routed_requests_total", self_hosted="true", prompt_size="under_50k") == 3


def test_errors_and_unknown_models_are_counted_by_status(setup):
    client, backends, metrics, service = setup
    for name in service.catalog.models:
        if not service.catalog.is_self_hosted(name):
            backends[name].down = "no key"
    client.post("/v1/chat/completions", json={**ASK, "model": "no-such-model"})
    client.post("/v1/chat/completions", json={**ASK, "model": "auto", "routing_strategy": "cloud_only"})
    assert (
        metrics.sample("router_requests_total", model="none", provider="none", strategy="other", status="404")
        == 1
    )
    assert (
        metrics.sample(
            "router_requests_total", model="none", provider="none", strategy="cloud_only", status="503"
        )
        == 1
    )


def test_fallbacks_retries_and_time_to_first_token(setup):
    client, backends, metrics, _ = setup
    backends["mistral-7b-instruct"].outcomes = [UpstreamUnavailableError("down")] * 2
    assert client.post("/v1/chat/completions", json=ASK).status_code == 200
    labels = {
        "from_model": "mistral-7b-instruct",
        "to_model": "mistral-7b-fast",
        "reason": "UpstreamUnavailableError",
    }
    assert metrics.sample("router_fallbacks_total", **labels) == 1
    assert metrics.sample("router_retries_total", model="mistral-7b-instruct") == 1
    assert client.post("/v1/chat/completions", json={**ASK, "stream": True}).status_code == 200
    assert metrics.sample("router_time_to_first_token_seconds_count", model="mistral-7b-instruct") == 1


def test_cache_hits_are_counted(setup):
    client, _, metrics, _ = setup
    body = {**ASK, "temperature": 0}
    assert client.post("/v1/chat/completions", json=body).headers["x-router-cache"] == "miss"
    assert client.post("/v1/chat/completions", json=body).headers["x-router-cache"] == "hit"
    assert metrics.sample("router_cache_hits_total", model="mistral-7b-instruct") == 1


def test_breaker_state_and_backend_up(setup):
    """The service's housekeeping loop sets these gauges every GAUGE_REFRESH_S; here it is called
    directly, as the loop does."""
    _, backends, metrics, service = setup
    backends["gemini-pro"].down = "GOOGLE_CLOUD_PROJECT not set"
    service.refresh_gauges()
    assert (
        metrics.sample("router_backend_up", model="gemini-pro", provider="vertex_ai", self_hosted="false")
        == 0
    )
    assert (
        metrics.sample(
            "router_backend_up", model="mistral-7b-instruct", provider="self_hosted", self_hosted="true"
        )
        == 1
    )
    for _ in range(service.config.circuit_breaker.failure_threshold):
        service.breakers["gpt"].failure()
    service.refresh_gauges()
    assert metrics.sample("router_breaker_state", model="gpt") == 2
    assert metrics.sample("router_backend_up", model="gpt", provider="openai", self_hosted="false") == 0
