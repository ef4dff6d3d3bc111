"""No credential, and no prompt, leaves the router where it should not. No Ray: the real FastAPI
app over the real cloud adapters, each provider its local fake (as in
``tests/integration/test_cloud_in_process.py``), client auth on.

The secrets are unusual, greppable values: the providers' keys, the Vertex AI access token the
fake metadata server hands out, the client keys, a key a client presents wrongly, and the token
in the budget-alert webhook's URL (a local recorder, so alerts really are posted). One scenario
goes through every route, each provider answering JSON and streams, upstream faults (401, 429,
500, a stream cut), an invalid request and an unknown model, while every log record of the
process is captured (a root handler at DEBUG, a handler on ``hybrid_router`` at DEBUG, and a spy
on ``Logger.callHandlers`` for loggers that do not propagate), with stdout and stderr (capfd).

Asserted: no secret in any response body or header, log record or output; with
``logging.log_prompts`` off (the default) no prompt text in any log record at INFO or above
or output; and, so that the scan is known to be able to fail, with ``log_prompts`` on the prompt
is in the ``route_decision`` line. ``GET /metrics`` on the ingress is a 404 (metrics are served
only on Ray's own metrics port). Also covered: a vendor SDK's DEBUG records (which quote request
bodies) stay out of the logs, and an upstream error that quotes the router's key is redacted.
"""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.backends.registry import build_backends
from app.config import parse_config
from app.observability.logs import LOGGER_NAME, JsonFormatter
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.backends import ScriptedBackend
from tests.fakes.gemini_server import FakeGemini
from tests.fakes.metadata_server import FakeMetadata
from tests.fakes.openai_server import FakeOpenAI, openai_error
from tests.fakes.server import FakeServer
from tests.integration.conftest import default_config, with_fakes
from tests.support.wiring import app_client, make_service

OPENAI_KEY = "sk-test-SECRET-openai-4242"
ANTHROPIC_KEY = "sk-ant-test-SECRET-anthropic-4242"
GCP_TOKEN = "ya29.test-SECRET-gcp-token-4242"
WEBHOOK_TOKEN = "T0KEN-SECRET"
CLIENT_KEY = "sk-router-SECRET-client-4242"
TIGHT_KEY = "sk-router-SECRET-tight-4242"  # a client key with one request a minute
ADMIN_KEY = "sk-router-SECRET-admin-4242"
WRONG_KEY = "sk-router-SECRET-wrong-4242"
SECRETS = {
    "openai key": OPENAI_KEY,
    "anthropic key": ANTHROPIC_KEY,
    "vertex access token": GCP_TOKEN,
    "webhook token": WEBHOOK_TOKEN,
    "client key": CLIENT_KEY,
    "rate-limited client key": TIGHT_KEY,
    "admin key": ADMIN_KEY,
    "presented wrong key": WRONG_KEY,
}
PROMPT = "PROMPT-CANARY-x7q"  # every prompt of the scenario carries it
AUTH = {"authorization": f"Bearer {CLIENT_KEY}"}
PROVIDERS = [("gpt", "openai"), ("claude-haiku", "anthropic"), ("gemini-flash", "vertex_ai")]


class FakeWebhook(FakeServer):
    """Records the budget alerts posted to it, at any path."""

    def __init__(self) -> None:
        super().__init__(name="fake-webhook")

    def routes(self) -> list[Route]:
        return [Route("/{path:path}", self.hook, methods=["POST"])]

    async def hook(self, request: Request) -> JSONResponse:
        await self.record(request)
        return JSONResponse({"ok": True})


