"""The OpenAI-compatible HTTP surface: thin routes over ``RouterService``.

Routes parse, call the service and shape the response; request ids live in ``RequestIdMiddleware``
and every error goes through ``app.api.errors``.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api import shapes
from app.api.errors import error_event, install_error_handlers
from app.api.schemas import ChatCompletionRequest, FeedbackRequest
from app.errors import RouterError
from app.feedback.store import REQUEST_ID_CHARS
from app.openai_wire import requested_max_tokens
from app.security.auth import AuthMiddleware, KeyStore
from app.security.quota import client_key
from app.security.limits import BodySizeLimit, check_request
from app.service import RouterService, request_margin

HealthExtra = Callable[[], Awaitable[dict[str, Any]]]


class RequestIdMiddleware:
    """Gives each request an id (the client's ``x-request-id`` or a new one), echoed in the response.

    Under Ray Serve the proxy has already set ``x-request-id`` on the request and adds it to the
    response itself, so there ``echo=False``. A plain ASGI middleware rather than
    ``BaseHTTPMiddleware``: that one buffers streams and costs a task per request.
    """

    def __init__(self, app: ASGIApp, echo: bool = True) -> None:
        self.app = app
        self.echo = echo

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or ()).get(b"x-request-id", b"").decode("latin-1")
        usable = bool(incoming) and incoming.isprintable()
        request_id = incoming[:REQUEST_ID_CHARS] if usable else f"req-{uuid.uuid4().hex}"
        scope.setdefault("state", {})["request_id"] = request_id
        if not self.echo:
            await self.app(scope, receive, send)
            return

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


class JsonBodyMiddleware:
    """Reads every request body as JSON, whatever its content-type (``curl -d`` sends
    ``application/x-www-form-urlencoded``), as other OpenAI-compatible servers do. The content-type
    the client sent, when not JSON's, stays in ``scope.state`` for the 400 of a body that is not JSON."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") in ("POST", "PUT", "PATCH"):
            headers = list(scope.get("headers") or ())
            sent = next((v.decode("latin-1") for k, v in headers if k == b"content-type"), "")
            if not _is_json(sent):
                headers = [(k, v) for k, v in headers if k != b"content-type"]
                headers.append((b"content-type", b"application/json"))
                scope = {**scope, "headers": headers}
                scope.setdefault("state", {})["sent_content_type"] = sent.split(";")[0].strip()
        await self.app(scope, receive, send)


def _is_json(content_type: str) -> bool:
    kind = content_type.split(";")[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def create_app(
    service: RouterService, health_extra: HealthExtra | None = None, *, echo_request_id: bool = True
) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        yield
        await service.close()

    app = FastAPI(title="hybrid-router", version="0.1.0", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.service = service
    install_error_handlers(app)
    # NOTE: the last added runs first: request id, then auth (cheap refusals before reading a
    # body), then the body-size limit, then the JSON content-type, then the routes.
    app.add_middleware(JsonBodyMiddleware)
    app.add_middleware(BodySizeLimit, max_bytes=service.config.limits.max_body_bytes)
    app.add_middleware(AuthMiddleware, keys=KeyStore.from_env(service.config.auth), enabled=service.config.auth.enabled)
    app.add_middleware(RequestIdMiddleware, echo=echo_request_id)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> JSONResponse | StreamingResponse:
        payload = body.body()
        check_request(payload, service.config.limits)
        request_id = request.state.request_id
        client = getattr(request.state, "client", None)
        name = client.name if client is not None else None
        if payload.get("stream"):
            include_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
            chunks, outcome = await service.stream(payload, request_id, name)
            return StreamingResponse(
                _sse(chunks, include_usage),
                media_type="text/event-stream",
                headers={**outcome.headers(), "cache-control": "no-cache"},
            )
        response, outcome = await service.complete(payload, request_id, name)
        return JSONResponse(shapes.completion(response), headers=outcome.headers())

    @app.post("/v1/route")
    async def route(body: ChatCompletionRequest, assume_available: bool = False) -> dict[str, Any]:
        payload = body.body()
        check_request(payload, service.config.limits)
        plan = await service.plan(payload, assume_available=assume_available)
        primary = plan.primary
        max_tokens = requested_max_tokens(payload)
        worst = service.catalog.pricer.worst_case(primary.model, plan.features.tokens, max_tokens)
        return {
            "model": primary.model,
            "provider": primary.provider,
            "strategy": plan.strategy,
            "reason": primary.reason,
            "estimated_cost_usd": {"worst_case": float(worst)},
            "fallbacks": [t.as_dict() for t in plan.fallbacks],
            "quality": plan.quality,
            "quality_margin": plan.margin,
            "features": plan.features.as_dict(),
            "dropped": [{"model": m, "reason": why} for m, why in plan.dropped],
        }

    @app.post("/v1/feedback")
    async def feedback(body: FeedbackRequest, request: Request) -> dict[str, Any]:
        """A client's rating of an answer, by the answer's ``x-request-id``; a non-admin key may
        rate only its own requests (another's is a 404, as if unknown)."""
        client = getattr(request.state, "client", None)
        return await service.feedback.rate(
            body.request_id[:REQUEST_ID_CHARS],  # as RequestIdMiddleware cut it
            score=body.score,
            rating=body.rating,
            comment=body.comment,
            client=client.name if client is not None else None,
            admin=client is None or client.admin,
        )

    @app.get("/v1/budget")
    async def budget(request: Request) -> dict[str, Any]:
        """Everything with auth off or for an admin key; a client key sees only its own spend."""
        await service.budgets.refresh()
        report = service.budgets.report()
        client = getattr(request.state, "client", None)
        if client is not None and not client.admin:
            own = client_key(client.name)
            report["budgets"] = {k: v for k, v in report["budgets"].items() if k == own}
            report["budgets"].setdefault(own, {"spent_usd": 0.0, "reserved_usd": 0.0, "mode": "normal"})
            report["budgets"][own]["limit_usd"] = _float(service.quota.daily_limit(client.name))
        return report

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": model_list(service)}

    @app.get("/v1/models/{model:path}")
    async def retrieve_model(model: str) -> dict[str, Any]:
        """One model, as the SDK's ``models.retrieve``: a name, an alias or ``auto[:strategy]``,
        resolved as a chat request's ``model`` is (an unknown or ambiguous name is a 404)."""
        kind, name = service.selection({"model": model})
        if kind == "model":
            return model_entry(service, name)
        entry = auto_entry(service)
        if model.strip().lower() != "auto":
            margin = request_margin({"model": model})
            entry["id"] = f"auto:{margin:g}" if margin is not None else f"auto:{name}"
        return entry

    @app.get("/health")
    async def health() -> JSONResponse:
        body = health_report(service)
        if health_extra is not None:
            body.update(await health_extra())
        status = 200 if body["status"] != "down" else 503
        return JSONResponse(body, status_code=status)

    return app


async def _sse(chunks: AsyncIterator[dict[str, Any]], include_usage: bool) -> AsyncIterator[bytes]:
    """SSE events for a chunk stream, always ending in ``[DONE]``; a failure after content becomes
    one error event in OpenAI's format rather than a silent cut."""
    try:
        async for item in chunks:
            if shapes.is_usage_chunk(item) and not include_usage:
                continue
            yield shapes.sse(shapes.chunk(item, include_usage))
    except RouterError as exc:
        yield error_event(exc)
    except Exception as exc:  # noqa: BLE001 - the client gets a clean error event, never a cut stream
        yield error_event(exc)
    yield shapes.SSE_DONE


def _float(value: Any) -> float | None:
    return float(value) if value is not None else None


def model_list(service: RouterService) -> list[dict[str, Any]]:
    return [auto_entry(service), *(model_entry(service, name) for name in service.catalog.models)]


def auto_entry(service: RouterService) -> dict[str, Any]:
    return {
        "id": "auto",
        "object": "model",
        "created": 0,
        "owned_by": "hybrid-router",
        "strategies": service.strategies.names(),
    }


def model_entry(service: RouterService, name: str) -> dict[str, Any]:
    """A logical model as an OpenAI Model object, plus what the router knows of it."""
    spec = service.catalog.models[name]
    reason = service.availability(name)
    return {
        "id": name,
        "object": "model",
        "created": 0,
        "owned_by": spec.provider,
        "provider_model": spec.model_id,
        "context_window": spec.context_window,
        "capabilities": list(spec.capabilities),
        "aliases": list(spec.aliases),
        "available": reason is None,
        "unavailable_reason": reason,
    }


def health_report(service: RouterService) -> dict[str, Any]:
    """Overall status: ``ok`` when every model is up, ``degraded`` when some are, ``down`` when none."""
    models = {name: service.availability(name) for name in service.catalog.models}
    up = [m for m, reason in models.items() if reason is None]
    self_hosted = [m for m in models if service.catalog.is_self_hosted(m)]
    self_hosted_up = [m for m in up if m in self_hosted]
    status = "ok" if len(up) == len(models) else ("degraded" if up else "down")
    report: dict[str, Any] = {
        "status": status,
        "self_hosted_available": bool(self_hosted_up),
        "models": {
            m: {"available": r is None, "reason": r, "breaker": service.breakers[m].current()}
            for m, r in models.items()
        },
    }
    if self_hosted and not self_hosted_up:
        report["notice"] = "All self-hosted models are down: requests go to cloud models."
    service.refresh_gauges()
    return report
