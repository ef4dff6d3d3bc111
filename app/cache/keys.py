"""Which chat requests may be answered from the cache, and the key they are stored under.

Only deterministic requests are cached: ``temperature == 0`` or a ``seed`` given, with ``n``
absent or 1. A key is ``"<KEY_VERSION>:<sha256 hex>"`` of a canonical JSON document holding the
key version, the resolved logical model (the routing decision, not the client's ``model``) and
every request field that can change the answer.

Unknown fields are INCLUDED: a field the router does not know (``reasoning_effort``, vLLM's
``top_k``, a new OpenAI parameter ...) is passed through to the backend and may change the
answer, so two requests differing in one never share an entry. Only the fields in
``IGNORED_FIELDS``, known not to change the answer, are left out. A field whose value is
``None`` counts as absent.

Normalizations (equivalent requests share a key):

* message content: a single ``{"type": "text", "text": T}`` part is the string ``T``;
  ``None``-valued keys in messages and parts are dropped;
* ``max_tokens`` / ``max_completion_tokens``: one limit (if both are given and differ, both
  are kept, as the backend may read either);
* ``stop``: a string is a one-item list; the list is a set (sorted, duplicates dropped); an
  empty list is no ``stop``;
* ``n``: absent is 1;
* numbers: an integral float is its int (``0.0`` is ``0``), everywhere in the document.

No other defaults are assumed (an absent ``temperature`` is not ``1``: backends differ).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from app.openai_wire import ROUTER_FIELDS

KEY_VERSION = "v1"  # bump on any change to the key document: old entries then simply miss

# Fields that never change the answer: transport, accounting, routing (the resolved model is
# keyed instead) and provider-side bookkeeping.
IGNORED_FIELDS = frozenset(
    {
        "model",  # the resolved logical model is keyed instead
        "stream",
        "stream_options",
        "user",
        "safety_identifier",
        "metadata",
        "store",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
        *ROUTER_FIELDS,
    }
)

_LIMITS = ("max_tokens", "max_completion_tokens")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def cacheable(request: Mapping[str, Any]) -> bool:
    """True for a deterministic request: ``temperature == 0`` or a ``seed``, and ``n`` absent or 1."""
    n = request.get("n")
    if n is not None and not (_number(n) and n == 1):
        return False
    temperature = request.get("temperature")
    seed = request.get("seed")
    return (_number(temperature) and temperature == 0) or (seed is not None and not isinstance(seed, bool))


def _canonical(value: Any) -> Any:
    """``value`` with ``None`` map entries dropped and integral floats as ints, recursively."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _content(content: Any) -> Any:
    if isinstance(content, list) and len(content) == 1:
        part = content[0]
        plain = isinstance(part, Mapping) and part.get("type") == "text" and isinstance(part.get("text"), str)
        if plain and not any(v is not None for k, v in part.items() if k not in ("type", "text")):
            return part["text"]
    return content


def _messages(messages: Any) -> Any:
    if not isinstance(messages, list):
        return messages
    out = []
    for message in messages:
        if isinstance(message, Mapping) and "content" in message:
            message = {**message, "content": _content(message["content"])}
        out.append(message)
    return out


def _stop(stop: Any) -> Any:
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return sorted(set(stop)) or None
    return stop


def key_document(request: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The canonical document hashed by ``cache_key`` (exposed for debugging and tests)."""
    fields = {k: v for k, v in request.items() if k not in IGNORED_FIELDS and v is not None}
    limits = {fields.pop(k) for k in _LIMITS if k in fields}
    if len(limits) == 1:
        fields["max_tokens"] = limits.pop()
    elif limits:
        fields.update({k: request[k] for k in _LIMITS})
    if "messages" in fields:
        fields["messages"] = _messages(fields["messages"])
    if "stop" in fields:
        fields["stop"] = _stop(fields["stop"])
    fields.setdefault("n", 1)
    document: dict[str, Any] = _canonical({"version": KEY_VERSION, "model": model, "request": fields})
    return document


def cache_key(request: Mapping[str, Any], model: str) -> str:
    """``"<KEY_VERSION>:<sha256 hex>"`` for ``request`` answered by the logical ``model``.

    Equal for requests that must get the same answer (see the module docstring for the
    normalizations); different whenever a field that can change the answer differs.
    """
    document = json.dumps(
        key_document(request, model), sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )
    return f"{KEY_VERSION}:{hashlib.sha256(document.encode('ascii')).hexdigest()}"
