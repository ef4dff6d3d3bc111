"""A fake Vertex AI Gemini endpoint for google-genai in Vertex mode, on loopback.

Serves what the SDK calls (google-genai 3.6.1 uses ``v1beta1``; ``v1`` is accepted too):

    POST /{v1beta1|v1}/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent
    POST /{v1beta1|v1}/projects/{p}/locations/{l}/publishers/google/models/{m}:streamGenerateContent?alt=sse

Requests are recorded as they arrived (``fake.requests``); the answers read them through
``camel_keys``, because google-genai sends nested fields in snake_case. A request needs
``Authorization: Bearer <token>``: none answers 401, a token in ``denied_tokens`` answers 403,
both with Google's error bodies. Answers are deterministic:

- text: ``"Echo: <the last user turn's text>"`` (its first 300 words; a ``functionResponse``
  turn instead answers ``"Tool <name> said <response JSON>"``), cut to ``maxOutputTokens``
  words (then MAX_TOKENS);
- a ``functionCall`` of the first declared (or allowed) function when tools are present, the
  calling mode is not NONE and the last turn is not a ``functionResponse``;
- a SAFETY-blocked candidate when the prompt contains ``[[blocked]]``; a prompt blocked by
  ``promptFeedback`` for ``[[prompt-blocked]]``;
- usageMetadata with prompt = words in the request (+258 per media part), 12 thought tokens;
  ``candidateCount`` candidates.

Context caching, as Vertex does it (``clock`` tells the time):

- implicit: a request whose system instruction and leading contents (all but the last) were
  sent within ``implicit_ttl_s`` and hold at least ``cache_min_tokens`` reports the longest such
  prefix as ``cachedContentTokenCount``; ``implicit_enabled = False`` makes it miss every time
  (Google does not promise a hit), as tests of the router's implicit-first policy need;
- explicit: the ``cachedContents`` API (``POST .../cachedContents``, ``GET``/``DELETE
  .../cachedContents/{id}``; under ``cache_min_tokens`` a 400). A ``generateContent`` with
  ``cachedContent`` answers as if the cache's contents came first and reports its tokens as
  cached; it may not set ``systemInstruction``, ``tools`` or ``toolConfig`` (400, as Vertex).
  A deleted cache answers 404, an expired one 400, each naming the cached content; tests end
  caches with ``expire_caches()`` and ``delete_caches()``.

Faults come from the base class (``inject(...)`` or ``[[fault:...]]`` markers) and answer with
the recorded Google error bodies in ``payloads/gemini/``; ``respond(payload)`` answers the next
request with a recorded payload verbatim. ``[[slow]]`` streams one event every
50 ms; ``streams_finished`` / ``streams_abandoned`` count how streams ended.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.server import FakeServer, Fault, StreamCut

PAYLOADS = Path(__file__).parent / "payloads" / "gemini"
ERROR_FILES = {
    400: "error_400",
    401: "error_401",
    403: "error_403",
    404: "error_404",
    429: "error_429",
    500: "error_500",
    503: "error_503",
    504: "error_504",
}
ECHO_WORDS = 300  # long documents are echoed only this far
STAMP = {"modelVersion": "", "createTime": "2025-09-18T09:41:27.512340Z", "responseId": "fake-response-1"}
PREFIX_FIELDS = ("systemInstruction", "tools", "toolConfig")


def count_tokens(parts: list[dict[str, Any]]) -> int:
    """The fake's token count: words of each part's JSON, 258 per media part."""
    media = sum(1 for p in parts if "inlineData" in p or "fileData" in p)
    return sum(len(json.dumps(p).split()) for p in parts if "inlineData" not in p) + 258 * media


def prompt_parts(body: dict[str, Any], contents: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    contents = body.get("contents") or [] if contents is None else contents
    return [
        *(body.get("systemInstruction") or {}).get("parts", []),
        *(p for c in contents for p in c.get("parts", [])),
    ]


def error_body(status: int, message: str) -> JSONResponse:
    kind = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND"}.get(status, "UNKNOWN")
    return JSONResponse({"error": {"code": status, "message": message, "status": kind}}, status_code=status)


def payload(name: str) -> Any:
    """A recorded wire payload from ``tests/fakes/payloads/gemini/``."""
    return json.loads((PAYLOADS / f"{name}.json").read_text(encoding="utf-8"))


def google_error(status: int, retry_after: float | None = None) -> dict[str, Any]:
    """Google's error body for ``status`` (a recorded one where there is one)."""
    name = ERROR_FILES.get(status)
    unknown = {"error": {"code": status, "message": f"HTTP {status}", "status": "UNKNOWN"}}
    body: dict[str, Any] = payload(name) if name else unknown
    if retry_after is not None:
        for detail in body["error"].get("details", []):
            if detail.get("@type", "").endswith("RetryInfo"):
                detail["retryDelay"] = f"{retry_after:g}s"
    return body


