"""OpenAI and OpenAI-compatible servers (vLLM, KServe, Ollama) <-> our wire: pure functions, no I/O.

The wire format is already ours, so translation is small: what to send (usage always asked
for on streams; ``max_completion_tokens`` for OpenAI's own API, whose newer models refuse
``max_tokens``), and what an error body means.

    to_openai(request, native=..., stream=...) -> chat.completions.create kwargs
    from_openai(response, model=...) / chunk_from_openai(chunk, model=...) -> ours
    error_from_openai(provider, status, body, headers=None) -> RouterError
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.backends.cloud import error_for_status, header, retry_after_seconds
from app.errors import RouterError

# Fields only the router or the SSE layer handles; the SDK call sets streaming itself.
_NOT_FORWARDED = frozenset({"stream", "stream_options"})


def to_openai(request: Mapping[str, Any], *, native: bool, stream: bool) -> dict[str, Any]:
    """Keyword arguments for ``client.chat.completions.create``.

    ``native`` is True for api.openai.com, where ``max_tokens`` becomes ``max_completion_tokens``;
    OpenAI-compatible servers get the field the client sent.
    """
    kwargs = {k: v for k, v in request.items() if k not in _NOT_FORWARDED}
    if native and "max_tokens" in kwargs:
        kwargs.setdefault("max_completion_tokens", kwargs.pop("max_tokens"))
        kwargs.pop("max_tokens", None)
    if stream:
        kwargs["stream"] = True
        kwargs["stream_options"] = {"include_usage": True}
    return kwargs


def from_openai(response: dict[str, Any], *, model: str) -> dict[str, Any]:
    """A completion as the router returns it: the answering model's id, required keys present."""
    response["model"] = model
    for choice in response.get("choices") or ():
        message = choice.setdefault("message", {"role": "assistant", "content": None})
        message.setdefault("refusal", None)
        choice.setdefault("logprobs", None)
    return response


def chunk_from_openai(chunk: dict[str, Any], *, model: str) -> dict[str, Any]:
    chunk["model"] = model
    return chunk


def error_from_openai(
    provider: str, status: int | None, body: Any, headers: Mapping[str, str] | None = None
) -> RouterError:
    """OpenAI's ``{"error": {"message", "type", "code"}}`` (or vLLM's variants) as a router error.

    ``status`` None (an error without an HTTP status) takes vLLM's numeric ``code``, else 500.
    """
    error = body.get("error", body) if isinstance(body, Mapping) else {}
    if not isinstance(error, Mapping):
        error = {"message": str(error)}
    message = str(error.get("message") or body or f"HTTP {status}")
    code = error.get("code") or error.get("type")
    if status is None:
        status = code if isinstance(code, int) and 400 <= code < 600 else 500
    return error_for_status(
        provider,
        status,
        message,
        vendor_code=str(code) if code else None,
        retry_after=retry_after_seconds(header(headers, "retry-after")),
    )
