"""Every error the ingress returns, in OpenAI's format, from one place.

``error_response`` serves the exception handlers; ``error_event`` is the last SSE event of a
stream that fails after content was sent. A 500 never shows internals.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import InvalidRequestError, NotFoundError, RouterError, error_body, error_headers, status_of
from app.observability.logs import log_event


def error_response(exc: BaseException, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error answer: OpenAI's body, its status, ``retry-after`` and ``x-should-retry``."""
    return JSONResponse(
        error_body(exc), status_code=status_of(exc), headers={**(headers or {}), **error_headers(exc)}
    )


def error_event(exc: BaseException) -> bytes:
    return b"data: " + json.dumps(error_body(exc)).encode() + b"\n\n"


def param_of(loc: tuple[Any, ...]) -> str | None:
    """('body', 'messages', 0, 'role') -> 'messages[0].role'."""
    parts = [p for p in loc if p != "body"]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _is_union_tag(part):
            out += f".{part}" if out else str(part)
    return out or None


def _is_union_tag(part: Any) -> bool:
    # pydantic names union branches in locations ('str', 'list[ContentPart]'); they are not params.
    return isinstance(part, str) and (
        "[" in part or part in ("str", "int", "float", "bool", "function-after")
    )


def validation_error(
    exc: RequestValidationError, sent_content_type: str | None = None
) -> InvalidRequestError:
    """The first problem of a request body, naming its ``param``. ``sent_content_type``: the
    client's content-type when it was not JSON's (``""``: none), for a body that is not JSON."""
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        sent = ""
        if sent_content_type is not None:
            how = f"as {sent_content_type}" if sent_content_type else "without a content-type"
            sent = f" (it was sent {how})"
        return InvalidRequestError(
            f"The request body is not valid JSON{sent}; send a JSON object (content-type: application/json).",
            code="invalid_json",
        )
    param = param_of(tuple(first.get("loc", ())))
    message = first.get("msg", "invalid value")
    if first.get("type") == "missing":
        message = "a required field is missing"
    elif first.get("type") == "model_attributes_type":
        message = "the request body must be a JSON object"
    return InvalidRequestError(f"Invalid value for {param or 'the body'}: {message}.", param=param)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RouterError)
    async def _router_error(request: Request, exc: RouterError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(exc, getattr(request.state, "sent_content_type", None)))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            error: RouterError = NotFoundError(f"No route for {request.method} {request.url.path}.")
        else:
            error = RouterError(str(exc.detail))
            error.status_code = exc.status_code
            error.error_type = "invalid_request_error" if exc.status_code < 500 else "api_error"
            error.retry_helps = exc.status_code >= 500
        return error_response(error)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log_event(
            "internal_error",
            logging.ERROR,
            request_id=getattr(request.state, "request_id", None),
            error_type=type(exc).__name__,
        )
        return error_response(exc)
