"""Property-based fuzzing of the ingress with schemathesis: the real FastAPI app over scripted
backends (auth off), reached in-process through schemathesis's ASGI transport (no server).

Two documents drive the generation:

- the router's own OpenAPI document (``/openapi.json`` of the app): every route it declares;
- OpenAI's ``POST /chat/completions`` and ``GET /models`` (``tests/specs/openai-chat-subset.json``)
  pointed at the same app under ``/v1``: what an OpenAI client may send, valid and invalid.

Both generate positive and negative cases. Properties: no answer is a 5xx; every 4xx body is
OpenAI's ``ErrorResponse``; every non-stream 200 chat body is a ``CreateChatCompletionResponse``
(and a 200 ``/v1/models`` a ``ListModelsResponse``); every event of a 200 stream is a chunk or an
error in OpenAI's format. After each run the app still answers ``/health`` and a plain chat.

Runs are reproducible (``derandomize=True``, no example database) and bounded (``MAX_EXAMPLES``
per operation and phase).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402  (after the importorskip)
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.python import asgi as schemathesis_asgi  # noqa: E402

from app.api.routes import create_app  # noqa: E402
from app.config import parse_config  # noqa: E402
from app.service import RouterService  # noqa: E402
from tests.conformance import assert_conforms  # noqa: E402
from tests.fakes.backends import ScriptedBackend  # noqa: E402

PROJECT = Path(__file__).parents[2]
CONFIG = PROJECT / "deployments/configs/router.yaml"
OPENAI_SUBSET = PROJECT / "tests/specs/openai-chat-subset.json"
ASK = {"model": "auto", "messages": [{"role": "user", "content": "What is Kubernetes?"}]}
MAX_EXAMPLES = 100

FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


async def no_wait(_seconds: float) -> None:
    """Retries back off without sleeping."""


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The real app over scripted backends, auth off, with its own ledger and generous budgets so
    thousands of fuzzed requests never exhaust them (that 429 is fine, but ``/health`` would then
    report the models as down)."""
    raw = yaml.safe_load(CONFIG.read_text())
    raw["auth"] = {"enabled": False}
    raw["ledger"]["path"] = str(tmp_path_factory.mktemp("fuzz-ledger") / "ledger.db")
    raw["cost_rules"]["daily_budgets"] = {k: 1_000_000.0 for k in raw["cost_rules"]["daily_budgets"]}
    config = parse_config(raw)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("HYBRID_ROUTER_STATE_DIR", raising=False)  # the ledger goes where the config says
        service = RouterService(config, {name: ScriptedBackend(name) for name in config.models}, sleep=no_wait)
    application = create_app(service)
    yield application
    # schemathesis starts the app's lifespan on the first request and keeps it for the process;
    # stop it here so the service closes (ledger, background tasks) with this module.
    schemathesis_asgi.shutdown_lifespans()


@pytest.fixture(scope="module")
def router_schema(app):
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture(scope="module")
def openai_schema(app):
    document = copy.deepcopy(json.loads(OPENAI_SUBSET.read_text(encoding="utf-8")))
    document["servers"] = [{"url": "/v1"}]  # OpenAI's paths, under the router's /v1 prefix
    schema = schemathesis.openapi.from_dict(document)
    schema.app = app
    return schema


# --- checks -----------------------------------------------------------------------------


def _json(response) -> Any:
    try:
        return json.loads(response.content)
    except ValueError as exc:
        raise AssertionError(f"{response.status_code} body is not JSON: {response.content[:300]!r}") from exc


def _is_stream(response) -> bool:
    return response.headers.get("content-type", [""])[0].startswith("text/event-stream")


def _sse_data(text: str) -> list[str]:
    return [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]


def openai_shapes(ctx, response, case) -> None:
    """4xx: OpenAI's ErrorResponse. 200 chat: a completion, or a stream of chunks in OpenAI's
    format ending in [DONE] (an error event mid-stream is OpenAI's error format too)."""
    status = response.status_code
    path = case.operation.path
    full_path = case.operation.schema.get_full_path(path)
    if 400 <= status < 500:
        assert_conforms(_json(response), "ErrorResponse")
        return
    if status != 200:
        return
    if full_path == "/v1/chat/completions":
        if _is_stream(response):
            events = _sse_data(response.content.decode())
            assert events and events[-1] == "[DONE]", events[-3:]
            for event in events[:-1]:
                data = json.loads(event)
                assert_conforms(data, "ErrorResponse" if "error" in data else "CreateChatCompletionStreamResponse")
        else:
            assert_conforms(_json(response), "CreateChatCompletionResponse")
    elif full_path == "/v1/models":
        assert_conforms(_json(response), "ListModelsResponse")


CHECKS = [not_a_server_error, openai_shapes]


def still_healthy(schema) -> None:
    """After the run: /health is 200 and a plain chat answers, through the same transport."""
    health = schema_app_call(schema, "GET", "/health")
    assert health.status_code == 200, health.text
    chat = schema_app_call(schema, "POST", "/v1/chat/completions", json=ASK)
    assert chat.status_code == 200, chat.text
    assert_conforms(chat.json(), "CreateChatCompletionResponse")


def schema_app_call(schema, method: str, path: str, **kwargs: Any):
    with schemathesis_asgi.get_client(schema.app) as client:
        return client.request(method, f"http://{schemathesis_asgi.HOST}{path}", **kwargs)


# --- the runs ---------------------------------------------------------------------------

router_doc = schemathesis.pytest.from_fixture("router_schema")
openai_doc = schemathesis.pytest.from_fixture("openai_schema")


@router_doc.parametrize()
@FUZZ
def test_router_openapi_document(case):
    case.call_and_validate(checks=CHECKS)


@openai_doc.parametrize()
@FUZZ
def test_openai_chat_schema_against_the_router(case):
    case.call_and_validate(checks=CHECKS)


def test_the_app_is_healthy_after_fuzzing(router_schema):
    still_healthy(router_schema)
