"""The backend protocol every model backend implements, and what they share.

A backend takes an OpenAI chat request as a plain dict (``model`` already set to the
provider's own model id, router-only fields removed) and returns OpenAI-shaped dicts:

- ``complete(request)`` returns one ``chat.completion`` dict with ``usage``.
- ``stream(request)`` yields ``chat.completion.chunk`` dicts; the last one carries ``usage``
  (with ``choices: []``), whether or not the client asked for it. Closing the iterator
  cancels the upstream generation.
- ``unavailable_reason()`` is cheap and synchronous: None when the backend can take
  requests now, else a short human-readable reason (missing key, no replicas...).

Both calls raise only ``app.errors.RouterError`` subclasses; each backend maps its vendor's
errors at its own boundary.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from app.openai_wire import clamp_max_tokens, without_router_fields


class Backend(Protocol):
    async def complete(self, request: dict[str, Any]) -> dict[str, Any]: ...

    def stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]: ...

    def unavailable_reason(self) -> str | None: ...


class UnavailableBackend:
    """Stands in for a backend that cannot be built here (a missing key, say); never called. Its
    reason lasts until the router restarts with what was missing, so clients get no retry hint."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def unavailable_reason(self) -> str | None:
        from app.errors import LastingReason

        return LastingReason(self.reason)

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        from app.errors import UpstreamUnavailableError

        raise UpstreamUnavailableError(self.reason)

    async def stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        from app.errors import UpstreamUnavailableError

        raise UpstreamUnavailableError(self.reason)
        yield {}  # pragma: no cover - makes this an async generator


def backend_request(body: dict[str, Any], model_id: str, max_output_tokens: int) -> dict[str, Any]:
    """The client's body as a backend sees it: the provider's model id, no router-only fields,
    and a completion limit the model can produce."""
    request = without_router_fields(body)
    request["model"] = model_id
    return clamp_max_tokens(request, max_output_tokens)
