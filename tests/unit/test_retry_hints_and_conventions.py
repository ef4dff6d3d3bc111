"""Issue #14, items 5 and 6, through the real FastAPI app and the official openai SDK.

Errors whose cause will not change on a retry carry ``x-should-retry: false`` (the SDK obeys it
instead of retrying 409, 429 and 5xx), and are 4xx where the client must change the request;
and the small OpenAI conventions: ``models.retrieve``, case-insensitive ``auto``, an ambiguous
name that says why, JSON bodies whatever their content-type, limits that name their setting.
"""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest

from app.backends.registry import build_backends
from app.config import load_config
from app.errors import (
    BudgetExhaustedError,
    ContextWindowExceededError,
    FeedbackExistsError,
    InvalidRequestError,
    NoHealthyBackendError,
    RateLimitError,
    RequestNotFoundError,
    RouterError,
    UpstreamAuthError,
    UpstreamUnavailableError,
    error_headers,
)
from tests.conformance import assert_conforms
from tests.fakes.backends import ScriptedBackend
from tests.support.wiring import app_client, make_service

CONFIG = Path(__file__).parents[2] / "deployments/configs/router.yaml"
SIMPLE = [{"role": "user", "content": "What is Kubernetes?"}]
IMAGE = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ],
    }
]


@pytest.fixture
def backends():
    """The local profile without cloud keys, as the registry builds it: self-hosted models answer
    (scripted), every cloud model is an ``UnavailableBackend`` naming its missing variable."""
    config = load_config(CONFIG)
    return build_backends(config, lambda name: ScriptedBackend(name), env={})


@pytest.fixture
def client(backends):
    with app_client(make_service(load_config(CONFIG), backends)) as test_client:
        yield test_client


@pytest.fixture
def requests_sent(client):
    """Every HTTP request the SDK sends through ``client``, retries included."""
    sent: list[str] = []
    client.event_hooks["request"].append(lambda request: sent.append(f"{request.method} {request.url.path}"))
    return sent


@pytest.fixture
def sdk(client):
    """The SDK as clients run it: with retries (2 here). Its backoff sleeps are cut to nothing,
    so a retry shows in the request count, not in the test's duration."""
    sdk = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client, max_retries=2)
    sdk._calculate_retry_timeout = lambda *args, **kwargs: 0.0  # type: ignore[method-assign]
    return sdk


# --- x-should-retry: the SDK gives up at once when a retry cannot help -------------------------


def test_sdk_does_not_retry_a_model_whose_provider_key_is_missing(sdk, requests_sent):
    with pytest.raises(openai.InternalServerError) as info:
        sdk.chat.completions.create(model="gpt", messages=SIMPLE)
    assert info.value.status_code == 503
    assert info.value.response.headers["x-should-retry"] == "false"
    assert "OPENAI_API_KEY" in info.value.message
    assert requests_sent == ["POST /v1/chat/completions"]  # one request: no retry


def test_cloud_only_without_any_cloud_key_is_a_503_without_retry(sdk, requests_sent):
    with pytest.raises(openai.InternalServerError) as info:
        sdk.chat.completions.create(
            model="auto", messages=SIMPLE, extra_body={"routing_strategy": "cloud_only"}
        )
    assert info.value.body["code"] == "no_healthy_backend"
    assert info.value.response.headers["x-should-retry"] == "false"
    assert len(requests_sent) == 1


def test_sdk_still_retries_a_cause_that_may_clear(sdk, backends, requests_sent):
    """A replica that is down may be back in a second: a plain 503, retried by the SDK."""
    backends["mistral-7b-instruct"].down = "deployment CPUEngine has no running replica"
    with pytest.raises(openai.InternalServerError) as info:
        sdk.chat.completions.create(model="mistral-7b-instruct", messages=SIMPLE)
    assert "x-should-retry" not in info.value.response.headers
    assert len(requests_sent) == 3  # the first try and max_retries=2


def test_no_vision_capable_model_is_a_400_naming_messages_without_retry(sdk, requests_sent, backends):
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="auto", messages=IMAGE)
    body = info.value.body
    assert body["param"] == "messages" and body["code"] == "unsupported_feature"
    assert "image input" in body["message"] and "gemini-flash (GOOGLE_CLOUD_PROJECT" in body["message"]
    assert info.value.response.headers["x-should-retry"] == "false"
    assert requests_sent == ["POST /v1/chat/completions"]
    assert all(not getattr(b, "calls", None) for b in backends.values())


