"""Token-level pieces of the CPU engine's decoding: JSON-constrained output, OpenAI penalties and
log-probabilities, as ``generate`` logits processors (torch is imported by the caller first).

- ``TokenTexts``: what each token adds to an output (text and bytes), and a trie of the
  vocabulary for the constrained decoder.
- ``JsonConstraint``: masks every token that would not keep the output a prefix of a JSON value
  the grammar (``app.engine.json_grammar``) accepts, or that would leave too few tokens to close
  it; once the value is complete it stops. Masks are cached per grammar state.
- ``Penalties``: OpenAI's ``presence_penalty``, ``frequency_penalty`` (over the completion so far)
  and ``logit_bias``.
- ``LogprobCapture``: the model's own log-probabilities at each step, before penalties,
  constraints and sampling settings (what vLLM reports by default).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from app.engine.json_grammar import Grammar

MASK_CACHE = 4096  # grammar states whose token masks are kept, per grammar


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet back to bytes (byte-level BPE tokenizers store tokens this way)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


BYTE_DECODER = _byte_decoder()


class TokenTexts:
    """One tokenizer's tokens as the text and bytes each adds to an output."""

    def __init__(self, tokenizer: Any) -> None:
        self.tok = tokenizer
        self.special = set(tokenizer.all_special_ids)
        for i, added in getattr(tokenizer, "added_tokens_decoder", {}).items():
            if getattr(added, "special", False):
                self.special.add(int(i))
        self._anchor = tokenizer.encode("a", add_special_tokens=False)[-1:]
        self._base = tokenizer.decode(self._anchor)
        self._texts: list[str | None] | None = None
        self._trie: list | None = None
        self._lock = threading.Lock()

    @functools.lru_cache(maxsize=65536)  # noqa: B019 - one instance per engine, kept for its life
    def text(self, token: int) -> str:
        """The text ``token`` adds after other text (a SentencePiece word start keeps its space)."""
        if token in self.special:
            return ""
        joined = self.tok.decode(self._anchor + [token])
        return joined[len(self._base) :] if joined.startswith(self._base) else self.tok.decode([token])

    @functools.lru_cache(maxsize=65536)  # noqa: B019
    def bytes(self, token: int) -> bytes:
        """The raw bytes of ``token`` (a partial UTF-8 character too)."""
        piece = self.tok.convert_ids_to_tokens(token)
        if isinstance(piece, str):
            if piece.startswith("<0x") and piece.endswith(">") and len(piece) == 6:  # SentencePiece byte
                return bytes([int(piece[3:5], 16)])
            if piece and all(c in BYTE_DECODER for c in piece) and token not in self.special:
                return bytes(BYTE_DECODER[c] for c in piece)
        return self.text(token).encode("utf-8")

    def token_string(self, token: int) -> str:
        return self.bytes(token).decode("utf-8", errors="replace")

    def trie(self) -> list:
        """``[children by character, token ids ending here]``: every token with whole characters."""
        with self._lock:
            if self._trie is None:
                root: list = [{}, []]
                for token in range(len(self.tok)):
                    text = self.text(token)
                    if not text or "\ufffd" in text:
                        continue
                    node = root
                    for ch in text:
                        node = node[0].setdefault(ch, [{}, []])
                    node[1].append(token)
                self._trie = root
            return self._trie


def closing_tokens(grammar: Grammar, state: frozenset, texts: TokenTexts) -> list[int]:
    """Tokens that write the shortest completion from ``state``: the tokenizer's own split when
    its tokens add exactly that text, else one token per character."""
    text = grammar.shortest(state)
    ids = texts.tok(text, add_special_tokens=False)["input_ids"] if text else []
    if "".join(texts.text(i) for i in ids) == text:
        return ids
    singles = texts.trie()[0]
    if all(ch in singles and singles[ch][1] for ch in text):
        return [singles[ch][1][0] for ch in text]
    return ids  # no one-character token for some character: the tokenizer's split is the best left