@pytest.fixture(scope="module")
def fakes():
    servers = {
        "openai": FakeOpenAI(api_key=OPENAI_KEY),
        "vllm": FakeOpenAI(api_key=None, name="fake-vllm"),
        "anthropic": FakeAnthropic(api_key=ANTHROPIC_KEY),
        "gemini": FakeGemini(),
        "metadata": FakeMetadata(project="test-project", token=GCP_TOKEN),
        "webhook": FakeWebhook(),
    }
    for server in servers.values():
        server.start()
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture
def env(fakes, monkeypatch, tmp_path):
    """Every credential comes from the environment, as in production."""
    values = {
        "TEST_OPENAI_KEY": OPENAI_KEY,
        "TEST_ANTHROPIC_KEY": ANTHROPIC_KEY,
        "TEST_GCP_PROJECT": "test-project",
        "BUDGET_ALERT_WEBHOOK_URL": f"{fakes['webhook'].url}/services/{WEBHOOK_TOKEN}",
        "ROUTER_API_KEYS": f"ci:{CLIENT_KEY},tight:{TIGHT_KEY}",
        "ROUTER_ADMIN_KEYS": f"ops:{ADMIN_KEY}",
        "HYBRID_ROUTER_STATE_DIR": str(tmp_path),  # a ledger of its own: alerts fire afresh
        **fakes["metadata"].env(),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    fakes["metadata"].reload_google_auth()
    for server in fakes.values():
        server.reset()
    return values


@contextlib.contextmanager
def router(fakes, **logging_config: Any) -> Iterator[TestClient]:
    raw = with_fakes(default_config(), fakes)
    raw["serving"]["cloud_adapters"] = "in_process"
    raw["auth"] = {
        "enabled": True,
        "limits": {"daily_budget_usd": 100.0},
        "key_limits": {"tight": {"requests_per_minute": 1}},
    }
    raw["logging"] = {**raw.get("logging", {}), **logging_config}
    # An alert at any spend, so the webhook is posted to during the scenario.
    raw["cost_rules"]["alerts"].append({"name": "any_spend", "threshold": 1e-9, "action": "notify_ops_team"})
    raw["cost_rules"]["webhook"] = {**raw["cost_rules"].get("webhook", {}), "retries": 0}
    config = parse_config(raw)
    backends = build_backends(config, self_hosted=ScriptedBackend)
    with app_client(make_service(config, backends)) as client:
        yield client
    # Leaving the block closed the service: budget refreshes settled, webhook posts drained.


# --- capture --------------------------------------------------------------------------------


@dataclass
class Transcript:
    """Everything the process said: log records (formatted every way a handler could), and the
    responses (status, headers, body) the clients got."""

    records: list[logging.LogRecord] = field(default_factory=list)
    responses: list[tuple[str, str]] = field(default_factory=list)  # (what, headers + body)
    output: str = ""

    def log_texts(self) -> list[str]:
        return [render(record) for record in self.records]

    def response_texts(self) -> list[str]:
        return [text for _, text in self.responses]


def render(record: logging.LogRecord) -> str:
    """A record as any handler could write it: message, args, structured event, exception."""
    parts = [record.name, str(record.msg), repr(record.args)]
    with contextlib.suppress(Exception):
        parts.append(record.getMessage())
    with contextlib.suppress(Exception):
        parts.append(JsonFormatter().format(record))
    if record.exc_info and record.exc_info[1] is not None:
        parts.append("".join(traceback.format_exception(*record.exc_info)))
    if record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(record.stack_info)
    parts.append(repr(getattr(record, "event", "")))
    return "\n".join(parts)


class _Collect(logging.Handler):
    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record)


@contextlib.contextmanager
def capture_logs(monkeypatch) -> Iterator[list[logging.LogRecord]]:
    """Every record any logger of the process hands to its handlers, at DEBUG where the logger's
    level is not set (a level an adapter or the app set on purpose is kept)."""
    records: list[logging.LogRecord] = []
    root, ours = logging.getLogger(), logging.getLogger(LOGGER_NAME)
    handler = _Collect(records)
    real_call_handlers = logging.Logger.callHandlers

    def spy(self: logging.Logger, record: logging.LogRecord) -> None:
        records.append(record)  # also records that a non-propagating logger keeps from the root
        real_call_handlers(self, record)

    monkeypatch.setattr(logging.Logger, "callHandlers", spy)
    levels = root.level, ours.level
    root.setLevel(logging.DEBUG)
    ours.setLevel(logging.DEBUG)  # as LOG_LEVEL=debug: the decision line also lists every drop
    root.addHandler(handler)
    if not ours.propagate:
        ours.addHandler(handler)
    try:
        yield records
    finally:
        unique = {id(r): r for r in records}
        records[:] = list(unique.values())
        root.removeHandler(handler)
        ours.removeHandler(handler)
        root.setLevel(levels[0])
        ours.setLevel(levels[1])


def record(transcript: Transcript, what: str, response) -> Any:
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    transcript.responses.append((what, f"{response.status_code}\n{headers}\n\n{response.text}"))
    return response


