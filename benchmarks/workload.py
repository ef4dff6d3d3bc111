"""A day of chat requests shaped like the seed's workload, generated from a seeded RNG.

The seed (its "Expected Cost Distribution" and "Hybrid Strategy Results") describes a typical day
as 100K requests: 70% simple queries, code generation and fast responses; 20% moderate-context
documents (50-100K tokens); 10% long documents (over 100K tokens) and complex reasoning. It gives
only those group totals; the split inside each group and the length distributions are ours.

A day is a list of distinct request bodies ("shapes": about one per ten requests, one per forty
for documents, as a day's traffic repeats itself) and the requests, in arrival order, each naming
its shape and the length of its answer. A bare question whose drawn prompt is longer than the
question carries the app's system prompt with notes, as a retrieval app sends. Bodies are rendered
on demand from reused text blocks, so a 400K-token document costs memory only while it is sent.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import cache

from app.routing.tokens import encoding

# A document is asked about many times a day. (Also a cost: near a routing threshold the router counts
# a document's tokens exactly, ~30 ms per 100K tokens, so distinct documents bound the replay's time.)
DOCUMENT_REPEATS = 40

SYSTEM_MIN_TOKENS = 40  # a bare question whose drawn prompt is longer gets a system prompt of notes


@dataclass(frozen=True)
class Kind:
    """One class of request: its share of the day, prompt and answer lengths, and templates."""

    name: str
    share: float
    prompt: tuple[str, float, float]  # ("lognormal", median, sigma) or ("loguniform"/"uniform", low, high)
    prompt_clip: tuple[int, int]
    answer: tuple[float, float]  # lognormal (median, sigma) of answer tokens
    answer_cap: int  # longest answer when the request sets no max_tokens
    max_tokens: tuple[int | None, ...]  # drawn uniformly per shape
    templates: tuple[str, ...]  # {context} / {code} / {doc} are filled to reach the prompt length
    latency_ms: tuple[int | None, ...] = (None,)  # an explicit max_latency_ms, drawn per shape
    repeats: int = 10  # requests per distinct body, on average: a day's traffic repeats itself


# Shares: the seed's groups (guide, "Cost Optimization" > "Expected Cost Distribution"): 70% simple
# queries / code generation / fast responses, 20% moderate context (50-100K tokens), 10% long context
# (>100K) and complex reasoning. Templates follow the seed's "Usage Examples" 1-6.
KINDS: tuple[Kind, ...] = (
    Kind(
        "simple query",
        0.45,
        ("lognormal", 150, 1.0),
        (8, 6_000),
        (180, 0.7),
        1_200,
        (None, None, None, 512),
        (
            "What is Kubernetes?",
            "What is {topic}?",
            "Define {topic} in a few sentences.",
            "List the main benefits of {topic}.",
            "How does {topic} work?",
            "Who uses {topic}, and what for?",
            "Translate this text to Spanish:\n{context}",
            "Summarize this email for me:\n{context}",
            "Rewrite this paragraph in a friendlier tone:\n{context}",
            "Using the notes below, answer: what changed in the last release?\n{context}",
        ),
    ),
    Kind(
        "code generation",
        0.15,
        ("lognormal", 400, 1.1),
        (10, 12_000),
        (450, 0.6),
        2_500,
        (None, 1_000, 2_000),
        (
            "Write a Python REST API with FastAPI",
            "Write a {lang} function that {task}.",
            "Implement {task_noun} in {lang}.",
            "Create a command-line tool in {lang} that {task}.",
            "Generate unit tests for this function:\n```python\n{code}\n```",
            "Write a {lang} class that wraps the code below and adds retries:\n```python\n{code}\n```",
        ),
    ),
    Kind(
        "fast response",
        0.10,
        ("lognormal", 250, 0.7),
        (30, 3_000),
        (60, 0.5),
        100,
        (100,),
        (
            "Quick summary of this ticket:\n{context}",
            "Briefly: what is the customer asking for?\n{context}",
            "TL;DR of this thread, please.\n{context}",
            "Give me a quick status line for this incident:\n{context}",
        ),
        (None, 300),
    ),
    Kind(
        "moderate-context document",
        0.20,
        ("uniform", 50_000, 100_000),
        (50_000, 100_000),
        (450, 0.6),
        2_000,
        (2_000, None),
        (
            "{doc}\n\nSummarize the key points.",
            "{doc}\n\nWhat are the main risks raised in this report?",
            "{doc}\n\nExtract every action item with its owner and due date.",
            "Here is the contract:\n{doc}\n\nWhich clauses cover termination and notice periods?",
        ),
        repeats=DOCUMENT_REPEATS,
    ),
    Kind(
        "long document",
        0.05,
        ("loguniform", 100_000, 400_000),
        (100_000, 400_000),
        (800, 0.6),
        4_000,
        (2_000, 4_000),
        (
            "{doc}\n\nSummarize the key points.",
            "{doc}\n\nWrite a two-page briefing on this material for the leadership team.",
            "Below is a year of meeting notes.\n{doc}\n\nWhat decisions were made about pricing?",
        ),
        repeats=DOCUMENT_REPEATS,
    ),
    Kind(
        "complex analysis",
        0.05,
        ("lognormal", 2_500, 0.8),
        (300, 30_000),
        (1_100, 0.5),
        4_000,
        (None, 4_000),
        (
            (
                "Analyze the following code for security vulnerabilities, suggest fixes, and explain the "
                "potential impact of each vulnerability in detail.\n```python\n{code}\n```"
            ),
            (
                "Think through this step by step: we must choose between {topic} and {topic2} for our "
                "platform. Compare the trade-offs, estimate the cost of each and recommend one.\n{context}"
            ),
            (
                "Provide a comprehensive analysis of the incident below: identify the root cause, assess the "
                "impact and propose a remediation plan.\n{context}"
            ),
            "Analyze in depth the quarterly figures below, evaluate our liquidity and explain the main "
            "risks.\n{context}",
        ),
    ),
)

TOPICS = (
    "a service mesh",
    "Kafka",
    "PostgreSQL replication",
    "a vector database",
    "OAuth 2.0",
    "Terraform state",
    "a CDN",
    "blue-green deployment",
    "gRPC",
    "Redis Cluster",
    "a data lakehouse",
    "Prometheus",
    "Istio",
    "object storage",
    "a feature store",
    "WebAssembly",
    "eventual consistency",
    "a load balancer",
)
LANGS = ("Python", "Go", "TypeScript", "Rust", "Java")
TASKS = (
    "parses a CSV file and returns the rows as dictionaries",
    "retries an HTTP call with exponential backoff",
    "deduplicates a list while keeping order",
    "validates an email address",
    "merges two sorted lists",
    "reads a YAML config and checks required keys",
    "paginates through a REST API",
)
TASK_NOUNS = (
    "an LRU cache",
    "a rate limiter",
    "a binary search tree",
    "a job queue with workers",
    "a URL shortener",
)

# Reused text blocks: documents, tickets and notes are random sequences of these.
PROSE = (
    (
        "The operations review covered the last quarter of service availability. Two regional outages were "
        "traced to a misconfigured load balancer and to an expired certificate; both were resolved within "
        "the hour, and the on-call rotation has since added a weekly certificate check."
    ),
    (
        "Revenue for the period grew eight percent over the previous quarter, driven by the enterprise tier. "
        "Gross margin fell slightly because of higher hosting costs, which the finance team expects to "
        "recover once the reserved capacity agreement starts in the new fiscal year."
    ),
    (
        "The customer reports that exports of large reports stop at about two hundred megabytes. They have "
        "tried two browsers and a different network. The account is on the premium plan and the renewal is "
        "due next month, so the account manager asked for an update by Friday."
    ),
    (
        "During the planning meeting the team agreed to move the mobile release by one sprint. Design will "
        "deliver the revised onboarding screens on Tuesday, and the backend team will freeze the public API "
        "on Thursday so that the partner integrations can be tested in staging."
    ),
    (
        "Either party may end this agreement with ninety days of written notice. Fees paid in advance for "
        "the current term are not refundable, except where the supplier fails to meet the service levels "
        "described in the second schedule for three consecutive months."
    ),
    (
        "The study followed twelve hundred participants over two years. Participants who used the scheduling "
        "assistant reported fewer missed appointments, although the effect was smaller among those who "
        "already used a paper calendar. The authors note that the sample was drawn from urban clinics only."
    ),
    (
        "Hi team, a reminder that the office will be closed on Monday for the public holiday. Expense "
        "reports for last month are due by the fifth. If you have not yet booked your travel for the "
        "offsite, please do so this week, as the hotel block will be released afterwards."
    ),
    (
        "The warehouse added a second shift in March, which cut the average time from order to dispatch from "
        "two days to thirty hours. Returns remained stable at four percent. The new scanners arrive in May "
        "and should remove most of the manual entry at the packing stations."
    ),
    (
        "Release notes: the dashboard now loads about forty percent faster, search results can be filtered "
        "by date, and the export button supports spreadsheets. A bug that logged some users out after a "
        "password change has been fixed. The legacy reporting page will be removed in the next version."
    ),
    (
        "The board discussed the proposal to open a second office in Lisbon. Hiring there would lower salary "
        "costs, but the time zone overlap with the west coast team is short. A final decision was postponed "
        "until the recruiting partner shares its estimate of the local talent pool."
    ),
)
CODE = (
    "def load_users(path):",
    "    with open(path) as handle:",
    "        rows = [line.strip().split(',') for line in handle]",
    "    return [dict(zip(rows[0], row)) for row in rows[1:]]",
    "def find_user(db, name):",
    '    query = "SELECT * FROM users WHERE name = \'" + name + "\'"',
    "    return db.execute(query).fetchall()",
    "def render(template, **values):",
    "    for key, value in values.items():",
    "        template = template.replace('{' + key + '}', str(value))",
    "    return template",
    "class Session:",
    "    def __init__(self, token, ttl=3600):",
    "        self.token, self.ttl = token, ttl",
    "    def expired(self, now):",
    "        return now - self.created > self.ttl",
)


@cache
def _tokens(block: str) -> int:
    return len(encoding().encode_ordinary(block))


def text_of(blocks: tuple[str, ...], sep: str, tokens: int, rng: random.Random) -> str:
    """Random blocks joined until about ``tokens`` tokens (never empty)."""
    sizes = [_tokens(b) + _tokens(sep) for b in blocks]
    out: list[str] = []
    total = 0
    while total < tokens or not out:
        for i in rng.choices(range(len(blocks)), k=1 + (tokens - total) // max(sizes)):
            out.append(blocks[i])
            total += sizes[i]
    return sep.join(out)


@dataclass(frozen=True)
class Shape:
    """One distinct request body (rendered by ``Workload.body``)."""

    kind: str
    prompt_tokens: int  # the length aimed at; the router counts the real figure
    template: str
    seed: int
    max_tokens: int | None
    latency_ms: int | None


@dataclass(frozen=True)
class Request:
    shape: int  # index into Workload.shapes
    answer_tokens: int


@dataclass(frozen=True)
class Workload:
    shapes: list[Shape]
    requests: list[Request]  # in arrival order, spread evenly over the day

    def body(self, index: int, strategy: str | None = None) -> dict:
        """The chat request of shape ``index``, routed by ``strategy`` (None: the default, auto)."""
        shape = self.shapes[index]
        rng = random.Random(shape.seed)
        words = _words(rng)
        fixed = shape.template.format(context="", code="", doc="", **words)
        room = max(0, shape.prompt_tokens - _tokens(fixed))
        fill = {"context": "", "code": "", "doc": ""}
        slots = [slot for slot in fill if "{" + slot + "}" in shape.template]
        for slot in slots:
            fill[slot] = text_of(
                CODE if slot == "code" else PROSE, "\n" if slot == "code" else "\n\n", room, rng
            )
        messages = [{"role": "user", "content": shape.template.format(**fill, **words)}]
        if not slots and room >= SYSTEM_MIN_TOKENS:  # a bare question: the app's system prompt and notes
            notes = text_of(PROSE, "\n\n", room, rng)
            messages.insert(0, {"role": "system", "content": "Answer using the notes below.\n\n" + notes})
        body: dict = {"model": "auto", "messages": messages}
        if shape.max_tokens:
            body["max_tokens"] = shape.max_tokens
        if shape.latency_ms:
            body["max_latency_ms"] = shape.latency_ms
        if strategy:
            body["routing_strategy"] = strategy
        return body


def _words(rng: random.Random) -> dict[str, str]:
    first, second = rng.sample(TOPICS, 2)
    return {
        "topic": first,
        "topic2": second,
        "lang": rng.choice(LANGS),
        "task": rng.choice(TASKS),
        "task_noun": rng.choice(TASK_NOUNS),
    }


def _draw_prompt(kind: Kind, rng: random.Random) -> int:
    law, a, b = kind.prompt
    if law == "lognormal":
        value = rng.lognormvariate(math.log(a), b)
    elif law == "loguniform":
        value = math.exp(rng.uniform(math.log(a), math.log(b)))
    else:
        value = rng.uniform(a, b)
    low, high = kind.prompt_clip
    return int(min(high, max(low, value)))


def _draw_answer(kind: Kind, shape: Shape, rng: random.Random) -> int:
    median, sigma = kind.answer
    cap = shape.max_tokens or kind.answer_cap
    return int(min(cap, max(5, rng.lognormvariate(math.log(median), sigma))))


def counts(requests: int) -> list[int]:
    """Requests per kind, summing to ``requests``."""
    out = [int(requests * k.share) for k in KINDS]
    out[0] += requests - sum(out)
    return out


def generate(requests: int, seed: int) -> Workload:
    rng = random.Random(seed)
    shapes: list[Shape] = []
    day: list[Request] = []
    for kind, n in zip(KINDS, counts(requests)):
        first = len(shapes)
        for _ in range(max(1, math.ceil(n / kind.repeats))):
            shapes.append(
                Shape(
                    kind.name,
                    _draw_prompt(kind, rng),
                    rng.choice(kind.templates),
                    rng.getrandbits(32),
                    rng.choice(kind.max_tokens),
                    rng.choice(kind.latency_ms),
                )
            )
        for _ in range(n):
            index = rng.randrange(first, len(shapes))
            day.append(Request(index, _draw_answer(kind, shapes[index], rng)))
    rng.shuffle(day)
    return Workload(shapes, day)
