"""Vertex AI Gemini responses, stream events and error bodies -> OpenAI shapes. Pure, no I/O:
the response half of ``app.backends.gemini_translate``, which the client imports.

Inputs are ``GenerateContentResponse`` bodies as JSON on the wire (camelCase; zero-valued
fields absent, as proto3 JSON omits them). Choices:
- one choice per candidate; text parts are joined, thought parts (``thought: true``) left out;
- ``functionCall`` parts become ``tool_calls`` with fresh ``call_<hex>`` ids; their
  ``thoughtSignature`` rides along as ``extra_content.google.thought_signature``;
- a prompt blocked by ``promptFeedback.blockReason`` (no candidates) is a completion with
  ``finish_reason: "content_filter"`` and empty content, not an error: the call succeeded
  and was billed, and OpenAI reports its own filtering the same way;
- usage: prompt = ``promptTokenCount`` (cached tokens included) + ``toolUsePromptTokenCount``,
  completion = ``candidatesTokenCount`` + ``thoughtsTokenCount``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from app import openai_wire as wire
from app.backends.cloud import error_for_status, header, retry_after_seconds
from app.errors import RouterError, UpstreamUnavailableError
from app.openai_wire import Json

FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "MODEL_ARMOR": "content_filter",
}
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


def to_openai_completion(
    response: Json, *, model: str, id: str | None = None, created: int | None = None
) -> Json:
    """A ``chat.completion`` for one ``generateContent`` response."""
    candidates = response.get("candidates") or []
    choices = [completion_choice(c, i) for i, c in enumerate(candidates)]
    if not choices:
        blocked = bool((response.get("promptFeedback") or {}).get("blockReason"))
        choices = [empty_choice(0, "content_filter" if blocked else "stop")]
    return wire.completion(
        id or completion_id(response),
        model,
        choices,
        created=created if created is not None else created_at(response),
        usage=to_openai_usage(response.get("usageMetadata") or {}),
    )


def completion_choice(candidate: Json, position: int) -> Json:
    text, calls = candidate_content(candidate)
    message: Json = {"role": "assistant", "content": text if text or not calls else None, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    return {
        "index": candidate.get("index", position),
        "message": message,
        "finish_reason": finish_reason(candidate.get("finishReason"), bool(calls)),
        "logprobs": to_openai_logprobs(candidate.get("logprobsResult")),
    }


def empty_choice(index: int, reason: str) -> Json:
    message = {"role": "assistant", "content": "", "refusal": None}
    return {"index": index, "message": message, "finish_reason": reason, "logprobs": None}


def candidate_content(candidate: Json) -> tuple[str, list[Json]]:
    """(joined answer text, OpenAI tool calls) of a candidate; thoughts are left out."""
    texts, calls = [], []
    for part in (candidate.get("content") or {}).get("parts") or []:
        if part.get("thought"):
            continue
        if "text" in part:
            texts.append(part["text"])
        elif "functionCall" in part:
            calls.append(tool_call(part))
    return "".join(texts), calls


def tool_call(part: Json) -> Json:
    """A ``functionCall`` part as an OpenAI tool call with a fresh id."""
    call = part["functionCall"]
    out: Json = {
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": call.get("name", ""), "arguments": json.dumps(call.get("args") or {})},
    }
    if part.get("thoughtSignature"):
        out["extra_content"] = {"google": {"thought_signature": part["thoughtSignature"]}}
    return out


def finish_reason(reason: str | None, has_calls: bool) -> str | None:
    """OpenAI's finish_reason for Gemini's; unknown reasons (OTHER, MALFORMED_FUNCTION_CALL) -> stop."""
    if reason is None:
        return None
    mapped = FINISH_REASONS.get(reason, "stop")
    return "tool_calls" if mapped == "stop" and has_calls else mapped


def to_openai_usage(meta: Json) -> Json:
    """OpenAI usage from ``usageMetadata`` (absent counts are zero)."""
    prompt = int(meta.get("promptTokenCount", 0)) + int(meta.get("toolUsePromptTokenCount", 0))
    thoughts = int(meta.get("thoughtsTokenCount", 0))
    completion = int(meta.get("candidatesTokenCount", 0)) + thoughts
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": int(meta.get("cachedContentTokenCount", 0))},
        "completion_tokens_details": {"reasoning_tokens": thoughts},
    }


def to_openai_logprobs(result: Json | None) -> Json | None:
    """``logprobsResult`` as OpenAI ``logprobs.content`` (chosen token plus its alternatives)."""
    if not result:
        return None
    tops = result.get("topCandidates") or []
    content = []
    for i, chosen in enumerate(result.get("chosenCandidates") or []):
        alternatives = (tops[i].get("candidates") or []) if i < len(tops) else []
        entry = token_logprob(chosen)
        entry["top_logprobs"] = [token_logprob(a) for a in alternatives]
        content.append(entry)
    return {"content": content, "refusal": None}


def token_logprob(candidate: Json) -> Json:
    token = str(candidate.get("token", ""))
    return {
        "token": token,
        "logprob": float(candidate.get("logProbability", 0.0)),
        "bytes": list(token.encode()),
    }


def completion_id(response: Json) -> str:
    return wire.new_id(response.get("responseId"))


def created_at(response: Json) -> int:
    """``createTime`` (RFC 3339) as a Unix time; now when absent or unreadable."""
    try:
        return int(datetime.fromisoformat(str(response["createTime"])).timestamp())
    except (KeyError, ValueError):
        return int(time.time())


# --- streaming ----------------------------------------------------------------------------
class StreamTranslator:
    """Turns streamed ``GenerateContentResponse`` events into ``chat.completion.chunk`` dicts.

    ``feed(event)`` returns the chunks for one event: a role chunk the first time a candidate
    appears, text deltas, whole tool calls (Gemini sends each function call in one event), and
    the candidate's finish chunk. ``finish()`` returns the one usage chunk
    (``choices: []``), built from the last ``usageMetadata`` that carried counts; it raises
    ``UpstreamUnavailableError`` when the stream ended before any candidate finished.
    """

    def __init__(self, model: str, id: str, created: int | None = None, provider: str = "vertex_ai") -> None:
        self.model = model
        self.provider = provider
        self.id = id
        self.created = created if created is not None else int(time.time())
        self.usage: Json = {}
        self.started: set[int] = set()
        self.finished: set[int] = set()
        self.calls: dict[int, int] = {}

    def feed(self, event: Json) -> list[Json]:
        if not isinstance(event, dict):
            raise UpstreamUnavailableError(f"{self.provider}: malformed stream event")
        meta = event.get("usageMetadata") or {}
        if any(key.endswith("TokenCount") for key in meta):  # not the bare {"trafficType": ...}
            self.usage = meta
        candidates = event.get("candidates") or []
        if not candidates and (event.get("promptFeedback") or {}).get("blockReason"):
            self.finished.add(0)
            return [*self.start(0), self.chunk(0, {}, "content_filter")]
        chunks: list[Json] = []
        for position, candidate in enumerate(candidates):
            chunks += self.candidate_chunks(candidate.get("index", position), candidate)
        return chunks

    def candidate_chunks(self, index: int, candidate: Json) -> list[Json]:
        chunks = self.start(index)
        text, calls = candidate_content(candidate)
        logprobs = to_openai_logprobs(candidate.get("logprobsResult"))
        if text or logprobs:
            chunks.append(self.chunk(index, {"content": text}, logprobs=logprobs))
        for call in calls:
            position = self.calls.get(index, 0)
            self.calls[index] = position + 1
            chunks.append(self.chunk(index, {"tool_calls": [{"index": position, **call}]}))
        reason = candidate.get("finishReason")
        if reason and index not in self.finished:
            self.finished.add(index)
            chunks.append(self.chunk(index, {}, finish_reason(reason, index in self.calls)))
        return chunks

    def start(self, index: int) -> list[Json]:
        if index in self.started:
            return []
        self.started.add(index)
        return [self.chunk(index, {"role": "assistant", "content": ""})]

    def finish(self) -> list[Json]:
        if not self.finished:
            raise UpstreamUnavailableError(f"{self.provider}: the stream ended before the answer finished")
        return [wire.usage_chunk(self.id, self.model, self.created, to_openai_usage(self.usage))]

    def chunk(self, index: int, delta: Json, reason: str | None = None, logprobs: Json | None = None) -> Json:
        return wire.chunk(
            self.id, self.model, self.created, delta, index=index, finish_reason=reason, logprobs=logprobs
        )


# --- errors ---------------------------------------------------------------------------------
def error_from_gemini(
    provider: str, status: int | None, body: Any, headers: Mapping[str, str] | None = None
) -> RouterError:
    """A Google error body ``{"error": {code, message, status, details}}`` as a RouterError.

    The delay comes from a ``google.rpc.RetryInfo`` detail, else the ``Retry-After`` header.
    """
    error = body.get("error", body) if isinstance(body, dict) else {}
    error = error if isinstance(error, dict) else {"message": str(error)}
    code = status or int(error.get("code") or 500)
    message = str(error.get("message") or (body if isinstance(body, str) else "") or f"HTTP {code}")
    retry_after = retry_delay(error.get("details")) or retry_after_seconds(header(headers, "retry-after"))
    return error_for_status(provider, code, message, vendor_code=error.get("status"), retry_after=retry_after)


def retry_delay(details: Any) -> float | None:
    """Seconds from a ``RetryInfo`` detail's ``retryDelay`` (a JSON Duration such as "2.5s")."""
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and detail.get("@type") == RETRY_INFO:
            value = str(detail.get("retryDelay", ""))
            return retry_after_seconds(value[:-1] if value.endswith("s") else None)
    return None
