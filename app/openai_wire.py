"""OpenAI's chat wire format, in one place: ids, completion and chunk objects, usage, the text of
a message's content, the completion limit a request asks for, and the fields that are the
router's own. Every adapter, the CPU engine, the cache and the ingress build and read OpenAI
objects through these helpers, so a change to the format is a change here.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

Json = dict[str, Any]

# Request fields that steer the router and never reach a backend (SDKs send them via extra_body).
ROUTER_FIELDS = frozenset({"routing_strategy", "max_latency_ms", "quality_margin"})
LIMIT_FIELDS = ("max_tokens", "max_completion_tokens")


def new_id(suffix: str | None = None) -> str:
    """A completion id: ``chatcmpl-`` and the provider's own id, or a fresh random one."""
    return f"chatcmpl-{suffix or uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def text_of(content: Any, separator: str = "\n") -> str:
    """The text of a message's ``content``: the string itself, or its text parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return separator.join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def usage(prompt: int, completion: int, **details: Json) -> Json:
    """OpenAI ``usage``; ``details`` adds e.g. ``prompt_tokens_details``."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        **details,
    }


def completion(
    id: str, model: str, choices: list[Json], *, created: int | None = None, usage: Json | None = None
) -> Json:
    """A ``chat.completion`` object (``usage`` left out when None)."""
    out: Json = {
        "id": id,
        "object": "chat.completion",
        "created": now() if created is None else created,
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        out["usage"] = usage
    return out


def choice(index: int, message: Json, finish_reason: str | None, logprobs: Json | None = None) -> Json:
    return {"index": index, "message": message, "logprobs": logprobs, "finish_reason": finish_reason}


def chunk(
    id: str,
    model: str,
    created: int,
    delta: Json,
    *,
    index: int = 0,
    finish_reason: str | None = None,
    logprobs: Json | None = None,
) -> Json:
    """A ``chat.completion.chunk`` with one choice."""
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}],
    }


def usage_chunk(id: str, model: str, created: int, usage: Json) -> Json:
    """The last chunk of a stream: no choices, the whole answer's usage."""
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage,
    }


def requested_max_tokens(request: Mapping[str, Any]) -> int | None:
    """The completion limit a request sets (``max_completion_tokens``, else ``max_tokens``), or None."""
    value = request.get("max_completion_tokens") or request.get("max_tokens")
    return int(value) if value else None


def clamp_max_tokens(request: Json, limit: int) -> Json:
    """``request`` with its completion limits no higher than ``limit`` (a model's own maximum)."""
    for key in LIMIT_FIELDS:
        if key in request and request[key] > limit:
            request[key] = limit
    return request


def without_router_fields(body: Mapping[str, Any]) -> Json:
    return {k: v for k, v in body.items() if k not in ROUTER_FIELDS}
