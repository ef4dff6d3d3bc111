"""Scripted backends that cache prompt prefixes the way each provider does, on a simulated clock.

They implement the router's ``Backend`` protocol (``complete`` only: the replay does not stream)
and answer every request at once, reporting in the usage block what the real adapter would report
for that provider (``app.backends.prompt_cache`` documents the fields). What decides the caching is
the adapters' own pure code: ``anthropic_translate.to_anthropic`` places the breakpoints,
``gemini_request.to_gemini_request`` and ``gemini_cache.split`` find the prefix of an explicit
context cache, and ``gemini_cache.ContextCaches`` (on the simulated clock) decides when one is
created, implicit first, exactly as ``GeminiBackend`` does: the same calls in the same order
(``seen_again``, ``live``, ``should_create``, and after an answer sent whole ``record_implicit``
with its usage). What is simulated is the provider's side:

- Anthropic: a breakpoint's prefix is written to the cache the first time (``cache_creation``)
  and read while it lives, 5 minutes from its last use; the longest live breakpoint is read and
  the rest up to the last breakpoint written. Prefixes under the model's minimum are not cached.
  No breakpoints (caching off): nothing is cached.
- Gemini on Vertex: a request through a live explicit cache reads the cache's tokens; the one that
  creates it is charged ``gemini_cache.add_creation`` (a write at the input price, plus storage
  for the TTL). Otherwise Vertex's implicit cache reads the longest prefix sent to the model within
  ``IMPLICIT_WINDOW_S`` (refreshed on use), whatever the router's setting; with
  ``Sim.vertex_implicit`` off it never hits (Google does not promise it does).
- OpenAI: its automatic cache reads the longest prefix sent to the model within
  ``IMPLICIT_WINDOW_S``, in 128-token steps from 1,024 (the ``prompt_cache_key`` only steers it).
- Self-hosted (vLLM): its prefix cache saves GPU time, not catalog dollars; nothing is reported.

A prefix, for the implicit caches, is a run of leading segments (the tools, then each message's
text or each text part); a segment's tokens come from ``Tokens``, which knows the documents' token
counts (they are generated with one) and counts the rest with tiktoken.

Each answer is also recorded (``Sim.log``) with two counterfactual usages, priced by the replay:
the same request with no provider cache at all, and with Vertex's implicit cache never hitting.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from app.backends import gemini_cache, prompt_cache
from app.backends.anthropic_translate import to_anthropic, usage_from_anthropic
from app.backends.gemini_request import to_gemini_request
from app.config import RouterConfig
from app.routing.tokens import encoding

ANTHROPIC_TTL_S = 300.0  # the ephemeral cache: 5 minutes, refreshed on each read
IMPLICIT_WINDOW_S = 600.0  # assumed: Vertex's implicit and OpenAI's automatic caches keep a prefix ~10 min
OPENAI_MIN, OPENAI_STEP = 1_024, 128
MESSAGE_OVERHEAD = 3  # tokens per message for roles and separators (OpenAI's accounting)
MAX_REMEMBERED = 200_000  # prefixes a simulated provider keeps (oldest first out)


@dataclass
class Sim:
    """What the replay shares with the backends: the simulated clock (seconds), the answer length
    of the request being sent, and one record per answer."""

    now: float = 0.0
    answer_tokens: int = 100
    vertex_implicit: bool = True  # False: Vertex's implicit cache never hits
    log: list[Answer] = field(default_factory=list)

    def clock(self) -> float:
        return self.now


@dataclass(frozen=True)
class Answer:
    model: str
    usage: dict[str, Any]  # as reported to the router
    uncached: dict[str, Any]  # the same request where no provider caches anything
    no_implicit: dict[str, Any]  # the same, had Vertex's implicit cache not hit


class Tokens:
    """Tokens of a text segment: registered documents by their known count, the rest counted."""

    def __init__(self, keep: int = 256) -> None:
        self.keep = keep
        self._known: OrderedDict[str, int] = OrderedDict()

    def register(self, text: str, tokens: int) -> None:
        self._known[text] = tokens
        self._known.move_to_end(text)
        while len(self._known) > self.keep:
            self._known.popitem(last=False)

    def __call__(self, text: str) -> int:
        known = self._known.get(text)
        if known is None:
            known = len(encoding().encode_ordinary(text))
            if len(text) > 200:
                self.register(text, known)
        return known


def segments(request: dict[str, Any]) -> list[tuple[str, int]]:
    """(text, extra tokens) per segment: the tools, then each message's text or text parts."""
    out: list[tuple[str, int]] = []
    if request.get("tools"):
        out.append((repr(request["tools"]), 0))
    for message in request.get("messages") or []:
        content = message.get("content")
        parts = content if isinstance(content, list) else [{"text": content or ""}]
        for i, part in enumerate(parts):
            out.append((str(part.get("text") or ""), MESSAGE_OVERHEAD if i == 0 else 0))
    return out


