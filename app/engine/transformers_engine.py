"""OpenAI chat-completions on CPU with any Hugging Face causal LM.

``TransformersChatEngine`` turns an OpenAI request dict into ``model.generate``
running in a background thread, and returns ``chat.completion`` dicts or yields
``chat.completion.chunk`` dicts. torch/transformers are imported in ``start()``.
Prompt and output text are never logged.

What each request field does here is ``app.engine.request_fields``: every field is honoured or
refused with a 400 naming it. ``logprobs`` come from the model's own distribution;
``response_format`` and forced tool calls use JSON-constrained decoding
(``app.engine.constrained``), which always ends in a complete JSON value within ``max_tokens``:
as the budget runs out it steers to the shortest valid completion.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app import openai_wire as wire
from app.engine.constrained import JsonConstraint, LogprobCapture, Penalties, TokenTexts, closing_tokens
from app.engine.demo_model import build_demo_model, default_demo_model_dir
from app.engine.json_grammar import Grammar, compile_schema
from app.engine.request_fields import (
    TOOL_TOKENS,
    Fields,
    ToolCallSniffer,
    forced_calls,
    parse_tool_calls,
    read_fields,
    template_messages,
    with_tools_prompt,
)
from app.errors import InvalidRequestError, UnsupportedFeatureError
from app.observability.logs import log_event

log = logging.getLogger(__name__)

GRAMMAR_CACHE = 64  # compiled JSON grammars (with their token masks) kept per engine
FALLBACK_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


@dataclass
class _Job:
    """A validated request: prompt token ids and generation settings."""

    prompt_ids: list[int]
    max_new_tokens: int
    sampling: dict[str, Any]
    seed: int | None
    stops: list[str]
    fields: Fields = dataclasses.field(default_factory=Fields)


class _Tracker:
    """Called by ``generate`` after every token (as a stopping criterion).

    Decodes incrementally, truncates at the first stop string, emits text that can no
    longer turn into a stop string (with the log-probabilities of the tokens behind it, when
    asked), and asks ``generate`` to stop on a stop string, when a constrained JSON value is
    complete, or when ``cancel`` is set.
    """

    def __init__(
        self,
        tokenizer: Any,
        job: _Job,
        emit: Callable[[str, list], None],
        cancel: threading.Event,
        decode: Callable[[list[int]], str] | None = None,
        constraint: JsonConstraint | None = None,
        capture: LogprobCapture | None = None,
        texts: TokenTexts | None = None,
        skip: frozenset[int] = frozenset(),
    ) -> None:
        self.tok, self.job, self.emit, self.cancel = tokenizer, job, emit, cancel
        self.decode = decode or (lambda ids: tokenizer.decode(ids, skip_special_tokens=True))
        self.constraint, self.capture, self.texts, self.skip = constraint, capture, texts, skip
        self.ids: list[int] = []
        self.text, self.sent, self.prefix, self.read = "", 0, 0, 0
        self.stop_hit = False
        self.logprobs: list[list] = []  # [text offset or None, entry] per generated token, in order

    def __call__(self, input_ids: Any, scores: Any = None, **kwargs: Any) -> Any:
        import torch

        new = input_ids[0, len(self.job.prompt_ids) + len(self.ids) :].tolist()
        if self.capture is not None and self.capture.last is not None:
            for token in new[-1:]:
                if token not in self.skip:
                    assert self.texts is not None  # a capture always comes with the token texts
                    entry = self.capture.entry(token, self.job.fields.top_logprobs, self.texts)
                    self.logprobs.append([None, entry])
        self.ids.extend(new)
        if self.constraint is not None:
            self.constraint.sync(self.ids)
        if not self.stop_hit:
            self._decode(final=False)
        done = (
            self.stop_hit or self.cancel.is_set() or (self.constraint is not None and self.constraint.closed)
        )
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    def _decode(self, final: bool) -> None:
        prev = self.decode(self.ids[self.prefix : self.read])
        new = self.decode(self.ids[self.prefix :])
        if len(new) > len(prev) and (final or not new.endswith("\ufffd")):
            for item in self.logprobs:
                if item[0] is None:
                    item[0] = len(self.text)
            self.text += new[len(prev) :]
            self.prefix, self.read = self.read, len(self.ids)
        self._release(final)

    def _release(self, final: bool) -> None:
        hits = [i for i in (self.text.find(s, self.sent) for s in self.job.stops) if i >= 0]
        end = len(self.text) if final else len(self.text) - self._holdback()
        if hits:
            self.stop_hit, end = True, min(hits)
            self.text = self.text[:end]
        if end > self.sent:
            self.emit(self.text[self.sent : end], self._entries_before(end))
            self.sent = end

    def _entries_before(self, end: int) -> list:
        """Log-probability entries of the tokens whose text starts before ``end``, once each."""
        out: list[Any] = []
        keep: list[Any] = []
        for item in self.logprobs:
            (out if item[0] is not None and item[0] < end else keep).append(item)
        self.logprobs = keep
        return [entry for _, entry in out]

    def _holdback(self) -> int:
        """Length of the longest text suffix that is a proper prefix of a stop string."""
        best = 0
        for stop in self.job.stops:
            for k in range(min(len(stop) - 1, len(self.text)), best, -1):
                if self.text.endswith(stop[:k]):
                    best = k
                    break
        return best

    def finish(self, eos_ids: set[int]) -> str:
        """Flush held-back text; return the OpenAI finish_reason."""
        if not self.stop_hit:
            self._decode(final=True)
        if self.stop_hit or (self.ids and self.ids[-1] in eos_ids):
            return "stop"
        if self.constraint is not None and self.constraint.closed:
            return "stop"
        return "length"


class TransformersChatEngine:
    """Serve one Hugging Face causal LM on CPU; ``start()`` must run before requests."""

    def __init__(
        self,
        model: str,
        *,
        served_name: str | None = None,
        demo_fallback: bool = True,
        demo_dir: Path | None = None,
        allow_download: bool = False,
        max_context: int | None = None,
        torch_threads: int | None = None,
        default_max_tokens: int = 256,
    ):
        self.model_id = model
        self.served_name = served_name or model
        self.demo_fallback, self.demo_dir, self.allow_download = demo_fallback, demo_dir, allow_download
        self.max_context, self.torch_threads = max_context, torch_threads
        self.default_max_tokens = default_max_tokens
        # transformers objects (untyped); set by start()
        self.tokenizer: Any = None
        self.model: Any = None
        self._loaded: str | None = None
        self._demo, self._ready = False, False
        self._reason: str | None = None
        self._gen_lock, self._count_lock, self._active = threading.Lock(), threading.Lock(), 0
        self._grammars: collections.OrderedDict[tuple[str, bool], Grammar] = collections.OrderedDict()
        self._grammar_lock = threading.Lock()
        self._texts: TokenTexts | None = None

    def _token_texts(self) -> TokenTexts:
        assert self._texts is not None, "start() loads the model and its token texts first"
        return self._texts

    def start(self) -> None:
        """Load tokenizer and model (slow); fall back to the demo model if allowed."""
        if self._ready:
            return
        import torch

        if self.torch_threads:
            torch.set_num_threads(self.torch_threads)
        try:
            self._load(self.model_id, self.allow_download)
        except Exception as exc:
            reason = _summary(exc)
            if not self.demo_fallback:
                raise RuntimeError(f"could not load model {self.model_id!r}: {reason}") from exc
            path = build_demo_model(self.demo_dir or default_demo_model_dir())
            message = (
                f"!!! Could not load model {self.model_id!r} ({reason}). Serving the built-in DEMO model "
                f"from {path} instead: it has random weights and produces gibberish. To serve a real model, "
                f"download it first (`hf download {self.model_id}`), point the engine at a local model "
                "directory, or enable allow_download."
            )
            log.warning("%s", message)
            log_event(
                "demo_model",
                logging.WARNING,
                model=self.model_id,
                loaded=str(path),
                reason=reason,
                message=message,
            )
            self._load(str(path), False)
            self._demo, self._reason = True, reason
        self._ready = True

    def _load(self, source: str, allow_download: bool) -> None:
        try:
            self._load_pair(source, local_only=True)
        except Exception:
            if not allow_download:
                raise
            self._load_pair(source, local_only=False)
        self._loaded = source

    def _load_pair(self, source: str, local_only: bool) -> None:
        import torch
        from transformers import (
            AutoModelForCausalLM,
            AutoTokenizer,
            LogitsProcessorList,
            StoppingCriteriaList,
        )

        # Resolved here: transformers' lazy imports aren't thread-safe.
        self._criteria, self._processors = StoppingCriteriaList, LogitsProcessorList
        tok = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
        model = AutoModelForCausalLM.from_pretrained(source, local_files_only=local_only, dtype=torch.float32)
        eos = model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos]) | {tok.eos_token_id}
        self._eos = sorted(i for i in eos if i is not None)
        self._pad = tok.pad_token_id if tok.pad_token_id is not None else (self._eos or [0])[0]
        self.tokenizer, self.model = tok, model.eval()
        self._texts = TokenTexts(tok)
        self._tool_tokens = frozenset(
            i
            for i, added in getattr(tok, "added_tokens_decoder", {}).items()
            if getattr(added, "content", str(added)) in TOOL_TOKENS
        )

    def status(self) -> dict:
        """Configured model, what was actually loaded, demo flag/reason and readiness."""
        return {
            "model": self.model_id,
            "loaded": self._loaded,
            "demo": self._demo,
            "reason": self._reason,
            "ready": self._ready,
        }

    @property
    def active_generations(self) -> int:
        """Number of generation threads still running."""
        return self._active

    @property
    def context_length(self) -> int:
        """Max prompt + completion tokens."""
        return self.max_context or getattr(self.model.config, "max_position_embeddings", None) or 2048

    def _prepare(self, request: dict) -> _Job:
        """Validate ``request`` and tokenize its templated prompt; raises ``ValueError`` or a
        ``RouterError`` naming the field (``app.engine.request_fields``)."""
        if not self._ready:
            raise RuntimeError("engine not started: call start() first")
        if request.get("n") not in (None, 1):
            raise UnsupportedFeatureError(
                "The self-hosted engine returns one choice: n must be 1.", param="n"
            )
        fields = read_fields(request, len(self.tokenizer), self.grammar)
        ids, context = self.prompt_ids(request, fields), self.context_length
        if len(ids) >= context:
            raise ValueError(f"prompt is {len(ids)} tokens; the model's context is {context} tokens")
        max_tokens = _first(
            request.get("max_completion_tokens"), request.get("max_tokens"), self.default_max_tokens
        )
        if not _is_int(max_tokens) or max_tokens < 1:
            raise InvalidRequestError("max_tokens must be a positive integer", param="max_tokens")
        seed = request.get("seed")
        if seed is not None and not _is_int(seed):
            raise InvalidRequestError("seed must be an integer", param="seed")
        stop = request.get("stop")
        stops = [s for s in ([stop] if isinstance(stop, str) else stop or []) if isinstance(s, str) and s]
        budget = min(max_tokens, context - len(ids))
        if fields.grammar is not None:
            shortest = len(closing_tokens(fields.grammar, fields.grammar.initial(), self._token_texts()))
            if shortest > budget:
                what = (
                    "the forced tool call" if fields.tool_mode in ("required", "named") else "response_format"
                )
                raise InvalidRequestError(
                    f"{budget} completion tokens cannot hold the shortest JSON that {what} allows "
                    f"({shortest} tokens); raise max_tokens.",
                    param="max_tokens",
                )
        return _Job(ids, budget, _sampling(request), seed, stops, fields)

    def grammar(self, schema: dict, strict: bool) -> Grammar:
        """The compiled grammar for ``schema`` (cached with its token masks); ``SchemaError`` if
        the schema asks for what cannot be enforced."""
        key = (json.dumps(schema, sort_keys=True), strict)
        with self._grammar_lock:
            if key in self._grammars:
                self._grammars.move_to_end(key)
                return self._grammars[key]
        grammar = compile_schema(schema, strict=strict)
        with self._grammar_lock:
            self._grammars[key] = grammar
            while len(self._grammars) > GRAMMAR_CACHE:
                self._grammars.popitem(last=False)
        return grammar

    def prompt_ids(self, request: dict, fields: Fields | None = None) -> list[int]:
        """Token ids of the chat-templated prompt (with the assistant generation prompt). Tools go
        through the model's own chat template; a template with no place for them gets them in the
        system message (``request_fields.TOOLS_PROMPT``)."""
        messages = request.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ValueError("messages must be a non-empty list")
        tools = (
            [{"type": "function", "function": f} for f in fields.tools] if fields and fields.tools else None
        )
        text = self._render(template_messages(messages, text_calls=False), tools)
        if tools and text == self._render(template_messages(messages, text_calls=False), None):
            # The template ignores tools: describe them, and past calls, in plain text.
            plain = with_tools_prompt(
                template_messages(messages, text_calls=True), fields.tools if fields else []
            )
            text = self._render(plain, None)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _render(self, messages: list[dict], tools: list[dict] | None) -> str:
        template = None if self.tokenizer.chat_template else FALLBACK_TEMPLATE
        try:
            return self.tokenizer.apply_chat_template(
                messages, tools=tools, chat_template=template, tokenize=False, add_generation_prompt=True
            )
        except Exception as exc:
            raise ValueError(f"the model's chat template rejected the messages: {_summary(exc)}") from exc

    def _generate(self, job: _Job, tracker: _Tracker) -> None:
        import torch

        input_ids = torch.tensor([job.prompt_ids], dtype=torch.long)
        if job.seed is not None:
            torch.manual_seed(job.seed)
        processors = [p for p in (tracker.capture, self._penalties(job), tracker.constraint) if p is not None]
        self.model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=job.max_new_tokens,
            eos_token_id=self._eos or None,
            pad_token_id=self._pad,
            stopping_criteria=self._criteria([tracker]),
            logits_processor=self._processors(processors),
            repetition_penalty=1.0,
            **job.sampling,
        )

    def _penalties(self, job: _Job) -> Penalties | None:
        f = job.fields
        if not (f.presence or f.frequency or f.logit_bias):
            return None
        return Penalties(len(job.prompt_ids), f.presence, f.frequency, f.logit_bias)

    def _tracker(self, job: _Job, emit: Callable[[str, list], None], cancel: threading.Event) -> _Tracker:
        """The stopping criterion for ``job``, with its constraint, log-probabilities and decoding."""
        fields, texts = job.fields, self._token_texts()
        constraint = decode = None
        skip = frozenset(self.tokenizer.all_special_ids)
        if fields.grammar is not None:
            constraint = JsonConstraint(
                fields.grammar, texts, len(job.prompt_ids), job.max_new_tokens, self._eos
            )

            def decode(ids: list[int]) -> str:  # exactly the text the constraint checked
                return "".join(texts.text(i) for i in ids)
        elif fields.tool_mode == "auto" and self._tool_tokens:
            drop = skip - self._tool_tokens  # keep the model's tool-call markers ([TOOL_CALLS]...)
            skip = drop

            def decode(ids: list[int]) -> str:
                return self.tokenizer.decode([i for i in ids if i not in drop], skip_special_tokens=False)

        capture = LogprobCapture() if fields.logprobs else None
        return _Tracker(self.tokenizer, job, emit, cancel, decode, constraint, capture, texts, skip)

    def _worker(self, job: _Job, tracker: _Tracker, post: Callable[[tuple], None]) -> None:
        try:
            with self._gen_lock:
                if not tracker.cancel.is_set():
                    self._generate(job, tracker)
            post(("end", tracker.finish(set(self._eos)), len(tracker.ids)))
        except BaseException as exc:  # noqa: BLE001 - forwarded to the awaiting coroutine
            post(("error", exc))
        finally:
            with self._count_lock:
                self._active -= 1

    async def _events(self, job: _Job) -> AsyncGenerator[tuple, None]:
        """Run ``job`` in a thread; yield ("delta", text, logprob entries) then ("end", finish_reason,
        n_tokens). Closing this generator (or cancelling its consumer) stops generation at the next token.
        """
        loop, cancel = asyncio.get_running_loop(), threading.Event()
        queue: asyncio.Queue[tuple] = asyncio.Queue()

        def post(item: tuple) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # event loop closed: nobody is listening any more
                cancel.set()

        tracker = self._tracker(job, lambda text, entries: post(("delta", text, entries)), cancel)
        with self._count_lock:
            self._active += 1
        worker = threading.Thread(target=self._worker, args=(job, tracker, post), name="hr-gen", daemon=True)
        worker.start()
        try:
            while True:
                item = await queue.get()
                if item[0] == "error":
                    raise item[1]
                yield item
                if item[0] == "end":
                    return
        finally:
            cancel.set()

    async def complete(self, request: dict) -> dict:
        """Return an OpenAI ``chat.completion`` dict for ``request`` (raises ``ValueError`` or a
        ``RouterError`` naming the field on bad input)."""
        job = await asyncio.to_thread(self._prepare, request)
        parts, entries, finish, n_out = [], [], "length", 0
        async with contextlib.aclosing(self._events(job)) as events:
            async for item in events:
                if item[0] == "delta":
                    parts.append(item[1])
                    entries.extend(item[2])
                else:
                    finish, n_out = item[1], item[2]
        content, calls = _answer("".join(parts), finish, job.fields)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"], finish = calls, "tool_calls"
        logprobs = {"content": entries, "refusal": None} if job.fields.logprobs else None
        return wire.completion(
            wire.new_id(),
            self.served_name,
            [wire.choice(0, message, finish, logprobs)],
            usage=wire.usage(len(job.prompt_ids), n_out),
        )

    async def stream(self, request: dict) -> AsyncIterator[dict]:
        """Yield ``chat.completion.chunk`` dicts: role, content deltas, finish, then a usage-only chunk.

        A forced tool call (``required`` or a named function) comes whole in one chunk at the end;
        with ``tool_choice: auto`` content streams until it may be a call, which is held back and
        sent as ``tool_calls`` at the end when it parses as one.
        """
        job = await asyncio.to_thread(self._prepare, request)
        rid, created, fields = wire.new_id(), wire.now(), job.fields
        wants_logprobs = fields.logprobs

        def chunk(delta: dict, finish: str | None = None, entries: list | None = None) -> dict:
            logprobs = {"content": entries, "refusal": None} if wants_logprobs and entries else None
            return wire.chunk(rid, self.served_name, created, delta, finish_reason=finish, logprobs=logprobs)

        forced = fields.tool_mode in ("required", "named")
        sniffer = ToolCallSniffer() if fields.tool_mode == "auto" else None
        held_text, held_entries = [], []
        yield chunk({"role": "assistant", "content": ""})
        async with contextlib.aclosing(self._events(job)) as events:
            async for item in events:
                if item[0] == "delta":
                    if forced:
                        held_text.append(item[1])
                        held_entries.extend(item[2])
                        continue
                    text = sniffer.feed(item[1]) if sniffer is not None else item[1]
                    held_entries.extend(item[2])
                    if text or (held_entries and sniffer is None):
                        yield chunk({"content": text}, entries=held_entries)
                        held_entries = []
                    continue
                finish = item[1]
                calls: list[dict] = []
                if forced:
                    _, calls = _answer("".join(held_text), finish, fields)
                elif sniffer is not None:
                    rest, calls = sniffer.finish(fields.tool_names)
                    if rest or (held_entries and not calls):
                        yield chunk({"content": rest}, entries=held_entries)
                        held_entries = []
                for index, call in enumerate(calls):
                    yield chunk({"tool_calls": [{"index": index, **call}]}, entries=held_entries)
                    held_entries = []
                yield chunk({}, "tool_calls" if calls else finish)
                yield wire.usage_chunk(
                    rid, self.served_name, created, wire.usage(len(job.prompt_ids), item[2])
                )


def _answer(text: str, finish: str, fields: Fields) -> tuple[str | None, list[dict]]:
    """(content, tool calls) of a whole answer."""
    if fields.tool_mode in ("required", "named"):
        if finish == "length":  # cannot happen with a budget check, but never invent a call
            return text, []
        return None, forced_calls(text, fields)
    if fields.tool_mode == "auto":
        return parse_tool_calls(text, fields.tool_names)
    return text, []


def _sampling(request: dict) -> dict[str, Any]:
    """generate() kwargs; temperature 0 is greedy. Values are explicit so model defaults don't leak in."""
    temperature = float(_first(request.get("temperature"), 1.0))
    top_p = float(_first(request.get("top_p"), 1.0))
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError("temperature must be >= 0 and top_p in (0, 1]")
    if temperature == 0:
        return {"do_sample": False}
    return {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}


def _first(*values: Any) -> Any:
    return next(v for v in values if v is not None)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _summary(exc: BaseException) -> str:
    """One short line describing ``exc``: type and the first line of its message."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__