class JsonConstraint:
    """A logits processor keeping the completion a valid prefix of the grammar's JSON, with room
    to close it within ``max_new_tokens``; ``closed`` once the value is complete.

    A token is allowed when the characters still needed after it fit in the tokens left (one
    character per token at worst, so closing stays possible). When no token fits that bound
    (only with a budget below the schema's length in characters), the decoder writes the
    shortest completion in the tokenizer's own tokens, which the engine checked fits.
    """

    def __init__(
        self, grammar: Grammar, texts: TokenTexts, prompt_len: int, max_new_tokens: int, eos_ids: list[int]
    ) -> None:
        self.grammar, self.texts = grammar, texts
        self.prompt_len, self.max_new_tokens, self.eos = prompt_len, max_new_tokens, list(eos_ids)
        self.state = grammar.initial()
        self.consumed = 0
        self.plan: list[int] | None = None
        self.plan_start = 0
        self.masks: dict = grammar.__dict__.setdefault("_token_masks", {})

    @property
    def closed(self) -> bool:
        return self.grammar.closed(self.state)

    @property
    def complete(self) -> bool:
        return self.grammar.complete(self.state)

    def sync(self, generated: list[int]) -> None:
        """Advance over the tokens generated since the last call."""
        for token in generated[self.consumed :]:
            if token not in self.eos:
                self.state = self.grammar.advance(self.state, self.texts.text(token))
        self.consumed = len(generated)

    def _scan(self) -> tuple[Any, Any]:
        """Every token that can come next from this state, and the fewest characters that close
        the document after it."""
        import torch

        cached = self.masks.get(self.state)
        if cached is not None:
            return cached
        ids: list[int] = []
        costs: list[int] = []
        grammar = self.grammar
        todo = [(self.texts.trie(), self.state)]
        while todo:
            node, state = todo.pop()
            for ch, child in node[0].items():
                nxt = grammar.advance(state, ch)
                if not nxt:
                    continue
                if child[1]:
                    cost = grammar.min_close(nxt)
                    ids.extend(child[1])
                    costs.extend([cost] * len(child[1]))
                if child[0]:
                    todo.append((child, nxt))
        result = (torch.tensor(ids, dtype=torch.long), torch.tensor(costs, dtype=torch.long))
        if len(self.masks) >= MASK_CACHE:
            self.masks.clear()
        self.masks[self.state] = result
        return result

    def allowed(self) -> Any:
        """Token ids allowed next, given the tokens left."""
        import torch

        left = self.max_new_tokens - self.consumed - 1  # tokens after this one
        ids, costs = self._scan()
        allowed = ids[costs <= left] if self.plan is None else ids[:0]
        if not len(allowed) and not self.complete:
            if self.plan is None:
                self.plan, self.plan_start = (
                    closing_tokens(self.grammar, self.state, self.texts),
                    self.consumed,
                )
            step = self.consumed - self.plan_start
            allowed = torch.tensor(self.plan[step : step + 1], dtype=torch.long)
        if self.complete or not len(allowed):
            allowed = torch.cat([allowed, torch.tensor(self.eos, dtype=torch.long)])
        return allowed

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        self.sync(input_ids[0, self.prompt_len :].tolist())
        mask = torch.full_like(scores, float("-inf"))
        mask[:, self.allowed()] = 0
        return scores + mask


class Penalties:
    """OpenAI's presence and frequency penalties over the completion so far, and ``logit_bias``."""

    def __init__(self, prompt_len: int, presence: float, frequency: float, bias: dict[int, float]) -> None:
        self.prompt_len, self.presence, self.frequency = prompt_len, presence, frequency
        self.bias = bias

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        scores = scores.clone()
        if self.presence or self.frequency:
            generated = input_ids[0, self.prompt_len :]
            counts = torch.bincount(generated, minlength=scores.shape[-1])[: scores.shape[-1]].to(
                scores.dtype
            )
            scores[0] -= self.frequency * counts + self.presence * (counts > 0).to(scores.dtype)
        for token, value in self.bias.items():
            scores[:, token] += value
        return scores


class LogprobCapture:
    """Keeps the log-softmax of the raw logits of the latest step (first in the processor list)."""

    def __init__(self) -> None:
        self.last: Any = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        self.last = torch.log_softmax(scores[0].float(), dim=-1)
        return scores

    def entry(self, token: int, top: int, texts: TokenTexts) -> dict[str, Any]:
        """OpenAI's ``logprobs.content`` item for ``token`` chosen at the latest step."""
        import torch

        logprobs = self.last

        def item(tid: int, value: float) -> dict[str, Any]:
            raw = texts.bytes(tid)
            return {
                "token": raw.decode("utf-8", errors="replace"),
                "logprob": max(value, -9999.0),
                "bytes": list(raw),
            }

        out = item(token, float(logprobs[token]))
        out["top_logprobs"] = []
        if top:
            values, ids = torch.topk(logprobs, min(top, logprobs.shape[-1]))
            out["top_logprobs"] = [item(int(i), float(v)) for v, i in zip(values, ids, strict=True)]
        return out
