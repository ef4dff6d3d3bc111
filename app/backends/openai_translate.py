"""OpenAI and OpenAI-compatible servers (vLLM, KServe, Ollama) <-> our wire: pure functions, no I/O.

The wire format is already ours, so translation is small: what to send (usage always asked
for on streams; ``max_completion_tokens`` for OpenAI's own API, whose newer models refuse
``max_tokens``; a ``prompt_cache_key``), and what an error body means.

Prompt caching: OpenAI caches prompt prefixes by itself and reports the hits as
``usage.prompt_tokens_details.cached_tokens`` (priced by ``app.budget.pricing``). The
``prompt_cache_key`` only steers requests with the same prefix to the same cache, so with
``cache_min_tokens`` the router sends one derived from the stable prefix (``cache_key``) when the
client sent none; a client's own key is passed through untouched.

    to_openai(request, native=..., stream=..., cache_min_tokens=None) -> create() kwargs
    cache_key(request, min_tokens) -> "hr-<32 hex>" or None
    from_openai(response, model=...) / chunk_from_openai(chunk, model=...) -> ours
    error_from_openai(provider, status, body, headers=None) -> RouterError
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.backends import prompt_cache
from app.backends.cloud import error_for_status, header, retry_after_seconds
from app.errors import RouterError

# Fields only the router or the SSE layer handles; the SDK call sets streaming itself.
_NOT_FORWARDED = frozenset({"stream", "stream_options"})
CACHE_KEY_PREFIX = "hr-"


def to_openai(
    request: Mapping[str, Any], *, native: bool, stream: bool, cache_min_tokens: int | None = None
) -> dict[str, Any]:
    """Keyword arguments for ``client.chat.completions.create``.

    ``native`` is True for api.openai.com, where ``max_tokens`` becomes ``max_completion_tokens``;
    OpenAI-compatible servers get the field the client sent. ``cache_min_tokens`` (None: off)
    adds a ``prompt_cache_key`` derived from a stable prefix at least that long, unless the
    client sent its own.
    """
    kwargs = {k: v for k, v in request.items() if k not in _NOT_FORWARDED}
    if cache_min_tokens is not None and not kwargs.get("prompt_cache_key"):
        key = cache_key(request, cache_min_tokens)
        if key is not None:
            kwargs["prompt_cache_key"] = key
    if native and "max_tokens" in kwargs:
        kwargs.setdefault("max_completion_tokens", kwargs.pop("max_tokens"))
        kwargs.pop("max_tokens", None)
    if stream:
        kwargs["stream"] = True
        kwargs["stream_options"] = {"include_usage": True}
    return kwargs


def cache_key(request: Mapping[str, Any], min_tokens: int) -> str | None:
    """``hr-`` and 32 hex digits of the SHA-256 of the stable prefix (``prompt_cache.stable_prefix``:
    the tools, the leading system and developer messages and long turns, a last user message's
    leading long parts; never the question), or None when that
    prefix is shorter than ``min_tokens`` (estimated): one key for every short prompt would send
    them all to one cache machine."""
    prefix = prompt_cache.stable_prefix(request)
    if prompt_cache.estimate_tokens(prefix) < min_tokens:
        return None
    return CACHE_KEY_PREFIX + prompt_cache.prefix_key(*prefix)[: prompt_cache.KEY_HEX]


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
