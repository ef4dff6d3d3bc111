"""The HTTP surface without Ray: the real FastAPI app over scripted backends, driven in-process
by the official openai SDK and by raw HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest

from app.errors import InvalidRequestError, UpstreamRateLimitedError, UpstreamUnavailableError
from tests.conformance import assert_conforms
from tests.support.wiring import app_client, default_config, log_records, make_service, scripted_backends

CONFIG = Path(__file__).parents[2] / "deployments/configs/router.yaml"
SIMPLE = [{"role": "user", "content": "What is Kubernetes?"}]


@pytest.fixture
def backends():
    down = "GOOGLE_CLOUD_PROJECT not set"
    return scripted_backends(default_config(), {"gemini-flash": down, "gemini-pro": down})


@pytest.fixture
def client(backends):
    with app_client(make_service(backends=backends)) as test_client:
        yield test_client


@pytest.fixture
def sdk(client):
    return openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client, max_retries=0)


@pytest.fixture
def decisions():
    with log_records() as records:
        yield records


def sse_events(response) -> list[str]:
    return [line[len("data: ") :] for line in response.text.split("\n") if line.startswith("data: ")]


def test_plain_answer_through_the_sdk(sdk, backends):
    raw = sdk.chat.completions.with_raw_response.create(model="auto:rules", messages=SIMPLE)
    completion = raw.parse()
    assert completion.model == "mistral-7b-instruct"
    assert completion.choices[0].message.content == "Hello from the fake backend"
    assert completion.usage.total_tokens > 0
    assert raw.headers["x-router-model"] == "mistral-7b-instruct"
    assert raw.headers["x-router-provider"] == "self_hosted"
    assert raw.headers["x-router-strategy"] == "rules"
    assert raw.headers["x-router-fallbacks"] == "0"
    assert raw.headers["x-router-cache"] == "miss"
    assert float(raw.headers["x-router-cost-usd"]) > 0
    assert raw.headers["x-request-id"]
    assert backends["mistral-7b-instruct"].calls[0]["model"] == "mistralai/Mistral-7B-Instruct-v0.3"


def test_response_conforms_to_openai_schema(client):
    response = client.post("/v1/chat/completions", json={"model": "auto:rules", "messages": SIMPLE})
    assert response.status_code == 200
    assert_conforms(response.json(), "CreateChatCompletionResponse")


def test_stream_through_the_sdk(sdk):
    stream = sdk.chat.completions.create(model="auto:rules", messages=SIMPLE, stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the fake backend"
    assert all(c.model == "mistral-7b-instruct" for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)


def test_stream_events_conform_and_end_with_done(client):
    body = {
        "model": "auto:rules",
        "messages": SIMPLE,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    response = client.post("/v1/chat/completions", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-router-model"] == "mistral-7b-instruct"
    events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    for chunk in chunks:
        assert_conforms(chunk, "CreateChatCompletionStreamResponse")
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5
    assert all("usage" in c for c in chunks)


def test_routing_strategy_field_and_auto_prefix(sdk):
    by_field = sdk.chat.completions.create(
        model="auto", messages=SIMPLE, extra_body={"routing_strategy": "fast"}
    )
    by_prefix = sdk.chat.completions.create(model="auto:fast", messages=SIMPLE)
    assert by_field.model == by_prefix.model == "mistral-7b-fast"


def test_explicit_alias_bypasses_routing(client, backends):
    response = client.post("/v1/chat/completions", json={"model": "claude-3-opus", "messages": SIMPLE})
    assert response.status_code == 200
    assert response.json()["model"] == "claude-opus"
    assert response.headers["x-router-strategy"] == "explicit"
    assert backends["claude-opus"].calls[0]["model"] == "claude-opus-4-8"


def test_unknown_fields_pass_through_and_router_fields_do_not(client, backends):
    body = {
        "model": "auto",
        "messages": SIMPLE,
        "routing_strategy": "cost",
        "some_new_openai_field": {"x": 1},
    }
    assert client.post("/v1/chat/completions", json=body).status_code == 200
    sent = backends["mistral-7b-instruct"].calls[0]
    assert sent["some_new_openai_field"] == {"x": 1}
    assert "routing_strategy" not in sent


def test_retryable_failure_is_retried_on_the_same_target(client, backends):
    backends["mistral-7b-instruct"].outcomes = [UpstreamUnavailableError("engine hiccup")]
    response = client.post("/v1/chat/completions", json={"model": "auto:rules", "messages": SIMPLE})
    assert response.status_code == 200
    assert response.headers["x-router-fallbacks"] == "0"
    assert response.json()["model"] == "mistral-7b-instruct"
    assert len(backends["mistral-7b-instruct"].calls) == 2


def test_retryable_failure_falls_back(client, backends):
    backends["mistral-7b-instruct"].outcomes = [UpstreamUnavailableError("engine down")] * 2
    response = client.post("/v1/chat/completions", json={"model": "auto:rules", "messages": SIMPLE})
    assert response.status_code == 200
    assert response.headers["x-router-fallbacks"] == "1"
    assert response.json()["model"] == "mistral-7b-fast"


def test_non_retryable_failure_is_returned_not_retried(client, backends):
    backends["mistral-7b-instruct"].outcomes = [InvalidRequestError("bad stop sequence", param="stop")]
    response = client.post("/v1/chat/completions", json={"model": "auto:rules", "messages": SIMPLE})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "stop"
    assert backends["mistral-7b-fast"].calls == []


def test_stream_failure_before_content_falls_back_cleanly(client, backends):
    backends["mistral-7b-instruct"].outcomes = [UpstreamRateLimitedError("busy")] * 2
    response = client.post(
        "/v1/chat/completions", json={"model": "auto:rules", "messages": SIMPLE, "stream": True}
    )
    assert response.headers["x-router-model"] == "mistral-7b-fast"
    assert response.headers["x-router-fallbacks"] == "1"
    chunks = [json.loads(e) for e in sse_events(response)[:-1]]
    assert all("error" not in c for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == (
        "Hello from the fake backend"
    )
    assert backends["mistral-7b-instruct"].closed_streams == 2


def test_stream_failure_after_content_ends_with_error_event(client, backends):
    backends["mistral-7b-instruct"].outcomes = [("cut", 2)]
    response = client.post(
        "/v1/chat/completions", json={"model": "auto:rules", "messages": SIMPLE, "stream": True}
    )
    events = sse_events(response)
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])
    assert_conforms(error, "ErrorResponse")
    assert error["error"]["code"] == "upstream_unavailable"
    assert backends["mistral-7b-fast"].calls == []


def test_models_list(client):
    response = client.get("/v1/models")
    assert_conforms(response.json(), "ListModelsResponse")
    models = {m["id"]: m for m in response.json()["data"]}
    assert {"auto", "mistral-7b-instruct", "gemini-pro", "claude-opus", "gpt"} <= set(models)
    assert models["gemini-pro"]["available"] is False
    assert models["gemini-pro"]["unavailable_reason"] == "GOOGLE_CLOUD_PROJECT not set"
    assert models["mistral-7b-instruct"]["available"] is True


def test_route_plans_without_calling_a_model(client, backends):
    body = {"model": "gemini-1.5-pro", "messages": [{"role": "user", "content": "Analyze this document"}]}
    down = client.post("/v1/route", json=body)
    assert down.status_code == 503 and down.json()["error"]["code"] == "no_healthy_backend"
    plan = client.post("/v1/route?assume_available=true", json=body).json()
    assert (plan["model"], plan["provider"], plan["strategy"]) == ("gemini-pro", "vertex_ai", "explicit")
    assert plan["features"]["tokens"] > 0 and "complexity" in plan["features"]
    assert all(not b.calls for b in backends.values())


def test_route_skips_unavailable_models_with_reasons(client):
    doc = "Revenue grew in every region this quarter. " * 15000
    body = {
        "model": "auto:rules",
        "messages": [{"role": "user", "content": doc + "Summarize the key points."}],
    }
    plan = client.post("/v1/route", json=body).json()
    assert plan["model"] == "claude-sonnet"
    assert {"model": "gemini-pro", "reason": "GOOGLE_CLOUD_PROJECT not set"} in plan["dropped"]


def test_health_reports_unavailable_models(client):
    body = client.get("/health").json()
    assert body["status"] == "degraded"
    assert body["self_hosted_available"] is True
    assert body["models"]["gemini-flash"] == {
        "available": False,
        "reason": "GOOGLE_CLOUD_PROJECT not set",
        "breaker": "closed",
    }
    assert "notice" not in body


def test_health_says_when_every_self_hosted_model_is_down(client, backends):
    for name in ("mistral-7b-instruct", "codellama-13b", "mistral-7b-fast"):
        backends[name].down = "deployment CPUEngine has no running replica"
    body = client.get("/health").json()
    assert body["self_hosted_available"] is False
    assert body["notice"] == "All self-hosted models are down: requests go to cloud models."
    plan = client.post("/v1/route", json={"model": "auto:rules", "messages": SIMPLE}).json()
    assert plan["provider"] != "self_hosted"


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        ({"model": "no-such-model", "messages": SIMPLE}, 404, "model", "model_not_found"),
        (
            {"model": "auto", "routing_strategy": "fastest", "messages": SIMPLE},
            404,
            "routing_strategy",
            "strategy_not_found",
        ),
        ({"model": "auto:fastest", "messages": SIMPLE}, 404, "model", "strategy_not_found"),
        (
            {"model": "auto:fast", "routing_strategy": "cost", "messages": SIMPLE},
            400,
            "routing_strategy",
            None,
        ),
        (
            {"model": "auto:rules", "messages": [{"role": "robot", "content": "x"}]},
            400,
            "messages[0].role",
            None,
        ),
        ({"model": "auto:rules", "messages": []}, 400, "messages", None),
        ({"model": "auto:rules"}, 400, "messages", None),
        ({"model": "auto:rules", "messages": SIMPLE, "temperature": 5}, 400, "temperature", None),
        ({"model": "auto:rules", "messages": SIMPLE, "max_tokens": 0}, 400, "max_tokens", None),
        ({"model": "auto:rules", "messages": SIMPLE, "n": 3}, 400, "n", None),
        ({"model": "auto:rules", "messages": SIMPLE, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop", None),
        (
            {"model": "auto:rules", "messages": [{"role": "user", "content": "x " * 2_000_000}]},
            400,
            "messages",
            "context_length_exceeded",
        ),
    ],
)
def test_bad_requests_get_openai_errors(client, body, status, param, code):
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == status, response.text
    assert_conforms(response.json(), "ErrorResponse")
    error = response.json()["error"]
    assert error["param"] == param
    if code:
        assert error["code"] == code


@pytest.mark.parametrize(
    ("content", "content_type"),
    [(b"{not json", "application/json"), (b"[1, 2]", "application/json"), (b"model=auto", "text/plain")],
)
def test_malformed_bodies_get_400(client, content, content_type):
    response = client.post("/v1/chat/completions", content=content, headers={"content-type": content_type})
    assert response.status_code == 400
    assert_conforms(response.json(), "ErrorResponse")


def test_unknown_route_is_openai_404(client):
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert_conforms(response.json(), "ErrorResponse")


def test_sdk_raises_typed_errors(sdk):
    with pytest.raises(openai.NotFoundError) as excinfo:
        sdk.chat.completions.create(model="no-such-model", messages=SIMPLE)
    assert excinfo.value.body["code"] == "model_not_found"


def test_route_decision_log_has_no_prompt_text(client, decisions):
    secret = "my-very-private-question-about-kubernetes"
    client.post(
        "/v1/chat/completions",
        json={"model": "auto:rules", "messages": [{"role": "user", "content": secret}]},
    )
    [line] = [d for d in decisions if d["event"] == "route_decision"]
    assert line["model"] == "mistral-7b-instruct" and line["strategy"] == "rules"
    assert line["cost_usd"] > 0 and line["prompt_tokens"] > 0 and line["status"] == "ok"
    assert "dropped" in line  # debug level lists the candidates dropped
    assert secret not in json.dumps(decisions)


def test_fallback_is_logged_with_from_to_and_reason(client, backends, decisions):
    backends["mistral-7b-instruct"].outcomes = [UpstreamUnavailableError("engine down")] * 2
    client.post("/v1/chat/completions", json={"model": "auto:rules", "messages": SIMPLE})
    [fallback] = [d for d in decisions if d["event"] == "fallback"]
    assert fallback["from_model"] == "mistral-7b-instruct"
    assert fallback["to_model"] == "mistral-7b-fast"
    assert fallback["reason"] == "UpstreamUnavailableError"
    [decision] = [d for d in decisions if d["event"] == "route_decision"]
    assert decision["fallbacks"] == 1 and decision["model"] == "mistral-7b-fast"


def test_max_tokens_over_a_models_output_limit_is_clamped_for_that_model(client, backends):
    body = {"model": "mistral-7b-fast", "messages": SIMPLE, "max_tokens": 3000}
    assert client.post("/v1/chat/completions", json=body).status_code == 200
    assert backends["mistral-7b-fast"].calls[0]["max_tokens"] == 2048


def test_prompt_logging_is_off_unless_the_operator_turns_it_on(backends, decisions):
    import yaml

    from app.config import parse_config

    raw = yaml.safe_load(CONFIG.read_text())
    raw["logging"]["log_prompts"] = True
    with app_client(make_service(parse_config(raw), backends)) as client:
        client.post(
            "/v1/chat/completions",
            json={"model": "auto:rules", "messages": [{"role": "user", "content": "tell me about ducks"}]},
        )
    [line] = [d for d in decisions if d["event"] == "route_decision"]
    assert line["prompt"] == "tell me about ducks"


ROUTER_FIELD_VALUES = {"routing_strategy": "rules", "max_latency_ms": 5000, "quality_margin": 1.0}


def test_every_router_field_is_validated_and_never_reaches_a_backend(client, backends):
    from app.api.schemas import ChatCompletionRequest
    from app.openai_wire import ROUTER_FIELDS

    assert set(ROUTER_FIELD_VALUES) == ROUTER_FIELDS <= set(ChatCompletionRequest.model_fields)
    body = {"model": "auto", "messages": SIMPLE, **ROUTER_FIELD_VALUES}
    assert client.post("/v1/chat/completions", json=body).status_code == 200
    (sent,) = [call for b in backends.values() for call in b.calls]
    assert not (ROUTER_FIELDS & set(sent))
