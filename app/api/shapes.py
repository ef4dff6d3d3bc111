"""Responses as OpenAI's schemas require them, whatever a backend sent.

The chat schemas require some keys to be present even when null (``message.refusal``,
``choices[].logprobs``, a chunk's ``choices[].finish_reason``); backends differ in what they
include, so the ingress fills them in once, here.
"""

from __future__ import annotations

import json
from typing import Any


def completion(response: dict[str, Any]) -> dict[str, Any]:
    response.setdefault("object", "chat.completion")
    for choice in response.get("choices") or ():
        choice.setdefault("logprobs", None)
        choice.setdefault("finish_reason", "stop")
        message = choice.setdefault("message", {"role": "assistant", "content": None})
        message.setdefault("content", None)
        message.setdefault("refusal", None)
    return response


def is_usage_chunk(chunk: dict[str, Any]) -> bool:
    return not chunk.get("choices") and bool(chunk.get("usage"))


def chunk(item: dict[str, Any], include_usage: bool) -> dict[str, Any]:
    """A stream chunk; with ``include_usage`` every chunk carries ``usage`` (null until the last)."""
    item.setdefault("object", "chat.completion.chunk")
    for choice in item.get("choices") or ():
        choice.setdefault("finish_reason", None)
        choice.setdefault("delta", {})
    if include_usage:
        item.setdefault("usage", None)
    else:
        item.pop("usage", None)
    return item


def sse(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"