def ask(text: str, **body: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": f"{PROMPT} {text}"}], "max_tokens": 50, **body}


def scenario(client: TestClient, transcript: Transcript) -> None:
    """Every route, each provider, JSON and streams, upstream faults, bad requests."""

    def get(what: str, path: str, headers: dict[str, str] | None = None):
        return record(transcript, what, client.get(path, headers=AUTH if headers is None else headers))

    def post(what: str, path: str, body: Any, headers: dict[str, str] | None = None):
        return record(
            transcript, what, client.post(path, json=body, headers=AUTH if headers is None else headers)
        )

    assert get("health", "/health", {}).status_code == 200
    assert get("models", "/v1/models").status_code == 200
    assert get("budget", "/v1/budget").status_code == 200
    assert (
        post("route", "/v1/route", {"model": "auto:rules", **ask("Which model for this?")}).status_code == 200
    )
    for model, provider in PROVIDERS:
        plain = post(f"{model} json", "/v1/chat/completions", {"model": model, **ask("Say hello.")})
        assert plain.status_code == 200, plain.text
        assert plain.headers["x-router-provider"] == provider
        streamed = post(
            f"{model} stream", "/v1/chat/completions", {"model": model, **ask("Say hi.", stream=True)}
        )
        assert streamed.status_code == 200 and "data: [DONE]" in streamed.text, streamed.text
    assert post("auto", "/v1/chat/completions", {"model": "auto:rules", **ask("Hello")}).status_code == 200
    assert get("admin models", "/v1/models", {"x-api-key": ADMIN_KEY}).status_code == 200
    assert get("admin budget", "/v1/budget", {"x-api-key": ADMIN_KEY}).status_code == 200
    assert get("client budget", "/v1/budget").status_code == 200
    tight = {"authorization": f"Bearer {TIGHT_KEY}"}
    limited = [
        post("tight", "/v1/chat/completions", {"model": "gpt", **ask("hi")}, tight).status_code for _ in "ab"
    ]
    assert limited == [200, 429], limited  # a client over its limit: the 429 names the key, never shows it

    # Upstream faults: the provider refuses the router's key, rate limits, fails, cuts a stream.
    faults = {
        "openai 401": {"model": "gpt", **ask("[[fault@fake-openai:401]]")},
        "openai stream 401": {"model": "gpt", **ask("[[fault@fake-openai:401]]", stream=True)},
        "anthropic 401": {"model": "claude-haiku", **ask("[[fault@fake-anthropic:401]]")},
        "anthropic 429": {"model": "claude-haiku", **ask("[[fault@fake-anthropic:429]]")},
        "openai 500": {"model": "gpt", **ask("[[fault@fake-openai:500]]")},
        "gemini 500": {"model": "gemini-flash", **ask("[[fault@fake-gemini:500]]")},
        "anthropic cut": {"model": "claude-haiku", **ask("[[fault@fake-anthropic:cut=2]]", stream=True)},
    }
    status = {what: post(what, "/v1/chat/completions", body).status_code for what, body in faults.items()}
    assert status["openai 401"] == 502, status  # the provider refused the router's key: upstream error
    assert 500 not in status.values(), status

    # Bad requests, unknown things, a wrong client key.
    chat = "/v1/chat/completions"
    assert post("invalid", chat, {"model": "gpt", "messages": f"{PROMPT} not a list"}).status_code == 400
    broken = client.post(
        chat,
        content=f'{{"model": "gpt", "messages": ["{PROMPT}'.encode(),
        headers={**AUTH, "content-type": "application/json"},
    )
    assert record(transcript, "broken json", broken).status_code == 400
    assert post("unknown model", chat, {"model": "no-such-model", **ask("hi")}).status_code == 404
    assert post("unknown strategy", chat, {"model": "auto:nope", **ask("hi")}).status_code == 404
    wrong = [{"authorization": f"Bearer {WRONG_KEY}"}, {"x-api-key": WRONG_KEY}]
    assert [post("wrong key", chat, {"model": "gpt", **ask("hi")}, h).status_code for h in wrong] == [
        401,
        401,
    ]
    assert get("metrics", "/metrics").status_code == 404


@pytest.fixture(scope="module")
def _transcripts() -> dict[str, Transcript]:
    return {}


@pytest.fixture
def transcript(_transcripts, fakes, env, monkeypatch, capfd) -> Transcript:
    """The scenario with log prompts off (the default), run once for the module, under the capfd
    of the first test that asks for it."""
    if "default" not in _transcripts:
        _transcripts["default"] = run_scenario(fakes, monkeypatch, capfd)
    return _transcripts["default"]


def run_scenario(fakes, monkeypatch, capfd) -> Transcript:
    capfd.readouterr()
    result = Transcript()
    with capture_logs(monkeypatch) as records, router(fakes) as client:
        scenario(client, result)
    result.records = list(records)
    out, err = capfd.readouterr()
    result.output = out + err
    # The scenario did reach what it means to check.
    assert any(WEBHOOK_TOKEN in r.path for r in fakes["webhook"].requests), "no budget alert was posted"
    assert any(GCP_TOKEN in r.headers.get("authorization", "") for r in fakes["gemini"].requests)
    assert any(r.headers.get("authorization") == f"Bearer {OPENAI_KEY}" for r in fakes["openai"].requests)
    assert any(
        ANTHROPIC_KEY in r.headers.get("x-api-key", "") + r.headers.get("authorization", "")
        for r in fakes["anthropic"].requests
    )
    assert any(getattr(r, "event", {}).get("event") == "route_decision" for r in result.records)
    assert any(r.name.startswith("uvicorn") for r in result.records)  # a fake's own log (the stream cut)
    return result


def leaks(texts: list[str], needles: dict[str, str]) -> list[str]:
    return [
        f"{name} in: {text[:400]!r}" for text in texts for name, needle in needles.items() if needle in text
    ]


# --- the tests ------------------------------------------------------------------------------


def test_no_secret_reaches_a_response(transcript):
    found = [
        f"{what}: {name}" for what, text in transcript.responses for name, s in SECRETS.items() if s in text
    ]
    assert found == []


def test_no_secret_reaches_a_log_record_or_the_output(transcript):
    found = leaks(transcript.log_texts() + [transcript.output], SECRETS)
    assert found == [], "\n".join(found[:10])


def test_no_prompt_reaches_a_log_record_at_info_or_above_or_the_output(transcript):
    """With ``log_prompts`` off (the default), as with the root logger at INFO (Ray's default)."""
    texts = [render(r) for r in transcript.records if r.levelno >= logging.INFO]
    found = leaks(texts + [transcript.output], {"prompt": PROMPT})
    assert found == [], "\n".join(found[:10])


def test_no_prompt_reaches_a_debug_log_record(transcript):
    """With ``log_prompts`` off, no record at any level carries the prompt: an operator turning
    the root logger to DEBUG must not turn prompt logging on."""
    found = leaks(transcript.log_texts(), {"prompt": PROMPT})
    assert found == [], "\n".join(found[:10])


def test_no_prompt_reaches_a_response_header(transcript):
    headers = [text.split("\n\n", 1)[0] for text in transcript.response_texts()]
    assert leaks(headers, {"prompt": PROMPT}) == []


def test_log_prompts_on_puts_the_prompt_in_the_decision_line(fakes, env, monkeypatch, capfd):
    """The scan above can fail: with ``log_prompts`` on, it finds the prompt."""
    with capture_logs(monkeypatch) as records:
        with router(fakes, log_prompts=True) as client:
            response = client.post(
                "/v1/chat/completions", json={"model": "gpt", **ask("Say hello.")}, headers=AUTH
            )
            assert response.status_code == 200, response.text
        decisions = [r.event for r in records if getattr(r, "event", {}).get("event") == "route_decision"]
    assert decisions and PROMPT in decisions[-1]["prompt"]
    assert leaks([render(r) for r in records], {"prompt": PROMPT})
    assert not leaks([render(r) for r in records] + list(capfd.readouterr()), SECRETS)


def test_metrics_are_not_served_by_the_ingress(fakes, env):
    with router(fakes) as client:
        assert client.get("/metrics", headers=AUTH).status_code == 404
        assert client.get("/metrics").status_code == 401  # and not open without a key either
        assert client.get("/v1/metrics", headers=AUTH).status_code == 404


def test_an_upstream_error_that_echoes_the_routers_key_does_not_pass_it_on(fakes, env, monkeypatch, capfd):
    """Defence in depth: some OpenAI-compatible servers and proxies quote the key they refused
    (OpenAI itself quotes it masked). The router's client must not get the router's credential."""
    echoed = openai_error(401, f"Incorrect API key provided: {OPENAI_KEY}.")
    with capture_logs(monkeypatch) as records, router(fakes) as client:
        fakes["openai"].inject(status=401, body=echoed)
        plain = client.post("/v1/chat/completions", json={"model": "gpt", **ask("hi")}, headers=AUTH)
        fakes["openai"].inject(status=401, body=echoed)
        streamed = client.post(
            "/v1/chat/completions", json={"model": "gpt", **ask("hi", stream=True)}, headers=AUTH
        )
    assert plain.status_code == 502 and streamed.status_code == 502, (plain.text, streamed.text)
    texts = [plain.text, streamed.text, *(render(r) for r in records), *capfd.readouterr()]
    assert leaks(texts, {"openai key": OPENAI_KEY}) == []