class Remembered:
    """Prefix keys with the time each stops being cached."""

    def __init__(self) -> None:
        self._until: OrderedDict[Any, float] = OrderedDict()

    def live(self, key: Any, now: float) -> bool:
        return self._until.get(key, -1.0) > now

    def keep(self, key: Any, until: float) -> None:
        self._until[key] = until
        self._until.move_to_end(key)
        while len(self._until) > MAX_REMEMBERED:
            self._until.popitem(last=False)


class CachingBackend:
    """One model; ``provider`` is its provider's kind. ``caches`` are shared by a provider's
    models (Vertex's explicit caches live in the client, one per provider)."""

    def __init__(self, name: str, config: RouterConfig, sim: Sim, tokens: Tokens, caches: dict) -> None:
        self.name = name
        self.spec = config.models[name]
        self.provider = config.provider_of(name)
        self.kind = self.provider.kind
        self.sim, self.tokens = sim, tokens
        on = prompt_cache.enabled(self.spec, self.provider)
        self.min_tokens = prompt_cache.min_tokens(self.spec, self.provider)
        self.cache_min_tokens = self.min_tokens if on else None
        self.implicit = Remembered()  # per model: a provider's caches are per model
        self.anthropic = Remembered()
        if self.kind == "vertex_ai" and on:
            ttl = self.provider.prompt_cache_ttl_s
            caches.setdefault(self.provider.kind, gemini_cache.ContextCaches(ttl, clock=sim.clock))
            self.explicit: gemini_cache.ContextCaches | None = caches[self.provider.kind]
        else:
            self.explicit = None

    def unavailable_reason(self) -> str | None:
        return None

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        segs = [(t, self.tokens(t) + extra) for t, extra in segments(request)]
        prompt = sum(n for _, n in segs) + MESSAGE_OVERHEAD
        answer = min(self.sim.answer_tokens, int(request.get("max_tokens") or self.sim.answer_tokens))
        uncached = _usage(prompt, answer)
        if self.kind == "anthropic":
            usage = self._anthropic(request, answer)
            no_implicit = usage
        elif self.kind == "vertex_ai":
            usage, no_implicit = self._vertex(request, segs, prompt, answer)
        elif self.kind == "openai":
            read = self._implicit(segs, OPENAI_MIN)
            read = 0 if read < OPENAI_MIN else OPENAI_MIN + (read - OPENAI_MIN) // OPENAI_STEP * OPENAI_STEP
            usage = no_implicit = _usage(prompt, answer, read)
        else:
            usage = no_implicit = uncached
        self.sim.log.append(Answer(self.name, usage, uncached, no_implicit))
        return _completion(request["model"], usage)

    async def stream(self, request: dict[str, Any]) -> Any:  # pragma: no cover - the replay does not stream
        raise NotImplementedError
        yield {}

    # --- the providers ---------------------------------------------------------------------
    def _implicit(self, segs: list[tuple[str, int]], minimum: int) -> int:
        """Tokens of the longest prefix of ``segs`` sent within the window (then all are kept)."""
        now, key, read, total = self.sim.now, 0, 0, 0
        for text, n in segs:
            key = hash((key, text))
            total += n
            if self.implicit.live(key, now):
                read = total
            self.implicit.keep(key, now + IMPLICIT_WINDOW_S)
        return read if read >= minimum else 0

    def _vertex(
        self, request: dict[str, Any], segs: list[tuple[str, int]], prompt: int, answer: int
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Through a live explicit cache (or one created now for a prefix the implicit cache was
        seen to miss, as ``GeminiBackend`` does), else whole: what the implicit cache finds, which
        is recorded for the next decision."""
        implicit = self._implicit(segs, self.min_tokens)
        whole = _usage(prompt, answer, implicit if self.sim.vertex_implicit else 0)
        found = None
        if self.explicit is not None:
            found = gemini_cache.split(
                to_gemini_request(request), request["model"], self.cache_min_tokens or 0
            )
        if found is None or self.explicit is None:
            return whole, _usage(prompt, answer)
        repeat = self.explicit.seen_again(found.key)
        cache, created = self.explicit.live(found.key), 0
        if cache is None and self.explicit.should_create(found.key):
            cache = self.explicit.add(
                found.key, f"cachedContents/{uuid.uuid4().hex}", self._texts(found.prefix)
            )
            created = cache.tokens
        if cache is None:
            self.explicit.record_implicit(found, whole, repeat)
            return whole, _usage(prompt, answer)
        usage = _usage(prompt, answer, cache.tokens)
        if created:
            gemini_cache.add_creation(usage, created, self.provider.prompt_cache_ttl_s)
        return usage, usage

    def _texts(self, value: Any) -> int:
        """Tokens of every ``text`` in a wire JSON value (a Gemini context cache's contents)."""
        if isinstance(value, dict):
            return sum(self.tokens(v) if k == "text" else self._texts(v) for k, v in value.items())
        if isinstance(value, list):
            return sum(self._texts(v) for v in value)
        return 0

    def _anthropic(self, request: dict[str, Any], answer: int) -> dict[str, Any]:
        """Cache reads and writes at the breakpoints ``to_anthropic`` placed."""
        kwargs = to_anthropic(
            request, max_output_tokens=self.spec.max_output_tokens, cache_min_tokens=self.cache_min_tokens
        )
        system = kwargs.get("system") or []
        blocks = [*(kwargs.get("tools") or []), *(system if isinstance(system, list) else [{"text": system}])]
        for turn in kwargs["messages"]:
            blocks += turn["content"]
        now, key, total, read, last = self.sim.now, 0, 0, 0, 0
        breakpoints: list[tuple[int, int]] = []
        for block in blocks:
            key = hash((key, str(block.get("text") or block.get("name") or "")))
            total += self.tokens(str(block.get("text") or "")) + 1
            if "cache_control" in block and total >= self.min_tokens:
                breakpoints.append((key, total))
        for key, tokens in breakpoints:
            if self.anthropic.live(key, now):
                read = tokens
            last = tokens
        for key, _ in breakpoints:
            self.anthropic.keep(key, now + ANTHROPIC_TTL_S)
        written = max(0, last - read)
        fresh = total + MESSAGE_OVERHEAD - read - written
        return usage_from_anthropic(
            {
                "input_tokens": fresh,
                "cache_read_input_tokens": read,
                "cache_creation_input_tokens": written,
                "output_tokens": answer,
            }
        )


def _usage(prompt: int, answer: int, cached: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": answer,
        "total_tokens": prompt + answer,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def _completion(model: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "An answer."}, "finish_reason": "stop"}
        ],
        "usage": usage,
    }


def backends(config: RouterConfig, sim: Sim, tokens: Tokens) -> dict[str, CachingBackend]:
    caches: dict[str, Any] = {}
    return {m: CachingBackend(m, config, sim, tokens, caches) for m in config.models}
