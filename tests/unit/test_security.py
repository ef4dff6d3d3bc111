"""Client keys, request limits, and a corpus of hostile inputs: never a 5xx, always OpenAI's error."""

from __future__ import annotations

import hmac
import json
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from app.api.routes import create_app
from app.config import parse_config
from app.security import auth
from app.security.auth import KeyStore, parse_keys
from tests.conformance import assert_conforms
from tests.support.wiring import make_service

CONFIG = Path(__file__).parents[2] / "deployments/configs/router.yaml"
ASK = {"model": "auto:rules", "messages": [{"role": "user", "content": "What is Kubernetes?"}]}
KEYS = "alice:sk-alice-0123456789,bob:sk-bob-9876543210"


def client_for(monkeypatch, **sections) -> TestClient:
    raw = yaml.safe_load(CONFIG.read_text())
    raw.update(sections)
    config = parse_config(raw)
    monkeypatch.setenv("ROUTER_API_KEYS", KEYS)
    monkeypatch.setenv("ROUTER_ADMIN_KEYS", "ops:sk-admin-secret")
    return TestClient(create_app(make_service(config)))


@pytest.fixture
def open_client(monkeypatch):
    with client_for(monkeypatch) as client:
        yield client


@pytest.fixture
def locked_client(monkeypatch):
    with client_for(monkeypatch, auth={"enabled": True}) as client:
        yield client


def assert_openai_error(response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert_conforms(response.json(), "ErrorResponse")
    if param is not None:
        assert response.json()["error"]["param"] == param
    return response.json()["error"]


# --- client authentication ----------------------------------------------------------------


def test_auth_off_needs_no_key(open_client):
    assert open_client.post("/v1/chat/completions", json=ASK).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer sk-wrong"},
        {"x-api-key": "sk-alice-012345678"},
        {"authorization": "Basic abc"},
    ],
    ids=["missing", "wrong-bearer", "wrong-x-api-key", "not-bearer"],
)
def test_missing_or_wrong_key_is_a_401_in_openai_format(locked_client, headers):
    response = locked_client.post("/v1/chat/completions", json=ASK, headers=headers)
    error = assert_openai_error(response, 401)
    assert error["code"] == "invalid_api_key" and error["type"] == "authentication_error"
    assert "sk-" not in response.text


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": "Bearer sk-alice-0123456789"},
        {"x-api-key": "sk-bob-9876543210"},
        {"authorization": "Bearer sk-admin-secret"},
    ],
    ids=["bearer", "x-api-key", "admin"],
)
def test_a_known_key_is_let_in(locked_client, headers):
    assert locked_client.post("/v1/chat/completions", json=ASK, headers=headers).status_code == 200
    assert locked_client.get("/v1/models", headers=headers).status_code == 200


def test_health_stays_open_and_every_other_route_is_closed(locked_client):
    assert locked_client.get("/health").status_code == 200
    for method, path in [("get", "/v1/models"), ("get", "/v1/budget"), ("post", "/v1/route")]:
        assert getattr(locked_client, method)(path).status_code == 401


def test_keys_are_kept_only_as_digests():
    store = KeyStore(parse_keys(KEYS))
    kept = json.dumps([[entry[0].hex(), entry[1].name] for entry in store._entries])
    assert "sk-alice-0123456789" not in kept and "sk-bob" not in kept
    assert store.identify("sk-alice-0123456789").name == "alice"


def test_keys_are_compared_in_constant_time_against_every_stored_key(monkeypatch):
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    store = KeyStore(parse_keys(KEYS), parse_keys("ops:sk-admin-secret"))
    assert store.identify("sk-alice-0123456789").name == "alice"  # matched first...
    assert len(compared) == 3  # ...yet every key was compared, with hmac.compare_digest
    assert all(len(a) == len(b) == 32 for a, b in compared)


# --- request limits -----------------------------------------------------------------------


@pytest.fixture
def tight_client(monkeypatch):
    limits = {
        "max_body_bytes": 20_000,
        "max_messages": 3,
        "max_message_chars": 1_000,
        "max_tokens_ceiling": 500,
        "n_ceiling": 1,
    }
    with client_for(monkeypatch, limits=limits) as client:
        yield client


def test_a_body_over_the_limit_is_a_413(tight_client):
    big = {"model": "auto:rules", "messages": [{"role": "user", "content": "x" * 30_000}]}
    assert_openai_error(tight_client.post("/v1/chat/completions", json=big), 413)