FREE_FORM = {"args", "response", "parametersJsonSchema", "responseJsonSchema", "parameters", "responseSchema"}


def camel_keys(value: Any) -> Any:
    """A request body with snake_case keys in camelCase, as Google's proto3 JSON parser reads
    both. google-genai sends nested objects (``inline_data.mime_type``, ``file_uri``,
    ``parameters_json_schema``) in snake_case. Free-form values (args, schemas) are kept."""
    if isinstance(value, list):
        return [camel_keys(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        head, *rest = key.split("_")
        name = head + "".join(w[:1].upper() + w[1:] for w in rest)
        out[name] = item if name in FREE_FORM else camel_keys(item)
    return out


def sse(data: Any) -> bytes:
    """One event as Vertex frames it: ``data: <json>`` and a CRLF blank line."""
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\r\n\r\n"


@dataclass
class FakeGemini(FakeServer):
    name: str = "fake-gemini"
    denied_tokens: set[str] = field(default_factory=lambda: {"denied"})
    canned: deque[Any] = field(default_factory=deque)
    streams_finished: int = 0
    streams_abandoned: int = 0
    clock: Callable[[], float] = time.monotonic
    cache_min_tokens: int = 1024
    implicit_ttl_s: float = 300.0
    implicit_enabled: bool = True  # False: the implicit cache never hits
    implicit_cache: dict[str, float] = field(default_factory=dict)  # prefix key -> expiry
    cached_contents: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> cache
    caches_made: int = 0

    def routes(self) -> list[Any]:
        path = "/{version}/projects/{project}/locations/{location}/publishers/google/models/{call:path}"
        caches = "/{version}/projects/{project}/locations/{location}/cachedContents"
        return [
            Route(path, self.handle, methods=["POST"]),
            Route(caches, self.create_cache, methods=["POST"]),
            Route(caches + "/{id}", self.cache_resource, methods=["GET", "DELETE"]),
        ]

    async def handle(self, request: Request) -> Response:
        body = camel_keys(await self.record(request))
        cached: int | None = None
        if isinstance(body, dict) and body.get("cachedContent"):
            body, cached, refused = self.with_cache(body)
            if refused is not None:
                return refused
        model, _, method = request.path_params["call"].partition(":")
        if request.path_params["version"] not in ("v1", "v1beta1") or method not in (
            "generateContent",
            "streamGenerateContent",
        ):
            return JSONResponse(google_error(404), status_code=404)
        denied = self.auth_error(request.headers.get("authorization", ""))
        if denied is not None:
            return denied
        fault = self.fault_for(body)
        if fault is not None:
            failed = await self.error_response(fault, lambda status: google_error(status, fault.retry_after))
            if failed is not None:
                return failed
        if self.canned:
            canned = self.canned.popleft()
            return (
                JSONResponse(canned)
                if method == "generateContent"
                else self.stream(canned, fault, slow=False)
            )
        if not isinstance(body, dict) or not body.get("contents"):
            return JSONResponse(google_error(400), status_code=400)
        if method == "generateContent":
            return JSONResponse(self.answer(body, model, cached))
        return self.stream(self.events(body, model, cached), fault, slow="[[slow]]" in json.dumps(body))

    # --- context caches ------------------------------------------------------------------
    async def create_cache(self, request: Request) -> Response:
        body = camel_keys(await self.record(request))
        denied = self.auth_error(request.headers.get("authorization", ""))
        if denied is not None:
            return denied
        tokens = count_tokens(prompt_parts(body))
        if tokens < self.cache_min_tokens:
            return error_body(
                400, f"The cached content is of {tokens} tokens; the minimum is {self.cache_min_tokens}."
            )
        self.caches_made += 1
        where = request.path_params
        name = f"projects/{where['project']}/locations/{where['location']}/cachedContents/{self.caches_made}"
        ttl = float(str(body.get("ttl") or "3600s").rstrip("s"))
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        expires = (datetime.now(UTC) + timedelta(seconds=ttl)).isoformat().replace("+00:00", "Z")
        record = {
            "name": name,
            "model": body.get("model"),
            "createTime": now,
            "updateTime": now,
            "expireTime": expires,
            "usageMetadata": {"totalTokenCount": tokens},
        }
        prefix = {k: body[k] for k in (*PREFIX_FIELDS, "contents") if body.get(k)}
        self.cached_contents[name] = {
            "record": record,
            "expires_at": self.clock() + ttl,
            "tokens": tokens,
            **prefix,
        }
        return JSONResponse(record)

    async def cache_resource(self, request: Request) -> Response:
        await self.record(request)
        name = request.url.path.split("/", 2)[2]  # without the leading /{version}/
        cache = self.cached_contents.get(name)
        if cache is None or cache["expires_at"] <= self.clock():
            return error_body(404, f"CachedContent not found: {name}")
        if request.method == "DELETE":
            del self.cached_contents[name]
            return JSONResponse({})
        return JSONResponse(cache["record"])

    def with_cache(self, body: dict[str, Any]) -> tuple[dict[str, Any], int, Response | None]:
        """The body as the model sees it through its cache, the cached tokens, or a refusal."""
        name = body["cachedContent"]
        cache = self.cached_contents.get(name)
        if cache is None:
            return body, 0, error_body(404, f"CachedContent not found (or permission denied): {name}")
        if cache["expires_at"] <= self.clock():
            return body, 0, error_body(400, f"Cache content {name.rsplit('/', 1)[-1]} is expired.")
        if any(k in body for k in PREFIX_FIELDS):
            message = (
                "CachedContent can not be used with GenerateContent request setting system_instruction, "
                "tools or tool_config."
            )
            return body, 0, error_body(400, message)
        merged = {**body, **{k: cache[k] for k in PREFIX_FIELDS if k in cache}}
        merged["contents"] = [*cache.get("contents", []), *body.get("contents", [])]
        return merged, cache["tokens"], None

    def expire_caches(self) -> None:
        """Every context cache ends now, as if its TTL had passed."""
        for cache in self.cached_contents.values():
            cache["expires_at"] = self.clock() - 1

    def delete_caches(self) -> None:
        self.cached_contents.clear()

    def implicit_hit(self, body: dict[str, Any]) -> int:
        """The tokens of the longest prefix (system instruction, leading contents) sent recently;
        0 with ``implicit_enabled`` off."""
        if not self.implicit_enabled:
            return 0
        now, hit = self.clock(), 0
        contents = body.get("contents") or []
        for k in range(len(contents)):
            tokens = count_tokens(prompt_parts(body, contents[:k]))
            if tokens < self.cache_min_tokens:
                continue
            key = hashlib.sha256(
                json.dumps([body.get("systemInstruction"), contents[:k]], sort_keys=True).encode()
            )
            if self.implicit_cache.get(key.hexdigest(), 0.0) > now:
                hit = tokens
            self.implicit_cache[key.hexdigest()] = now + self.implicit_ttl_s
        return hit

    def respond(self, answer: Any) -> None:
        """Answer the next request with ``answer`` verbatim: a response, or a list of stream events."""
        self.canned.append(answer)

    def reset(self) -> None:
        super().reset()
        self.canned.clear()
        self.implicit_cache.clear()
        self.implicit_enabled = True
        self.cached_contents.clear()
        self.clock = time.monotonic
        self.caches_made = 0

    def auth_error(self, authorization: str) -> Response | None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return JSONResponse(google_error(401), status_code=401)
        if token in self.denied_tokens:
            return JSONResponse(google_error(403), status_code=403)
        return None

    # --- answers -----------------------------------------------------------------------
    def answer(self, body: dict[str, Any], model: str, cached: int | None = None) -> dict[str, Any]:
        """The whole ``GenerateContentResponse`` for a request (``cached``: tokens read from an
        explicit cache; None: implicit caching decides)."""
        text = json.dumps(body)
        stamp = {**STAMP, "modelVersion": model}
        if cached is None:
            cached = self.implicit_hit(body)
        if "[[prompt-blocked]]" in text:
            blocked = payload("response_prompt_blocked")
            return {**blocked, **stamp, "usageMetadata": self.usage(body, 0, cached)}
        if "[[blocked]]" in text:
            return {
                **payload("response_safety_blocked"),
                **stamp,
                "usageMetadata": self.usage(body, 0, cached),
            }
        config = body.get("generationConfig") or {}
        candidates = [self.candidate(body, i) for i in range(int(config.get("candidateCount") or 1))]
        words = sum(
            len(p.get("text", "").split()) + 3 * ("functionCall" in p)
            for c in candidates
            for p in c["content"]["parts"]
        )
        return {"candidates": candidates, "usageMetadata": self.usage(body, words, cached), **stamp}

    def candidate(self, body: dict[str, Any], index: int) -> dict[str, Any]:
        call = self.function_call(body)
        if call is not None:
            parts = [{"functionCall": call, "thoughtSignature": "ZmFrZS1zaWduYXR1cmU="}]
            return {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": index}
        words = self.reply(body).split(" ")
        limit = (body.get("generationConfig") or {}).get("maxOutputTokens")
        reason = "MAX_TOKENS" if limit is not None and len(words) > limit else "STOP"
        text = " ".join(words[:limit] if limit is not None else words)
        text += f" (candidate {index})" if index else ""
        return {
            "content": {"role": "model", "parts": [{"text": text}]},
            "finishReason": reason,
            "index": index,
        }

    def reply(self, body: dict[str, Any]) -> str:
        last = body["contents"][-1]
        responses = [p["functionResponse"] for p in last.get("parts", []) if "functionResponse" in p]
        if responses:
            said = json.dumps(responses[0].get("response"), sort_keys=True)
            return f"Tool {responses[0].get('name')} said {said}"
        texts = [p["text"] for p in last.get("parts", []) if "text" in p]
        return "Echo: " + " ".join(" ".join(texts).split(" ")[:ECHO_WORDS])

    def function_call(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """A call of the first declared (or allowed) function, when the request invites one."""
        declarations = [d for tool in body.get("tools") or [] for d in tool.get("functionDeclarations") or []]
        calling = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
        last_parts = body["contents"][-1].get("parts", [])
        if (
            not declarations
            or calling.get("mode") == "NONE"
            or any("functionResponse" in p for p in last_parts)
        ):
            return None
        allowed = calling.get("allowedFunctionNames") or [declarations[0]["name"]]
        chosen = next(d for d in declarations if d["name"] == allowed[0])
        schema = chosen.get("parametersJsonSchema") or chosen.get("parameters") or {}
        topic = " ".join(p["text"] for p in last_parts if "text" in p)
        args = {
            key: topic if (spec or {}).get("type") == "string" else 1
            for key, spec in (schema.get("properties") or {}).items()
        }
        return {"name": chosen["name"], "args": args}

    def usage(self, body: dict[str, Any], completion_words: int, cached: int = 0) -> dict[str, Any]:
        """Vertex-style usage; zero counts are left out, as proto3 JSON does."""
        prompt = count_tokens(prompt_parts(body))
        thoughts = 12 if completion_words else 0
        usage = {
            "promptTokenCount": prompt,
            "candidatesTokenCount": completion_words,
            "totalTokenCount": prompt + completion_words + thoughts,
            "trafficType": "ON_DEMAND",
            "cachedContentTokenCount": cached,
            "thoughtsTokenCount": thoughts,
        }
        return {k: v for k, v in usage.items() if v}

    # --- streaming ---------------------------------------------------------------------
    def events(self, body: dict[str, Any], model: str, cached: int | None = None) -> list[dict[str, Any]]:
        """The whole answer split as Vertex streams it: text in pieces, usage on the last event."""
        whole = self.answer(body, model, cached)
        texts = [
            (c.get("content") or {}).get("parts", [{}])[0].get("text") for c in whole.get("candidates", [])
        ]
        if not texts or None in texts:
            return [whole]  # blocked answers and function calls come in one event
        stamp = {k: whole[k] for k in STAMP}
        pieces: list[list[dict[str, Any]]] = []
        for candidate in whole["candidates"]:
            words = candidate["content"]["parts"][0]["text"].split(" ")
            split = [" ".join(words[i : i + 2]) for i in range(0, len(words), 2)]
            texts = [s if i == 0 else " " + s for i, s in enumerate(split)]
            pieces.append([self.piece(candidate, t, i == len(texts) - 1) for i, t in enumerate(texts)])
        events = []
        for step in range(max(len(p) for p in pieces)):
            candidates = [p[step] for p in pieces if step < len(p)]
            events.append({"candidates": candidates, "usageMetadata": {"trafficType": "ON_DEMAND"}, **stamp})
        events[-1]["usageMetadata"] = whole["usageMetadata"]
        return events

    @staticmethod
    def piece(candidate: dict[str, Any], text: str, last: bool) -> dict[str, Any]:
        out = {"content": {"role": "model", "parts": [{"text": text}]}, "index": candidate["index"]}
        if last:
            out["finishReason"] = candidate["finishReason"]
        return copy.deepcopy(out)

    def stream(self, events: list[dict[str, Any]], fault: Fault | None, slow: bool) -> StreamingResponse:
        """SSE with the fault's cut or malformed event; counts finished and abandoned streams."""

        async def body() -> AsyncIterator[bytes]:
            try:
                for i, event in enumerate(events):
                    if fault is not None and fault.cut_after is not None and i == fault.cut_after:
                        raise StreamCut(f"{self.name}: stream cut after {i} events")
                    if fault is not None and fault.malformed_after is not None and i == fault.malformed_after:
                        yield b'data: {"candidates": [{"content": \r\n\r\n'
                    yield sse(event)
                    await asyncio.sleep(0.05 if slow else 0)
                self.streams_finished += 1
            except (asyncio.CancelledError, GeneratorExit):
                self.streams_abandoned += 1
                raise

        return StreamingResponse(body(), media_type="text/event-stream")
