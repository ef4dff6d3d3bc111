"""Analysis: a chat request in, the features routing decides on out.

Features are the token count (tiktoken, estimated for huge prompts), the seed's complexity
score with the signals that produced it, the task type, modality, tools and the latency need.
``analyze`` is pure and cheap: text patterns look only at the head and tail of the latest user
turn, and token counting samples very long text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from app.config import AutoThresholds
from app.routing import signals as sig
from app.routing.quality.features import vectorize
from app.routing.tokens import TokenCounter

HEAD_CHARS, TAIL_CHARS = 2_000, 1_000  # the parts of the latest user turn scanned for signals
URGENCY_CHARS = 300  # urgency words count only this close to a turn's start or end
URGENT_LATENCY_MS = 300  # the latency need implied by "quick", "asap", "real-time"...

TASKS = (
    "code_generation",
    "code_analysis",
    "translation",
    "summarization",
    "simple_qa",
    "analysis",
    "general",
)


@dataclass(frozen=True)
class Features:
    tokens: int
    tokens_exact: bool
    max_tokens: int | None
    complexity: float
    complexity_signals: tuple[str, ...]
    task: str
    has_images: bool
    has_tools: bool
    latency_ms: int | None
    messages: int
    stream: bool
    metadata: Mapping[str, Any] = field(default_factory=dict)
    quality_inputs: tuple[float, ...] = ()  # the quality predictor's features (app.routing.quality)
    quality_margin: float | None = None  # the request's own cost-quality knob, if it set one
    needs_json: bool = False  # response_format json_object / json_schema: the json_mode capability
    needs_logprobs: bool = False  # logprobs / top_logprobs: the logprobs capability

    @property
    def multimodal(self) -> bool:
        return self.has_images

    def as_dict(self) -> dict[str, Any]:
        # NOTE: field by field, not dataclasses.asdict (which deep-copies; 30x slower): this runs
        # for every request's log line and decision record, and every field but these is a scalar.
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["complexity_signals"] = list(self.complexity_signals)
        out["quality_inputs"] = [round(x, 4) for x in self.quality_inputs]
        out["metadata"] = dict(self.metadata)
        return out


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def latest_user_text(messages: list[dict]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return text_of(message.get("content"))
    return ""


def instruction_text(messages: list[dict]) -> str:
    """Head and tail of the latest user turn: where instructions sit, whatever sits between."""
    return head_and_tail(latest_user_text(messages))


def head_and_tail(text: str) -> str:
    if len(text) <= HEAD_CHARS + TAIL_CHARS:
        return text
    return text[:HEAD_CHARS] + "\n...\n" + text[-TAIL_CHARS:]


def has_image(messages: list[dict]) -> bool:
    for message in messages:
        content = message.get("content")
        if isinstance(content, list) and any(
            isinstance(p, dict) and p.get("type") in ("image_url", "input_audio", "file") for p in content
        ):
            return True
    return False


def classify_task(text: sig.Text, *, has_code: bool) -> str:
    """Tells code generation from code analysis by whichever kind of verb comes first."""
    if has_code or text.has(sig.CODE_NOUNS):
        gen = text.first(sig.CODE_GENERATION_VERBS)
        ana = text.first(sig.CODE_ANALYSIS_VERBS)
        if gen is not None and (ana is None or gen < ana):
            return "code_generation"
        if ana is not None or has_code:
            return "code_analysis"
    if text.has(sig.TRANSLATION):
        return "translation"
    if text.has(sig.SUMMARIZATION):
        return "summarization"
    if text.starts_with(sig.QUESTION_START) and len(text.words) < 60:
        return "simple_qa"
    if text.has(sig.ANALYSIS):
        return "analysis"
    return "general"


SIGNAL_WEIGHTS = {
    # The seed's high signals add 0.3, medium 0.2, low 0.1.
    "multi_step_reasoning": 0.3,
    "code": 0.3,
    "long_context": 0.3,
    "multimodal": 0.3,
    "function_calling": 0.3,
    "multi_part_question": 0.2,
    "detailed_explanation": 0.2,
    "domain_knowledge": 0.2,
    "medium_keyword": 0.2,
    "low_keyword": 0.1,
    "simple_task": 0.1,
}


def score(signals: tuple[str, ...]) -> float:
    return min(1.0, round(sum(SIGNAL_WEIGHTS[s] for s in signals), 2))


def complexity_signals(
    raw: str, text: sig.Text, *, task: str, tokens: int, has_images: bool, has_tools: bool, has_code: bool,
    long_prompt: int,
) -> tuple[str, ...]:
    """Which of the seed's complexity signals a request shows, in ``SIGNAL_WEIGHTS`` order."""
    multi_step = (
        text.has(sig.HIGH_KEYWORDS)
        or len(text.found(sig.ACTION_VERBS)) >= 3
        or len(text.found(sig.SEQUENCE)) >= 2
    )
    hits = {
        "multi_step_reasoning": multi_step,
        "code": has_code or task in ("code_generation", "code_analysis"),
        "long_context": tokens >= long_prompt,
        "multimodal": has_images,
        "function_calling": has_tools,
        "multi_part_question": raw.count("?") >= 2 or len(sig.LIST_ITEM.findall(raw)) >= 2,
        "detailed_explanation": text.has(sig.DETAILED),
        "domain_knowledge": text.has(sig.DOMAIN),
        "medium_keyword": text.has(sig.MEDIUM_KEYWORDS),
        "low_keyword": text.has(sig.LOW_KEYWORDS),
    }
    high = ("multi_step_reasoning", "code", "long_context", "multimodal", "function_calling")
    hits["simple_task"] = task in ("simple_qa", "summarization") and not any(hits[h] for h in high)
    return tuple(name for name in SIGNAL_WEIGHTS if hits[name])


