"""The seed-shaped day with document reuse: each long document is asked about in sessions.

The seed's day (``workload.py``, 100K requests) keeps its short requests (simple queries, code,
fast responses, complex analyses: 75%, at their arrival times). Its long documents (the 625 distinct
50-400K-token prompts of the moderate-context and long document classes, 25% of the requests) are
now asked about the way people use a document: in sessions. Assumptions, ours (the seed says
nothing of reuse):

- a session is one person working on one document: ``1 + Geometric`` questions (mean
  ``MEAN_QUESTIONS``), each a different question, the gaps between them lognormal (median
  ``GAP_MEDIAN_S``, sigma ``GAP_SIGMA``), and no question later than ``SESSION_MAX_S`` after the first;
- a session's document is drawn by popularity, Zipf with exponent ``ZIPF_S`` over the class's
  documents (a few hot ones, the quarter's report or the standard contract, and a long tail);
- sessions start uniformly over the day, as many as keep each class at its seed share;
- each document is sent by one kind of client, in one of ``SHAPES`` (shares assumed): its text in
  the system prompt (the shape the providers' caching guides recommend), a document turn followed by
  the question turn, or one user message of two text parts, document then question.

Document text is generated from ``workload.PROSE`` blocks with a known token count, and rendered
only while its requests are sent.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from workload import KINDS, PROSE, Shape, _draw_answer, _tokens, generate

DAY_S = 86_400
DAY_REQUESTS = 100_000
DOCUMENT_KINDS = ("moderate-context document", "long document")
ZIPF_S = 1.0
MEAN_QUESTIONS = 4.0
GAP_MEDIAN_S, GAP_SIGMA = 240.0, 1.0
SESSION_MAX_S = 3_600.0
SHAPES = (("system", 0.5), ("turns", 0.25), ("parts", 0.25))
SHAPE_LABEL = {
    "system": "document in the system prompt",
    "turns": "document turn, then the question",
    "parts": "one user message: document part, question part",
}
INSTRUCTIONS = (
    "You answer questions about the document the user shared. Quote the passages you rely on, say so "
    "when the document does not answer, and keep to the facts it states."
)
QUESTIONS = (
    "What does section {n} say about {topic}?",
    "Summarize the parts that concern {topic}.",
    "List every obligation or action item in section {n}, with its owner.",
    "Which risks does the document raise about {topic}?",
    "Draft a short reply to the client about {topic}, citing the document.",
    "Does anything in section {n} contradict what the document says elsewhere about {topic}?",
    "Explain section {n} in plain words for a new team member.",
    "What changed about {topic} compared with the previous period, according to the document?",
)
TOPICS = ("pricing", "termination", "availability", "hiring", "hosting costs", "the release plan", "returns")


@dataclass(frozen=True)
class Document:
    index: int
    kind: str
    shape: Shape  # the seed's document body it replaces (its length, max_tokens, seed)
    client: str  # one of SHAPES


@dataclass(frozen=True)
class Ask:
    """One request of the replay: when (seconds into the day), what, and its answer length."""

    at: float
    kind: str
    client: str  # a SHAPES name, or "short" for the seed's other requests
    document: int | None  # index into ReuseDay.documents
    seed: int  # the question, or the seed workload's shape for a short request
    answer_tokens: int


@dataclass
class ReuseDay:
    documents: list[Document]
    asks: list[Ask]  # in time order
    seed_day: object  # the seed workload (renders the short requests)
    register: Callable[[str, int], None]  # tells the backends a text's token count

    def __post_init__(self) -> None:
        self._texts: OrderedDict[int, tuple[str, int]] = OrderedDict()

    def text(self, index: int) -> tuple[str, int]:
        """A document's text and its tokens (the last few kept)."""
        if index not in self._texts:
            self._texts[index] = _render(self.documents[index].shape)
            while len(self._texts) > 32:
                self._texts.popitem(last=False)
        return self._texts[index]

    def body(self, ask: Ask, strategy: str | None) -> dict:
        if ask.document is None:
            return self.seed_day.body(ask.seed, strategy)  # type: ignore[attr-defined]
        document = self.documents[ask.document]
        text, tokens = self.text(ask.document)
        rng = random.Random(ask.seed)
        question = rng.choice(QUESTIONS).format(n=rng.randint(1, 60), topic=rng.choice(TOPICS))
        system = {"role": "system", "content": INSTRUCTIONS}
        if ask.client == "system":
            content = INSTRUCTIONS + "\n\nThe document:\n\n" + text
            self.register(content, _tokens(INSTRUCTIONS + "\n\nThe document:\n\n") + tokens)
            messages = [{"role": "system", "content": content}, {"role": "user", "content": question}]
        else:
            self.register(text, tokens)
            if ask.client == "turns":
                messages = [system, {"role": "user", "content": text}, {"role": "user", "content": question}]
            else:
                parts = [{"type": "text", "text": text}, {"type": "text", "text": question}]
                messages = [system, {"role": "user", "content": parts}]
        body: dict = {"model": "auto", "messages": messages}
        if document.shape.max_tokens:
            body["max_tokens"] = document.shape.max_tokens
        if strategy:
            body["routing_strategy"] = strategy
        return body


