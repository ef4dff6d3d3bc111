"""The OpenAI-compatible HTTP surface: thin routes over ``RouterService``.

Routes parse, call the service and shape the response; request ids live in ``RequestIdMiddleware``
and every error goes through ``app.api.errors``.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api import shapes
from app.api.errors import error_event, install_error_handlers
from app.api.schemas import ChatCompletionRequest, FeedbackRequest
from app.api.views import RouterViews
from app.errors import RouterError
from app.feedback.store import REQUEST_ID_CHARS
from app.security.auth import AuthMiddleware, KeyStore
from app.security.limits import BodySizeLimit
from app.service import RouterService

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
    views = RouterViews(service)
    install_error_handlers(app)
    # NOTE: the last added runs first: request id, then auth (cheap refusals before reading a
    # body), then the body-size limit, then the JSON content-type, then the routes.
    app.add_middleware(JsonBodyMiddleware)
    app.add_middleware(BodySizeLimit, max_bytes=service.config.limits.max_body_bytes)
    app.add_middleware(
        AuthMiddleware, keys=KeyStore.from_env(service.config.auth), enabled=service.config.auth.enabled
    )
    app.add_middleware(RequestIdMiddleware, echo=echo_request_id)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(
        body: ChatCompletionRequest, request: Request
    ) -> JSONResponse | StreamingResponse:
        payload = body.body()
        service.check(payload)
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
        service.check(payload)
        return views.route(
            await service.plan(payload, assume_available=assume_available, dry_run=True), payload
        )

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
        client = getattr(request.state, "client", None)
        return await views.budget(client.name if client else None, admin=client is None or client.admin)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": views.models()}

    @app.get("/v1/models/{model:path}")
    async def retrieve_model(model: str) -> dict[str, Any]:
        return views.model(model)

    @app.get("/v1/stats")
    async def stats(output_tokens: int | None = Query(default=None, gt=0, le=1_000_000)) -> dict[str, Any]:
        return views.stats(output_tokens)

    @app.get("/health")
    async def health() -> JSONResponse:
        body = views.health()
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
