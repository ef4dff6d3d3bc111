"""Analysis: a chat request in, the features routing decides on out.

Features are the token count (tiktoken, estimated for huge prompts), the routing guide's complexity
score with the signals that produced it, the task type, modality, tools and the latency need.
``analyze`` is pure and cheap: text patterns look only at the head and tail of the latest user
turn, and token counting samples very long text. Word signals come from the turn's own words
(``material.own_text``): what it quotes, pastes or offers as answer options is not the request.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Set
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from app.openai_wire import requested_max_tokens, text_of
from app.routing import signals as sig
from app.routing.code_cues import code_evidence
from app.routing.material import own_text
from app.routing.quality.features import vectorize
from app.routing.tokens import TokenCounter

if TYPE_CHECKING:  # the config's type only: the config checks conditions, which read Features
    from app.config import AutoThresholds

HEAD_CHARS, TAIL_CHARS = 2_000, 1_000  # the parts of the latest user turn scanned for signals
OPENING_CHARS, CLOSING_CHARS = 100, 300  # where urgency words count: a request's opening, its last sentence
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
    latency_stated: bool = False  # latency_ms is the request's own number, not implied by its words

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


def latest_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return text_of(message.get("content"))
    return ""


def instruction_text(messages: list[dict[str, Any]]) -> str:
    """Head and tail of the latest user turn: where instructions sit, whatever sits between."""
    return head_and_tail(latest_user_text(messages))


def head_and_tail(text: str) -> str:
    if len(text) <= HEAD_CHARS + TAIL_CHARS:
        return text
    return text[:HEAD_CHARS] + "\n...\n" + text[-TAIL_CHARS:]


def has_image(messages: list[dict[str, Any]]) -> bool:
    for message in messages:
        content = message.get("content")
        if isinstance(content, list) and any(
            isinstance(p, dict) and p.get("type") in ("image_url", "input_audio", "file") for p in content
        ):
            return True
    return False


def classify_task(text: sig.Text, *, has_code: bool, code: bool) -> str:
    """A code task needs code evidence (``code``; ``has_code``: a code block or code syntax) and a
    code action; generation is told from analysis by whichever kind of verb comes first."""
    if text.has(sig.TRANSLATION) and text.has(sig.NATURAL_TARGETS) and _translation_first(text):
        return "translation"
    if code:
        gen = 0 if _codes(text.words) else text.first(sig.CODE_GENERATION_VERBS)
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


_MAKING_VERBS = sig.CODE_GENERATION_VERBS - {"translate", "convert", "port"}


def _translation_first(text: sig.Text) -> bool:
    """ "Translate this into Spanish" is a translation; "write a function that translates text into
    Spanish" is code."""
    translate, making = text.first(sig.TRANSLATION), text.first(_MAKING_VERBS)
    return making is None or (translate is not None and translate < making)


def _codes(words: tuple[str, ...]) -> bool:
    """ "Code a snake game", "code up the parser": "code" as the request's verb (not "code review")."""
    return words[:1] == ("code",) and len(words) > 1 and words[1] in sig.OBJECT_FILLERS | {"up"}


SIGNAL_WEIGHTS = {
    # The routing guide's weights: high signals add 0.3, medium 0.2, low 0.1.
    "multi_step_reasoning": 0.3,
    # Two or more independent multi-step cues ("analyze in depth", "step by step", three action
    # verbs...): an explicit deep analysis reaches the high threshold (0.7) with "in depth"/"detailed".
    "deep_analysis": 0.3,
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
    own: str,
    text: sig.Text,
    *,
    task: str,
    tokens: int,
    has_images: bool,
    has_tools: bool,
    has_code: bool,
    long_prompt: int,
) -> tuple[str, ...]:
    """Which of the routing guide's complexity signals a request shows, in ``SIGNAL_WEIGHTS`` order."""
    cues = multi_step_cues(own, text)
    hits = {
        "multi_step_reasoning": cues >= 1,
        "deep_analysis": cues >= 2,
        "code": has_code or task in ("code_generation", "code_analysis"),
        "long_context": tokens >= long_prompt,
        "multimodal": has_images,
        "function_calling": has_tools,
        "multi_part_question": own.count("?") >= 2 or len(sig.LIST_ITEM.findall("\n" + own)) >= 2,
        "detailed_explanation": text.has(sig.DETAILED),
        "domain_knowledge": text.has(sig.DOMAIN),
        "medium_keyword": text.has(sig.MEDIUM_KEYWORDS),
        "low_keyword": text.has(sig.LOW_KEYWORDS),
    }
    high = ("multi_step_reasoning", "code", "long_context", "multimodal", "function_calling")
    hits["simple_task"] = task in ("simple_qa", "summarization") and not any(hits[h] for h in high)
    return tuple(name for name in SIGNAL_WEIGHTS if hits[name])


_CLAUSE_BREAKS = ".;:!?,\n("
_LEAD = " \t-*•>#0123456789)\"'“”‘’"  # spaces, list markers and quote marks before a clause's first word
_JOINERS = frozenset(("and", "or", "then"))
OPENERS_BEFORE_A_WORD = 3  # "..., and then also design": openers looked through before a word


def multi_step_cues(own: str, text: sig.Text) -> int:
    """Independent signs of a multi-step request: each distinct high keyword, three or more distinct
    action verbs, two or more sequence words ("first ... then ..."). Sequence words, and verbs that
    are everyday nouns too ("plan", "design"), count only where a clause starts."""
    high = {sig.HIGH_KEYWORD_SPELLINGS.get(k, k) for k in text.found(sig.HIGH_KEYWORDS)}
    verbs = text.found(sig.ACTION_VERBS)
    sequence = text.found(sig.SEQUENCE)
    ambiguous = (verbs & sig.AMBIGUOUS_ACTION_VERBS) | sequence
    if ambiguous:
        starts = clause_starts(own, ambiguous)
        verbs = {v for v in verbs if v not in sig.AMBIGUOUS_ACTION_VERBS or v in starts}
        sequence &= starts
    return len(high) + (len(verbs) >= 3) + (len(sequence) >= 2)