def test_the_same_2mb_message_gets_the_same_status_whatever_its_content(client):
    """~400K tokens (fits only the 1M-token cloud windows, whose keys are missing) and ~1M tokens
    (fits no window at all): both a 400 context_length_exceeded, never a 503 for one of them."""
    two_mb = {"words": "word " * 400_000, "letters": " a" * 1_000_000}
    for name, text in two_mb.items():
        assert len(text.encode()) == 2_000_000
        body = {"model": "auto", "messages": [{"role": "user", "content": text}]}
        response = client.post("/v1/chat/completions", json=body)
        assert response.status_code == 400, (name, response.text[:300])
        error = response.json()["error"]
        assert (error["code"], error["param"]) == ("context_length_exceeded", "messages"), name
        assert response.headers["x-should-retry"] == "false"
    words = client.post(
        "/v1/chat/completions",
        json={"model": "auto", "messages": [{"role": "user", "content": two_mb["words"]}]},
    )
    assert (
        "Larger windows are unavailable here: gemini-pro (GOOGLE_CLOUD_PROJECT"
        in words.json()["error"]["message"]
    )


def test_a_larger_window_that_is_only_briefly_down_keeps_the_503_retryable(client, backends):
    """When a model that could take the prompt is down for a cause that may clear (a breaker,
    a replica), the request is not the client's fault: a 503 the SDK may retry."""
    backends["gemini-pro"] = ScriptedBackend("gemini-pro")
    backends["gemini-pro"].down = "circuit breaker open"
    client.app.state.service.backends["gemini-pro"] = backends["gemini-pro"]
    body = {"model": "auto", "messages": [{"role": "user", "content": "word " * 400_000}]}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 503, response.text[:300]
    assert "x-should-retry" not in response.headers


def test_every_4xx_a_client_must_fix_says_not_to_retry(client):
    cases = [
        {"model": "no-such-model", "messages": SIMPLE},  # 404
        {"model": "auto", "messages": SIMPLE, "temperature": 5},  # 400 from validation
        {"model": "auto", "messages": SIMPLE, "n": 2},  # 400 from the limits
    ]
    for body in cases:
        response = client.post("/v1/chat/completions", json=body)
        assert 400 <= response.status_code < 500
        assert response.headers["x-should-retry"] == "false", body
    assert client.get("/v1/nothing-here").headers["x-should-retry"] == "false"