def latency_need(request: Mapping[str, Any], text: sig.Text) -> int | None:
    """An explicit latency budget in ms (body ``max_latency_ms`` or ``metadata.latency_ms``), or one
    implied by urgency words; None when the request states no need."""
    for value in (request.get("max_latency_ms"), (request.get("metadata") or {}).get("latency_ms")):
        try:
            if value is not None and int(value) > 0:
                return int(value)
        except (TypeError, ValueError):
            pass
    return URGENT_LATENCY_MS if text.has(sig.URGENT) else None


def edges(raw: str, chars: int = URGENCY_CHARS) -> str:
    """The opening and closing words of a turn: where a request says how it wants to be served
    (a pasted document's own "quick" or "real-time" says nothing about this request)."""
    return raw if len(raw) <= 2 * chars else raw[:chars] + " ... " + raw[-chars:]


def needs_json_mode(request: Mapping[str, Any]) -> bool:
    """``response_format`` asks for JSON (``json_object`` or ``json_schema``)."""
    fmt = request.get("response_format")
    return isinstance(fmt, Mapping) and fmt.get("type") in ("json_object", "json_schema")


class Analyzer:
    """Turns a chat request (a plain dict in OpenAI's shape) into ``Features``."""

    def __init__(self, thresholds: AutoThresholds, counter: TokenCounter | None = None) -> None:
        self.thresholds = thresholds
        self.counter = counter or TokenCounter()

    def analyze(self, request: Mapping[str, Any]) -> Features:
        messages: list[dict] = list(request.get("messages") or [])
        tools = request.get("tools") or request.get("functions") or None
        count = self.counter.request(messages, tools)
        latest = latest_user_text(messages)
        raw = head_and_tail(latest)
        text = sig.Text.of(raw)
        has_code = bool(sig.CODE_MARKERS.search(raw))
        images = has_image(messages)
        task = classify_task(text, has_code=has_code)
        signals = complexity_signals(
            raw,
            text,
            task=task,
            tokens=count.tokens,
            has_images=images,
            has_tools=bool(tools),
            has_code=has_code,
            long_prompt=self.thresholds.long_prompt_signal_tokens,
        )
        max_tokens = request.get("max_completion_tokens") or request.get("max_tokens")
        metadata = request.get("metadata") if isinstance(request.get("metadata"), Mapping) else {}
        return Features(
            tokens=count.tokens,
            tokens_exact=count.exact,
            max_tokens=int(max_tokens) if max_tokens else None,
            complexity=score(signals),
            complexity_signals=signals,
            task=task,
            has_images=images,
            has_tools=bool(tools),
            latency_ms=latency_need(request, sig.Text.of(edges(raw))),
            messages=len(messages),
            stream=bool(request.get("stream")),
            metadata=metadata or {},
            quality_inputs=tuple(vectorize(raw, length=len(latest))),
            needs_json=needs_json_mode(request),
            needs_logprobs=bool(request.get("logprobs")) or bool(request.get("top_logprobs")),
        )

    def count_exactly(self, request: Mapping[str, Any]) -> int:
        """The exact prompt token count; slow for huge prompts, so callers run it in a thread."""
        messages = list(request.get("messages") or [])
        return self.counter.request(messages, request.get("tools") or request.get("functions"), exact=True).tokens

    def with_exact_tokens(self, features: Features, tokens: int) -> Features:
        """``features`` with an exact token count, and the long-context signal redone to match."""
        others = tuple(s for s in features.complexity_signals if s != "long_context")
        long_prompt = ("long_context",) if tokens >= self.thresholds.long_prompt_signal_tokens else ()
        signals = tuple(s for s in SIGNAL_WEIGHTS if s in others or s in long_prompt)
        return replace(features, tokens=tokens, tokens_exact=True, complexity_signals=signals, complexity=score(signals))