def _render(shape: Shape) -> tuple[str, int]:
    """About ``shape.prompt_tokens`` of prose, and its exact token count (blocks and separators
    are tokenized apart: a block ends with a full stop, so no token spans a separator)."""
    rng = random.Random(shape.seed)
    sep = _tokens("\n\n")
    blocks: list[str] = []
    total = -sep
    while total < shape.prompt_tokens:
        block = rng.choice(PROSE)
        blocks.append(block)
        total += _tokens(block) + sep
    return "\n\n".join(blocks), total


def sessions(documents: list[Document], kind: str, requests: int, rng: random.Random) -> list[Ask]:
    """Sessions on ``documents`` of ``kind`` until they hold ``requests`` questions a day; sessions
    start from an hour before the day (so that its first hour is like any other)."""
    mine = [d for d in documents if d.kind == kind]
    weights = [1 / (rank + 1) ** ZIPF_S for rank in range(len(mine))]
    spec = next(k for k in KINDS if k.name == kind)
    target = requests * (DAY_S + SESSION_MAX_S) / DAY_S
    asks: list[Ask] = []
    while len(asks) < target:
        document = rng.choices(mine, weights)[0]
        at = rng.uniform(-SESSION_MAX_S, DAY_S)
        end = at + SESSION_MAX_S
        extra = int(math.log(1 - rng.random()) / math.log(1 - 1 / MEAN_QUESTIONS))  # geometric, mean - 1
        for q in range(1 + extra):
            if q:
                at += rng.lognormvariate(math.log(GAP_MEDIAN_S), GAP_SIGMA)
            if at > end:
                break
            answer = _draw_answer(spec, document.shape, rng)
            asks.append(Ask(at, kind, document.client, document.index, rng.getrandbits(32), answer))
    return [a for a in asks if a.at >= 0]


def generate_day(seed: int, until_s: float, register: Callable[[str, int], None]) -> ReuseDay:
    """The day's requests from midnight to ``until_s`` (seconds)."""
    rng = random.Random(seed)
    seed_day = generate(DAY_REQUESTS, seed)
    documents: list[Document] = []
    names, shares = zip(*SHAPES)
    for shape in seed_day.shapes:
        if shape.kind in DOCUMENT_KINDS:
            documents.append(Document(len(documents), shape.kind, shape, rng.choices(names, shares)[0]))
    rng.shuffle(documents)  # popularity ranks: random with respect to length
    documents = [Document(i, d.kind, d.shape, d.client) for i, d in enumerate(documents)]
    asks: list[Ask] = []
    for kind in DOCUMENT_KINDS:
        share = next(k.share for k in KINDS if k.name == kind)
        asks += [a for a in sessions(documents, kind, round(DAY_REQUESTS * share), rng) if a.at < until_s]
    step = DAY_S / len(seed_day.requests)
    for i, request in enumerate(seed_day.requests):
        at = i * step
        if at >= until_s:
            break
        kind = seed_day.shapes[request.shape].kind
        if kind not in DOCUMENT_KINDS:
            asks.append(Ask(at, kind, "short", None, request.shape, request.answer_tokens))
    asks.sort(key=lambda a: a.at)
    return ReuseDay(documents, asks, seed_day, register)