@pytest.mark.parametrize(
    ("error", "header"),
    [
        (InvalidRequestError("bad"), "false"),
        (ContextWindowExceededError("too long"), "false"),
        (FeedbackExistsError("rated already"), "false"),  # a 409: the SDK would retry it otherwise
        (BudgetExhaustedError("spent for today"), "false"),  # a 429 that lasts until midnight
        (UpstreamAuthError("the provider refused our key"), "false"),  # a 502 no retry fixes
        (NoHealthyBackendError("only models without keys", retry_helps=False), "false"),
        (NoHealthyBackendError("a replica is down"), None),
        (RateLimitError("too many requests this minute", retry_after=3), None),
        (UpstreamUnavailableError("engine hiccup"), None),
        (RequestNotFoundError("not written yet on this replica"), None),
        (RouterError("unexpected"), None),
        (ValueError("a bug"), None),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_retry_hint_per_error(error, header):
    assert error_headers(error).get("x-should-retry") == header


def test_client_rate_limit_keeps_retry_after_and_no_veto():
    headers = error_headers(RateLimitError("slow down", retry_after=2.4))
    assert headers == {"retry-after": "2"}


# --- conventions ------------------------------------------------------------------------------


def test_models_retrieve_through_the_sdk(sdk):
    gpt = sdk.models.retrieve("gpt")
    assert (gpt.id, gpt.object, gpt.owned_by) == ("gpt", "model", "openai")
    assert sdk.models.retrieve("claude-3-opus").id == "claude-opus"  # an alias resolves
    assert sdk.models.retrieve("self_hosted/mistral-7b-instruct").id == "mistral-7b-instruct"
    assert sdk.models.retrieve("AUTO").id == "auto"
    assert sdk.models.retrieve("Auto:Cost").id == "auto:cost"
    assert sdk.models.retrieve("auto:0.2").id == "auto:0.2"


def test_models_retrieve_answers_the_model_object_with_availability(client):
    response = client.get("/v1/models/gemini-pro")
    assert response.status_code == 200
    model = response.json()
    assert_conforms(model, "Model")
    assert model["available"] is False and "GOOGLE_CLOUD_PROJECT" in model["unavailable_reason"]
    assert model == {m["id"]: m for m in client.get("/v1/models").json()["data"]}["gemini-pro"]


def test_models_retrieve_of_an_unknown_model_is_openai_404(sdk, client, requests_sent):
    with pytest.raises(openai.NotFoundError) as info:
        sdk.models.retrieve("no-such-model")
    assert info.value.body["code"] == "model_not_found"
    assert requests_sent == ["GET /v1/models/no-such-model"]
    response = client.get("/v1/models/auto:fastest")
    assert response.status_code == 404
    assert_conforms(response.json(), "ErrorResponse")


def test_an_ambiguous_name_says_which_models_it_could_mean(sdk, client):
    shared = "mistralai/Mistral-7B-Instruct-v0.3"  # the model id of mistral-7b-instruct and mistral-7b-fast
    with pytest.raises(openai.NotFoundError) as info:
        sdk.chat.completions.create(model=shared, messages=SIMPLE)
    error = info.value.body
    assert error["code"] == "model_ambiguous" and error["param"] == "model"
    assert "mistral-7b-fast" in error["message"] and "mistral-7b-instruct" in error["message"]
    assert "name one of them" in error["message"]
    with pytest.raises(openai.NotFoundError, match="ambiguous"):
        sdk.models.retrieve(shared)
    assert client.get("/v1/models/self_hosted%2FmistralAI%2FMistral-7B-Instruct-v0.3").json()["error"][
        "code"
    ] == ("model_ambiguous")


@pytest.mark.parametrize(
    ("model", "extra", "strategy"),
    [
        ("AUTO", {}, "auto"),
        ("Auto", {}, "auto"),
        ("Auto:cost", {}, "cost"),
        ("AUTO:COST", {}, "cost"),
        ("auto:Rules", {}, "rules"),
        ("auto", {"routing_strategy": "FAST"}, "fast"),
        ("AUTO:fast", {"routing_strategy": "Fast"}, "fast"),
        ("auto:PRIVATE_FIRST", {}, "private_first"),
    ],
)
def test_auto_and_strategy_names_ignore_case(client, model, extra, strategy):
    response = client.post("/v1/chat/completions", json={"model": model, "messages": SIMPLE, **extra})
    assert response.status_code == 200, response.text
    assert response.headers["x-router-strategy"] == strategy


def test_auto_with_a_margin_still_means_the_margin(client):
    plan = client.post("/v1/route", json={"model": "AUTO:0.3", "messages": SIMPLE}).json()
    assert (plan["strategy"], plan["quality_margin"]) == ("auto", 0.3)


def test_disagreeing_strategies_still_refused_whatever_the_case(client):
    response = client.post(
        "/v1/chat/completions", json={"model": "auto:FAST", "routing_strategy": "cost", "messages": SIMPLE}
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "routing_strategy"


@pytest.mark.parametrize(
    "content_type",
    [None, "application/x-www-form-urlencoded", "text/plain", "application/json; charset=utf-8"],
    ids=["none", "curl -d (form, what curl sends)", "text/plain", "json with charset"],
)
def test_a_json_body_is_read_whatever_its_content_type(client, content_type):
    body = json.dumps({"model": "auto:rules", "messages": SIMPLE}).encode()
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/v1/chat/completions", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "mistral-7b-instruct"


@pytest.mark.parametrize(
    ("content_type", "says"),
    [
        ("application/x-www-form-urlencoded", "sent as application/x-www-form-urlencoded"),
        (None, "without a content-type"),
    ],
)
def test_a_body_that_is_not_json_says_what_was_wrong(client, content_type, says):
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/v1/chat/completions", content=b"model=auto&messages=hi", headers=headers)
    assert response.status_code == 400
    assert_conforms(response.json(), "ErrorResponse")
    error = response.json()["error"]
    assert error["code"] == "invalid_json"
    assert "not valid JSON" in error["message"] and says in error["message"]
    assert "application/json" in error["message"]


def test_n_over_the_ceiling_names_the_setting(sdk):
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="auto", messages=SIMPLE, n=2)
    assert info.value.body["param"] == "n"
    assert "limits.n_ceiling" in info.value.body["message"]


@pytest.mark.parametrize(
    ("body", "setting"),
    [
        ({"model": "auto", "messages": SIMPLE, "max_tokens": 10**7}, "limits.max_tokens_ceiling"),
        ({"model": "auto", "messages": SIMPLE * 3000}, "limits.max_messages"),
    ],
)
def test_other_request_limits_name_their_setting(client, body, setting):
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert setting in response.json()["error"]["message"]
