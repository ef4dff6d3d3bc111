"""No provider key leaves the real Serve app: not in a response, not on an extra route, and not in
what Serve itself keeps of the app (the deployments' args live in the controller, in its
checkpoints and in ``serve status``): the keys reach the replicas only through their environment.

Uses the session's ``cloud`` app (tests/integration/conftest.py), whose providers are the local
fakes with the keys of ``FAKE_ENV``.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.integration.conftest import FAKE_ENV

pytestmark = pytest.mark.ray

APP_NAME = "cloud"  # the name conftest's ``cloud_url`` runs the app under
# The provider credentials; the GCP project id is an identifier, not a secret.
KEYS = {name: value for name, value in FAKE_ENV.items() if name != "TEST_GCP_PROJECT"}
PROVIDERS = [("gpt", "openai"), ("claude-haiku", "anthropic"), ("gemini-flash", "vertex_ai")]


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def shown(response: httpx.Response) -> str:
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    return f"{response.status_code}\n{headers}\n\n{response.text}"


def leaks(texts: dict[str, str]) -> list[str]:
    return [f"{name} in {what}" for what, text in texts.items() for name, key in KEYS.items() if key in text]


def test_no_key_reaches_a_response(cloud_url):
    chat = f"{cloud_url}/v1/chat/completions"
    seen: dict[str, str] = {
        "health": shown(httpx.get(f"{cloud_url}/health", timeout=30)),
        "models": shown(httpx.get(f"{cloud_url}/v1/models", timeout=30)),
    }
    for model, provider in PROVIDERS:
        response = httpx.post(
            chat, json={"model": model, "messages": ask("Say hello."), "max_tokens": 20}, timeout=60
        )
        assert response.status_code == 200, response.text
        assert response.headers["x-router-provider"] == provider
        seen[f"{model} chat"] = shown(response)
    for model, fault in [
        ("gpt", "[[fault@fake-openai:401]]"),
        ("claude-haiku", "[[fault@fake-anthropic:401]]"),
    ]:
        refused = httpx.post(chat, json={"model": model, "messages": ask(f"hi {fault}")}, timeout=60)
        assert refused.status_code == 502, refused.text  # the provider refused the router's key
        assert refused.json()["error"]["code"] == "upstream_authentication_failed"
        seen[f"{model} 401"] = shown(refused)
    assert leaks(seen) == []


def test_metrics_are_not_served_on_the_app_route(cloud_url):
    """Metrics are exported on Ray's own metrics port only, never through the ingress."""
    response = httpx.get(f"{cloud_url}/metrics", timeout=30)
    assert response.status_code == 404
    assert "router_requests" not in response.text


def _deployment_args(app_name: str) -> dict[str, dict[str, Any]]:
    """What the Serve controller holds for each deployment of the app: the pickled init args and
    kwargs, the user config and the deployment config, as Serve applied them."""
    from ray import serve
    from ray.serve.context import _get_global_client

    client = _get_global_client()
    details = client.get_serve_details()
    deployments = details["applications"][app_name]["deployments"]
    held: dict[str, dict[str, Any]] = {}
    for name, detail in deployments.items():
        info, _route = client.get_deployment_info(name, app_name)
        replica = info.replica_config
        held[name] = {
            "init_args": replica.serialized_init_args or b"",
            "init_kwargs": replica.serialized_init_kwargs or b"",
            "user_config": json.dumps(info.deployment_config.user_config, default=str),
            "detail": json.dumps(_without_runtime_env(detail), default=str),
        }
    held["(application)"] = {
        "detail": json.dumps(_without_runtime_env(details["applications"][app_name]), default=str),
        "status": str(serve.status()),
    }
    return held


def _without_runtime_env(value: Any) -> Any:
    """The environment is where the keys are meant to be (the cluster's runtime_env stands in for
    a Kubernetes Secret here): it is left out of the scan."""
    if isinstance(value, dict):
        return {k: _without_runtime_env(v) for k, v in value.items() if k != "runtime_env"}
    if isinstance(value, list):
        return [_without_runtime_env(v) for v in value]
    return value


def test_the_applied_deployment_args_hold_no_key(cloud_url):
    held = _deployment_args(APP_NAME)
    ingress = next(name for name in held if name.startswith("RouterIngress"))
    # The args are the router config: they name the variables the keys are read from...
    assert b"TEST_OPENAI_KEY" in held[ingress]["init_args"]
    assert any(name.startswith("CloudAdapter-") for name in held)  # adapters run as their own deployments
    # ...and hold no key, in any deployment, in any form Serve keeps.
    found = [
        f"{key_name} in {deployment}.{part}"
        for deployment, parts in held.items()
        for part, blob in parts.items()
        for key_name, key in KEYS.items()
        if (key.encode() if isinstance(blob, bytes) else key) in blob
    ]
    assert found == []