def clause_starts(own: str, words: Set[str]) -> set[str]:
    """Which of ``words`` open a clause somewhere in ``own`` (see ``opens_clause``)."""
    low = own.lower()
    return {word for word in words if any(opens_clause(low, at) for at in _occurrences(low, word))}


def opens_clause(low: str, at: int) -> bool:
    """Whether the word at ``low[at]`` opens a clause: it follows punctuation, a line or list marker
    (perhaps after openers: "and then", "please"), or a joining "and"/"or"/"then" ("..., assess the
    impact and propose a plan"; a joining "then" is no sequence word itself: "if x then y")."""
    head = low[:at].rstrip(_LEAD)
    for _ in range(OPENERS_BEFORE_A_WORD + 1):
        if not head or head[-1] in _CLAUSE_BREAKS:
            return True
        parts = head.rsplit(None, 1)
        word = parts[-1].lstrip("(\"'“‘")
        if word in _JOINERS:
            return True
        if word not in sig.CLAUSE_OPENERS:
            return False
        head = parts[0].rstrip(_LEAD) if len(parts) == 2 else ""
    return False


def _occurrences(low: str, word: str) -> Iterator[int]:
    """Where ``word`` occurs in ``low`` as a whole word."""
    at = low.find(word)
    while at != -1:
        end = at + len(word)
        if (at == 0 or not low[at - 1].isalnum()) and (end == len(low) or not low[end].isalnum()):
            yield at
        at = low.find(word, end)


def stated_latency(request: Mapping[str, Any]) -> int | None:
    """The latency budget in ms the request states (body ``max_latency_ms`` or ``metadata.latency_ms``)."""
    for value in (request.get("max_latency_ms"), (request.get("metadata") or {}).get("latency_ms")):
        try:
            if value is not None and int(value) > 0:
                return int(value)
        except (TypeError, ValueError):
            pass
    return None


def latency_need(request: Mapping[str, Any], text: sig.Text) -> int | None:
    """The stated latency budget, or one implied by urgency words in ``text`` (see
    ``urgency_zone``); None when the request states no need."""
    stated = stated_latency(request)
    if stated is not None:
        return stated
    return URGENT_LATENCY_MS if urgent(text) else None


def urgency_zone(own: str) -> str:
    """The opening words and the last sentence of a request's own words: where it says how it wants
    to be served (a story's "she immediately left", a pasted document's "real-time" say nothing)."""
    own = own.strip()
    if len(own) <= OPENING_CHARS:
        return own
    body = own.rstrip(" \t\n.!?")
    cut = max(body.rfind(c) for c in ".!?\n")
    return own[:OPENING_CHARS] + "\n" + body[cut + 1 :][-CLOSING_CHARS:]


def urgent(text: sig.Text) -> bool:
    """Whether urgency words are about this answer ("quick question", "reply in real time", "be
    brief"), not a topic ("the quick ratio", "real-time systems", "a legal brief") or a word the
    request mentions ("what does immediately mean")."""
    for key in text.found(sig.URGENT):
        before, after = text.around(key)
        if before in sig.MENTIONED_AFTER or (key == "quick" and after in sig.QUICK_TOPICS):
            continue
        if key in sig.URGENT_ADVERBS and text.first_at[key] > 0 and before not in sig.URGENT_ADVERB_AFTER:
            continue
        if key in sig.URGENT_IF_ABOUT_THE_ANSWER and not (
            before in sig.ANSWER_MANNER_BEFORE or after in sig.ANSWER_NOUNS
        ):
            continue
        return True
    return False


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
        messages: list[dict[str, Any]] = list(request.get("messages") or [])
        tools = request.get("tools") or request.get("functions") or None
        count = self.counter.request(messages, tools)
        latest = latest_user_text(messages)
        raw = head_and_tail(latest)
        own = own_text(raw)
        text = sig.Text.of(own)
        has_code = sig.has_code_syntax(raw)
        images = has_image(messages)
        task = classify_task(text, has_code=has_code, code=has_code or code_evidence(text, own))
        signals = complexity_signals(
            own,
            text,
            task=task,
            tokens=count.tokens,
            has_images=images,
            has_tools=bool(tools),
            has_code=has_code,
            long_prompt=self.thresholds.long_prompt_signal_tokens,
        )
        max_tokens = requested_max_tokens(request)
        metadata = request.get("metadata") if isinstance(request.get("metadata"), Mapping) else {}
        return Features(
            tokens=count.tokens,
            tokens_exact=count.exact,
            max_tokens=max_tokens,
            complexity=score(signals),
            complexity_signals=signals,
            task=task,
            has_images=images,
            has_tools=bool(tools),
            latency_ms=latency_need(request, sig.Text.of(urgency_zone(own))),
            latency_stated=stated_latency(request) is not None,
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
        return self.counter.request(
            messages, request.get("tools") or request.get("functions"), exact=True
        ).tokens

    def with_exact_tokens(self, features: Features, tokens: int) -> Features:
        """``features`` with an exact token count, and the long-context signal redone to match."""
        others = tuple(s for s in features.complexity_signals if s != "long_context")
        long_prompt = ("long_context",) if tokens >= self.thresholds.long_prompt_signal_tokens else ()
        signals = tuple(s for s in SIGNAL_WEIGHTS if s in others or s in long_prompt)
        return replace(
            features, tokens=tokens, tokens_exact=True, complexity_signals=signals, complexity=score(signals)
        )
