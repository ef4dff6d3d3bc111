"""What every cloud adapter shares: vendor errors onto the router's tree, in one place.

Each provider's translator extracts (status, message, vendor code, Retry-After) from its own
error body in ``error_from_<provider>``; ``error_for_status`` turns that into a ``RouterError``.
Transport failures (a refused connection, a timeout, a stream cut mid-way) go through
``error_for_transport``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import re
from collections.abc import Mapping

from app.errors import (
    ContentFilterError,
    ContextWindowExceededError,
    RouterError,
    UpstreamAuthError,
    UpstreamBadRequestError,
    UpstreamError,
    UpstreamNotFoundError,
    UpstreamRateLimitedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)

CONTEXT_TOO_LONG = re.compile(
    r"context.{0,20}(length|window)|too many (input )?tokens|prompt is too long|maximum context|"
    r"input token count.{0,40}exceeds|request_too_large|context_length_exceeded",
    re.IGNORECASE,
)
CONTENT_POLICY = re.compile(r"content.?(policy|filter|management)|safety|responsible ai", re.IGNORECASE)


def error_for_status(
    provider: str,
    status: int,
    message: str,
    *,
    vendor_code: str | None = None,
    retry_after: float | None = None,
) -> RouterError:
    """A provider's HTTP error as a router error; the message keeps the provider's words, less
    anything that looks like a credential (some providers quote the key they refused)."""
    message = redact(message)
    text = f"{provider}: {message}".strip()
    hint = f"{vendor_code or ''} {message}"
    if status in (400, 413, 422) and CONTEXT_TOO_LONG.search(hint):
        return ContextWindowExceededError(text, param="messages")
    if status == 400 and CONTENT_POLICY.search(hint):
        return ContentFilterError(text)
    if status in (401, 403):
        return UpstreamAuthError(text)
    if status == 404:
        return UpstreamNotFoundError(text)
    if status == 408:
        return UpstreamTimeoutError(text, retry_after=retry_after)
    if status == 429:
        return UpstreamRateLimitedError(text, retry_after=retry_after)
    if status >= 500:
        return UpstreamUnavailableError(text, retry_after=retry_after)
    if 400 <= status < 500:
        return UpstreamBadRequestError(text)
    return UpstreamError(text)


CREDENTIAL = re.compile(
    r"\b(?:sk|pk|rk|key|token|api[-_]?key)[-_][A-Za-z0-9_\-*.]{6,}|\bAIza[0-9A-Za-z_\-]{20,}|\bya29\.[0-9A-Za-z_\-.]+"
    r"|\bBearer\s+[A-Za-z0-9_\-.=]+",
    re.IGNORECASE,
)


def redact(message: str) -> str:
    """``message`` with credential-looking tokens replaced (OpenAI quotes a masked key, others whole)."""
    return CREDENTIAL.sub("[redacted]", message)


def error_for_transport(provider: str, exc: BaseException) -> RouterError:
    """A failure below HTTP (timeouts, refused or dropped connections, cut streams)."""
    kind = type(exc).__name__
    if isinstance(exc, asyncio.TimeoutError | TimeoutError) or "Timeout" in kind:
        return UpstreamTimeoutError(f"{provider}: timed out ({kind})")
    return UpstreamUnavailableError(f"{provider}: connection failed ({kind})")


@functools.cache
def transport_errors() -> tuple[type[BaseException], ...]:
    """What the HTTP stacks under the SDKs raise below HTTP, which the SDKs do not wrap when a
    stream breaks mid-way: httpx, httpx2 (the openai, anthropic and google-genai SDKs' base),
    aiohttp (their fast transport), and plain timeouts and OS-level connection errors."""
    errors: list[type[BaseException]] = [asyncio.TimeoutError, TimeoutError, OSError]
    for module, name in (("httpx", "HTTPError"), ("httpx2", "HTTPError"), ("aiohttp", "ClientError")):
        with contextlib.suppress(ImportError):
            errors.append(getattr(importlib.import_module(module), name))
    return tuple(errors)


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """A header's value, whatever the case of its name (SDKs hand over case-insensitive
    mappings, tests and stream events plain dicts)."""
    if not headers:
        return None
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    return value


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` in seconds (HTTP dates are rare from LLM APIs and ignored)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
