"""The real Serve app on CPU with the tiny local model, driven over HTTP by the official SDK."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conformance import assert_conforms

pytestmark = pytest.mark.ray

KUBERNETES = [{"role": "user", "content": "What is Kubernetes?"}]


@pytest.fixture(scope="module")
def sdk(router_url):
    return openai.OpenAI(base_url=f"{router_url}/v1", api_key="not-needed-locally", max_retries=0)


def test_seed_example_one_answers_from_self_hosted(sdk):
    raw = sdk.chat.completions.with_raw_response.create(model="auto", messages=KUBERNETES, max_tokens=12)
    completion = raw.parse()
    assert completion.model == "mistral-7b-instruct"
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert 0 < completion.usage.completion_tokens <= 12
    assert completion.usage.prompt_tokens > 0
    assert raw.headers["x-router-provider"] == "self_hosted"
    assert raw.headers["x-router-strategy"] == "auto"
    assert raw.headers["x-router-reason"]
    assert raw.headers["x-request-id"]
    assert float(raw.headers["x-router-cost-usd"]) > 0


def test_raw_http_answer_conforms(router_url):
    response = httpx.post(
        f"{router_url}/v1/chat/completions",
        json={"model": "auto", "messages": KUBERNETES, "max_tokens": 8},
        timeout=60,
    )
    assert response.status_code == 200
    assert_conforms(response.json(), "CreateChatCompletionResponse")
    assert response.headers.get_list("x-request-id") and len(response.headers.get_list("x-request-id")) == 1


def test_stream_through_the_sdk(sdk):
    stream = sdk.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "Hello!"}],
        max_tokens=10,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) >= 2, "tokens arrive one by one"
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals in (["length"], ["stop"])
    assert chunks[-1].usage.completion_tokens == len(content) or chunks[-1].usage.completion_tokens >= 1
    assert chunks[-1].usage.completion_tokens <= 10
    assert {c.model for c in chunks} == {"mistral-7b-instruct"}


def test_stream_events_conform(router_url):
    body = {"model": "auto:fast", "messages": KUBERNETES, "max_tokens": 6, "stream": True}
    with httpx.stream("POST", f"{router_url}/v1/chat/completions", json=body, timeout=60) as response:
        # the soonest first token by live statistics: one of the Mistrals (both on the CPU engine here)
        assert response.headers["x-router-model"] in {"mistral-7b-fast", "mistral-7b-instruct"}
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    import json

    for event in events[:-1]:
        assert_conforms(json.loads(event), "CreateChatCompletionStreamResponse")


def test_models_lists_catalog_with_availability(sdk, router_url):
    ids = {m.id for m in sdk.models.list()}
    assert {"auto", "mistral-7b-instruct", "codellama-13b", "mistral-7b-fast", "gemini-pro", "gpt"} <= ids
    body = httpx.get(f"{router_url}/v1/models").json()
    assert_conforms(body, "ListModelsResponse")
    gpt = next(m for m in body["data"] if m["id"] == "gpt")
    assert gpt["available"] is False and gpt["unavailable_reason"] == "OPENAI_API_KEY not set"


def test_health_says_demo_model_and_missing_keys(router_url):
    body = httpx.get(f"{router_url}/health").json()
    assert body["status"] == "degraded"
    assert body["self_hosted_engine"]["demo"] is True
    assert "DEMO" in body["warnings"][0]
    assert body["models"]["claude-opus"]["reason"] == "ANTHROPIC_API_KEY not set"


def test_route_plans_the_seed_examples(router_url):
    def plan(body, **params):
        return httpx.post(f"{router_url}/v1/route", json=body, params=params, timeout=30).json()

    code = plan(
        {"model": "auto", "messages": [{"role": "user", "content": "Write a Python REST API with FastAPI"}]}
    )
    assert code["model"] == "codellama-13b"
    explicit = plan({"model": "gemini-1.5-pro", "messages": KUBERNETES}, assume_available="true")
    assert explicit["model"] == "gemini-pro"
    doc = "Revenue grew in every region this quarter. " * 15000 + "\n\nSummarize the key points."
    long_doc = {"model": "auto", "messages": [{"role": "user", "content": doc}], "max_tokens": 2000}
    assert plan(long_doc, assume_available="true")["model"] == "gemini-pro"


def test_cloud_only_without_keys_is_503(sdk):
    with pytest.raises(openai.APIStatusError) as excinfo:
        sdk.chat.completions.create(
            model="auto", messages=KUBERNETES, extra_body={"routing_strategy": "cloud_only"}
        )
    assert excinfo.value.status_code == 503
    assert excinfo.value.body["code"] == "no_healthy_backend"


def test_bad_requests_are_openai_errors(sdk, router_url):
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="gpt-17-ultra", messages=KUBERNETES)
    with pytest.raises(openai.BadRequestError) as excinfo:
        sdk.chat.completions.create(model="auto", messages=[{"role": "wizard", "content": "hi"}])
    assert excinfo.value.body["param"] == "messages[0].role"
    response = httpx.post(
        f"{router_url}/v1/chat/completions", content=b"{oops", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert_conforms(response.json(), "ErrorResponse")
