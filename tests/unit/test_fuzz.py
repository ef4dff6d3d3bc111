"""Property-based fuzzing of the ingress with schemathesis: the real FastAPI app over scripted
backends (auth off), reached in-process through schemathesis's ASGI transport (no server).

Two documents drive the generation:

- the router's own OpenAPI document (``/openapi.json`` of the app): every route it declares;
- OpenAI's ``POST /chat/completions`` and ``GET /models`` (``tests/specs/openai-chat-subset.json``)
  pointed at the same app under ``/v1``: what an OpenAI client may send, valid and invalid.

Both generate positive and negative cases. Properties: no answer is a 5xx; every 4xx body is
OpenAI's ``ErrorResponse``; every non-stream 200 chat body is a ``CreateChatCompletionResponse``
(and a 200 ``/v1/models`` a ``ListModelsResponse``); every event of a 200 stream is a chunk or an
error in OpenAI's format. After the runs the app still answers ``/health`` and a plain chat.

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
from fastapi.testclient import TestClient

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi as schemathesis_asgi

from app.api.routes import create_app
from app.config import BUILTIN_STRATEGIES, parse_config
from tests.conformance import assert_conforms
from tests.support.wiring import make_service

pytestmark = pytest.mark.slow  # the real CPU engine / property-based fuzzing: `make test-fast` skips it

PROJECT = Path(__file__).parents[2]
CONFIG = PROJECT / "deployments/configs/router.yaml"
OPENAI_SUBSET = PROJECT / "tests/specs/openai-chat-subset.json"
ASK = {"model": "auto", "messages": [{"role": "user", "content": "What is Kubernetes?"}]}
MAX_EXAMPLES = 150

FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    # Generation is slow and filtered for OpenAI's large request schema; that is expected here.
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


class ServiceOnce:
    """The app, with its lifespan (the service's start and close) run once for the module.

    schemathesis's pytest plugin ends every ASGI app's lifespan after each test item, and a
    ``RouterService`` cannot start again once closed (its ledger stays closed). So the first
    startup starts the real lifespan, later startups and shutdowns are acknowledged without
    touching it, and the real shutdown runs only once ``final`` is set, with the module.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.final = False
        self._running: Any = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self._running is None:
                    self._running = self.app.router.lifespan_context(self.app)
                    await self._running.__aenter__()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.final and self._running is not None:
                    running, self._running = self._running, None
                    await running.__aexit__(None, None, None)
                await send({"type": "lifespan.shutdown.complete"})
                return


def build_app() -> ServiceOnce:
    """The real app over scripted backends, auth off, with its own ledger file and generous budgets
    so that thousands of fuzzed requests never exhaust them (that 429 would be fine, but
    ``/health`` would then report the models as down)."""
    raw = yaml.safe_load(CONFIG.read_text())
    raw["auth"] = {"enabled": False}
    raw["ledger"]["path"] = "fuzz-ledger.db"  # in this run's state folder (tests/conftest.py), alone
    raw["cost_rules"]["daily_budgets"] = dict.fromkeys(raw["cost_rules"]["daily_budgets"], 1000000.0)
    config = parse_config(raw)
    service = make_service(config)
    return ServiceOnce(create_app(service))


def openai_document() -> dict[str, Any]:
    document = copy.deepcopy(json.loads(OPENAI_SUBSET.read_text(encoding="utf-8")))
    document["servers"] = [{"url": "/v1"}]  # OpenAI's paths, under the router's /v1 prefix
    return document


# NOTE: ``schemathesis.pytest.from_fixture`` (lazy schemas) fails on pytest 9.2 (it sets
# ``request.node._nodeid``, gone from pytest), so the schemas are built at import, which
# ``@schema.parametrize()`` needs anyway. The router's document is read from its /openapi.json
# with a plain TestClient: ``schemathesis.openapi.from_asgi("/openapi.json", APP)`` would do the
# same but would also start the app's lifespan (the service) during test collection.
APP = build_app()
ROUTER_SCHEMA = schemathesis.openapi.from_dict(TestClient(APP.app).get("/openapi.json").json())
ROUTER_SCHEMA.app = APP
OPENAI_SCHEMA = schemathesis.openapi.from_dict(openai_document())
OPENAI_SCHEMA.app = APP


# Generated model names are random strings, so nearly every chat would stop at a 404 before
# routing, and few generated bodies ask for a stream. For bodies with a string ``model`` the
# generator also draws the names the router knows (``auto`` and its strategies, the models,
# their aliases, OpenAI ids it aliases) and, where ``stream`` is absent or a boolean, a stream:
# generated requests then reach the planner, the backends, the streams and the answers' shapes.
KNOWN_MODELS = sorted(
    {"auto"}
    | {f"auto:{name}" for name in (*BUILTIN_STRATEGIES, *APP.app.state.service.config.strategies)}
    | set(APP.app.state.service.config.models)
    | {alias for spec in APP.app.state.service.config.models.values() for alias in spec.aliases}
)


def _steer(_context, body: Any):
    if not (isinstance(body, dict) and isinstance(body.get("model"), str)):
        return st.just(body)
    models = st.sampled_from([*KNOWN_MODELS, body["model"]])
    streams = (
        st.sampled_from([body.get("stream"), True])
        if isinstance(body.get("stream", False), bool)
        else st.none()
    )

    def steered(choice: tuple[str, bool | None]) -> dict[str, Any]:
        model, stream = choice
        return {**body, "model": model} if stream is None else {**body, "model": model, "stream": stream}

    return st.tuples(models, streams).map(steered)


ROUTER_SCHEMA.hook("flatmap_body")(_steer)
OPENAI_SCHEMA.hook("flatmap_body")(_steer)


@pytest.fixture(scope="module", autouse=True)
def _close_the_service_with_the_module():
    yield
    APP.final = True
    with schemathesis_asgi.get_client(APP):  # a lifespan to end, if the last test's was ended already
        pass
    schemathesis_asgi.shutdown_lifespans()


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
                assert_conforms(
                    data, "ErrorResponse" if "error" in data else "CreateChatCompletionStreamResponse"
                )
        else:
            assert_conforms(_json(response), "CreateChatCompletionResponse")
    elif full_path == "/v1/models":
        assert_conforms(_json(response), "ListModelsResponse")


CHECKS = [not_a_server_error, openai_shapes]


def still_healthy(app) -> None:
    """After the run: /health is 200 and a plain chat answers, through the same transport (and
    so the same running service)."""
    health = call(app, "GET", "/health")
    assert health.status_code == 200, health.text
    chat = call(app, "POST", "/v1/chat/completions", json=ASK)
    assert chat.status_code == 200, chat.text
    assert_conforms(chat.json(), "CreateChatCompletionResponse")


def call(app, method: str, path: str, **kwargs: Any):
    with schemathesis_asgi.get_client(app) as client:
        return client.request(method, f"http://{schemathesis_asgi.HOST}{path}", **kwargs)


# --- the runs ---------------------------------------------------------------------------


@ROUTER_SCHEMA.parametrize()
@FUZZ
def test_router_openapi_document(case):
    case.call_and_validate(checks=CHECKS)


@OPENAI_SCHEMA.parametrize()
@FUZZ
def test_openai_chat_schema_against_the_router(case):
    case.call_and_validate(checks=CHECKS)


def test_the_app_is_healthy_after_fuzzing():
    still_healthy(APP)
