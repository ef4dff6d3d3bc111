"""Analysis: a chat request in, the features routing decides on out.

Features are the token count (tiktoken, estimated for huge prompts), the seed's complexity
score with the signals that produced it, the task type, modality, tools and the latency need.
``analyze`` is pure and cheap: text patterns look only at the head and tail of the latest user
turn, and token counting samples very long text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from app.config import AutoThresholds
from app.routing import signals as sig
from app.routing.tokens import TokenCounter

WINDOW_CHARS = 4_000  # head and tail of the latest user turn scanned for signals
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

    @property
    def multimodal(self) -> bool:
        return self.has_images

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["complexity_signals"] = list(self.complexity_signals)
        out["metadata"] = dict(self.metadata)
        return out


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def instruction_text(messages: list[dict]) -> str:
    """Head and tail of the latest user turn: where instructions sit, whatever sits between."""
    for message in reversed(messages):
        if message.get("role") == "user":
            text = text_of(message.get("content"))
            if len(text) <= 2 * WINDOW_CHARS:
                return text
            return text[:WINDOW_CHARS] + "\n...\n" + text[-WINDOW_CHARS:]
    return ""


def has_image(messages: list[dict]) -> bool:
    for message in messages:
        content = message.get("content")
        if isinstance(content, list) and any(
            isinstance(p, dict) and p.get("type") in ("image_url", "input_audio", "file") for p in content
        ):
            return True
    return False


def classify_task(text: str, *, has_code: bool) -> str:
    """Tells code generation from code analysis by whichever kind of verb comes first."""
    if has_code or sig.CODE_NOUNS.search(text):
        gen = sig.first_match(sig.CODE_GENERATION_VERBS, text)
        ana = sig.first_match(sig.CODE_ANALYSIS_VERBS, text)
        if gen is not None and (ana is None or gen < ana):
            return "code_generation"
        if ana is not None or has_code:
            return "code_analysis"
    if sig.TRANSLATION.search(text):
        return "translation"
    if sig.SUMMARIZATION.search(text):
        return "summarization"
    if sig.QUESTION_START.search(text) and len(text) < 400:
        return "simple_qa"
    if sig.ANALYSIS.search(text):
        return "analysis"
    return "general"


def complexity(
    text: str, *, task: str, tokens: int, has_images: bool, has_tools: bool, has_code: bool, long_prompt: int
) -> tuple[float, tuple[str, ...]]:
    """The seed's score: high signals add 0.3, medium 0.2, low 0.1; capped at 1.0."""
    found: list[tuple[str, float]] = []
    multi_step = (
        sig.HIGH_KEYWORDS.search(text)
        or len(sig.distinct(sig.ACTION_VERBS, text)) >= 3
        or len(sig.SEQUENCE.findall(text)) >= 2
    )
    high = {
        "multi_step_reasoning": bool(multi_step),
        "code": has_code or task in ("code_generation", "code_analysis"),
        "long_context": tokens >= long_prompt,
        "multimodal": has_images,
        "function_calling": has_tools,
    }
    medium = {
        "multi_part_question": text.count("?") >= 2 or len(sig.LIST_ITEM.findall(text)) >= 2,
        "detailed_explanation": bool(sig.DETAILED.search(text)),
        "domain_knowledge": bool(sig.DOMAIN.search(text)),
        "medium_keyword": bool(sig.MEDIUM_KEYWORDS.search(text)),
    }
    low = {
        "low_keyword": bool(sig.LOW_KEYWORDS.search(text)),
        "simple_task": task in ("simple_qa", "summarization") and not any(high.values()),
    }
    for table, weight in ((high, 0.3), (medium, 0.2), (low, 0.1)):
        found += [(name, weight) for name, hit in table.items() if hit]
    score = min(1.0, round(sum(w for _, w in found), 2))
    return score, tuple(name for name, _ in found)


def latency_need(request: Mapping[str, Any], text: str) -> int | None:
    """An explicit latency budget in ms (body ``max_latency_ms`` or ``metadata.latency_ms``), or one
    implied by urgency words; None when the request states no need."""
    for value in (request.get("max_latency_ms"), (request.get("metadata") or {}).get("latency_ms")):
        try:
            if value is not None and int(value) > 0:
                return int(value)
        except (TypeError, ValueError):
            pass
    return URGENT_LATENCY_MS if sig.URGENT.search(text) else None


class Analyzer:
    """Turns a chat request (a plain dict in OpenAI's shape) into ``Features``."""

    def __init__(self, thresholds: AutoThresholds, counter: TokenCounter | None = None) -> None:
        self.thresholds = thresholds
        self.counter = counter or TokenCounter()

    def analyze(self, request: Mapping[str, Any], *, exact_tokens: bool = False) -> Features:
        messages: list[dict] = list(request.get("messages") or [])
        tools = request.get("tools") or request.get("functions") or None
        count = self.counter.request(messages, tools, exact=exact_tokens)
        text = instruction_text(messages)
        has_code = bool(sig.CODE_MARKERS.search(text))
        images = has_image(messages)
        task = classify_task(text, has_code=has_code)
        score, found = complexity(
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
            complexity=score,
            complexity_signals=found,
            task=task,
            has_images=images,
            has_tools=bool(tools),
            latency_ms=latency_need(request, text),
            messages=len(messages),
            stream=bool(request.get("stream")),
            metadata=metadata or {},
        )