def test_a_chunked_body_over_the_limit_is_a_413(tight_client):
    def chunks():
        yield b'{"model": "auto:rules", "messages": [{"role": "user", "content": "'
        for _ in range(40):
            yield b"y" * 1_000
        yield b'"}]}'

    response = tight_client.post(
        "/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_openai_error(response, 413)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "hi"}] * 4}, "messages"),
        ({"messages": [{"role": "user", "content": "z" * 1_001}]}, "messages[0].content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "z" * 1_001}]}]},
            "messages[0].content",
        ),
        ({"messages": ASK["messages"], "max_tokens": 501}, "max_tokens"),
        ({"messages": ASK["messages"], "max_completion_tokens": 501}, "max_completion_tokens"),
        ({"messages": ASK["messages"], "n": 2}, "n"),
    ],
)
def test_requests_over_the_limits_are_400s_naming_the_param(tight_client, body, param):
    response = tight_client.post("/v1/chat/completions", json={"model": "auto:rules", **body})
    assert_openai_error(response, 400, param)
    route = tight_client.post("/v1/route", json={"model": "auto:rules", **body})
    assert_openai_error(route, 400, param)


# --- hostile inputs -----------------------------------------------------------------------

HOSTILE = [
    ("invalid-json", b'{"model": "auto:rules", "messages": [', "application/json"),
    ("not-an-object", b"[1, 2, 3]", "application/json"),
    ("null", b"null", "application/json"),
    ("text-plain", b"model=auto", "text/plain"),
    ("form", b"model=auto&messages=hi", "application/x-www-form-urlencoded"),
    (
        "deeply-nested",
        b'{"model": "auto:rules", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "application/json",
    ),
    (
        "invalid-utf8",
        b'{"model": "auto:rules", "messages": [{"role": "user", "content": "\xff\xfe\xfa"}]}',
        "application/json",
    ),
    ("negative-max-tokens", json.dumps({**ASK, "max_tokens": -5}).encode(), "application/json"),
    ("enormous-max-tokens", json.dumps({**ASK, "max_tokens": 10**30}).encode(), "application/json"),
    (
        "nan-temperature",
        b'{"model": "auto:rules", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
        "application/json",
    ),
    ("huge-float", json.dumps({**ASK, "temperature": 1e308}).encode(), "application/json"),
    ("empty-messages", json.dumps({"model": "auto:rules", "messages": []}).encode(), "application/json"),
    ("messages-not-list", json.dumps({"model": "auto:rules", "messages": "hi"}).encode(), "application/json"),
    (
        "content-wrong-type",
        json.dumps({"model": "auto:rules", "messages": [{"role": "user", "content": 5}]}).encode(),
        "application/json",
    ),
    (
        "model-wrong-type",
        json.dumps({"model": ["auto"], "messages": ASK["messages"]}).encode(),
        "application/json",
    ),
    ("tools-wrong-type", json.dumps({**ASK, "tools": "all of them"}).encode(), "application/json"),
    ("huge-model-name", json.dumps({**ASK, "model": "m" * 100_000}).encode(), "application/json"),
    ("empty-body", b"", "application/json"),
]


@pytest.mark.parametrize(("name", "content", "content_type"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_inputs_get_a_clean_4xx(open_client, name, content, content_type):
    headers = {"content-type": content_type} if content_type else {}
    for path in ("/v1/chat/completions", "/v1/route"):
        response = open_client.post(path, content=content, headers=headers)
        assert 400 <= response.status_code < 500, (name, path, response.status_code, response.text[:300])
        assert_conforms(response.json(), "ErrorResponse")
        assert "Traceback" not in response.text
    assert open_client.get("/health").status_code == 200


def test_a_lone_surrogate_is_never_a_5xx(open_client):
    # Valid JSON, invalid Unicode: Python accepts it; whatever happens next must not be a 5xx.
    content = b'{"model": "auto:rules", "messages": [{"role": "user", "content": "\\ud800"}]}'
    response = open_client.post(
        "/v1/chat/completions", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code < 500


def test_an_oversized_message_list_is_refused(open_client):
    body = {"model": "auto:rules", "messages": [{"role": "user", "content": "hi"}] * 5_000}
    assert_openai_error(open_client.post("/v1/chat/completions", json=body), 400, "messages")


def test_a_stream_closed_early_by_the_client_leaves_the_app_healthy(open_client):
    with open_client.stream("POST", "/v1/chat/completions", json={**ASK, "stream": True}) as response:
        next(response.iter_lines())
    assert open_client.post("/v1/chat/completions", json=ASK).status_code == 200
