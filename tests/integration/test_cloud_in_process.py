"""The in-process placement (the default): cloud adapters inside the ingress's own process,
each provider its local fake. No Ray: the real FastAPI app over the real adapters."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from app.api.routes import create_app
from app.backends.registry import build_backends
from app.config import parse_config
from app.service import RouterService
from tests.fakes.backends import ScriptedBackend
from tests.integration.conftest import FAKE_ENV, default_config, with_fakes


@pytest.fixture(scope="module")
def client(fakes):
    raw = with_fakes(default_config(), fakes)
    raw["serving"]["cloud_adapters"] = "in_process"
    config = parse_config(raw)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {**FAKE_ENV, **fakes["metadata"].env()}.items():  # ADC reads the environment
            patch.setenv(key, value)
        fakes["metadata"].reload_google_auth()
        backends = build_backends(config, self_hosted=ScriptedBackend)
        with TestClient(create_app(RouterService(config, backends))) as test_client:
            yield test_client


@pytest.mark.parametrize(
    ("model", "provider"), [("gpt", "openai"), ("claude-haiku", "anthropic"), ("gemini-flash", "vertex_ai")]
)
def test_each_provider_answers_and_streams_in_process(client, model, provider):
    body = {"model": model, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 50}
    plain = client.post("/v1/chat/completions", json=body)
    assert plain.status_code == 200, plain.text
    assert plain.headers["x-router-provider"] == provider
    text = plain.json()["choices"][0]["message"]["content"]
    assert text
    streamed = client.post("/v1/chat/completions", json={**body, "stream": True})
    assert streamed.status_code == 200
    chunks = [json.loads(line[6:]) for line in streamed.text.splitlines() if line.startswith("data: {")]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == text
    assert streamed.text.rstrip().endswith("data: [DONE]")
