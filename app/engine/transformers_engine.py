"""OpenAI chat-completions on CPU with any Hugging Face causal LM.

``TransformersChatEngine`` turns an OpenAI request dict into ``model.generate``
running in a background thread, and returns ``chat.completion`` dicts or yields
``chat.completion.chunk`` dicts. torch/transformers are imported in ``start()``.
Prompt and output text are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from app.engine.demo_model import build_demo_model, default_demo_model_dir
from app.observability.logs import log_event

log = logging.getLogger(__name__)

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


class _Tracker:
    """Called by ``generate`` after every token (as a stopping criterion).

    Decodes incrementally, truncates at the first stop string, emits text that can no
    longer turn into a stop string, and asks ``generate`` to stop on a stop string or
    when ``cancel`` is set.
    """

    def __init__(self, tokenizer, job: _Job, emit: Callable[[str], None], cancel: threading.Event):
        self.tok, self.job, self.emit, self.cancel = tokenizer, job, emit, cancel
        self.ids: list[int] = []
        self.text, self.sent, self.prefix, self.read = "", 0, 0, 0
        self.stop_hit = False

    def __call__(self, input_ids, scores=None, **kwargs):
        import torch

        self.ids.extend(input_ids[0, len(self.job.prompt_ids) + len(self.ids):].tolist())
        if not self.stop_hit:
            self._decode(final=False)
        done = self.stop_hit or self.cancel.is_set()
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    def _decode(self, final: bool) -> None:
        prev = self.tok.decode(self.ids[self.prefix:self.read], skip_special_tokens=True)
        new = self.tok.decode(self.ids[self.prefix:], skip_special_tokens=True)
        if len(new) > len(prev) and (final or not new.endswith("\ufffd")):
            self.text += new[len(prev):]
            self.prefix, self.read = self.read, len(self.ids)
        self._release(final)

    def _release(self, final: bool) -> None:
        hits = [i for i in (self.text.find(s, self.sent) for s in self.job.stops) if i >= 0]
        end = len(self.text) if final else len(self.text) - self._holdback()
        if hits:
            self.stop_hit, end = True, min(hits)
            self.text = self.text[:end]
        if end > self.sent:
            self.emit(self.text[self.sent:end])
            self.sent = end

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
        return "length"


class TransformersChatEngine:
    """Serve one Hugging Face causal LM on CPU; ``start()`` must run before requests."""

    def __init__(self, model: str, *, served_name: str | None = None, demo_fallback: bool = True,
                 demo_dir: Path | None = None, allow_download: bool = False,
                 max_context: int | None = None, torch_threads: int | None = None,
                 default_max_tokens: int = 256):
        self.model_id = model
        self.served_name = served_name or model
        self.demo_fallback, self.demo_dir, self.allow_download = demo_fallback, demo_dir, allow_download
        self.max_context, self.torch_threads = max_context, torch_threads
        self.default_max_tokens = default_max_tokens
        self.tokenizer = self.model = None
        self._loaded: str | None = None
        self._demo, self._reason, self._ready = False, None, False
        self._gen_lock, self._count_lock, self._active = threading.Lock(), threading.Lock(), 0

    def start(self) -> None:
        """Load tokenizer and model (slow); fall back to the demo model if allowed."""
        if self._ready:
            return
        import torch

        if self.torch_threads:
            torch.set_num_threads(self.torch_threads)
        try:
            self._load(self.model_id, self.allow_download)
        except Exception as exc:  # noqa: BLE001 - any load failure is summarised below
            reason = _summary(exc)
            if not self.demo_fallback:
                raise RuntimeError(f"could not load model {self.model_id!r}: {reason}") from exc
            path = build_demo_model(self.demo_dir or default_demo_model_dir())
            message = (
                f"!!! Could not load model {self.model_id!r} ({reason}). Serving the built-in DEMO model "
                f"from {path} instead: it has random weights and produces gibberish. To serve a real model, "
                f"download it first (`hf download {self.model_id}`), point the engine at a local model "
                "directory, or enable allow_download.")
            log.warning("%s", message)
            log_event("demo_model", logging.WARNING, model=self.model_id, loaded=str(path), reason=reason,
                      message=message)
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
        from transformers import AutoModelForCausalLM, AutoTokenizer, StoppingCriteriaList

        self._criteria = StoppingCriteriaList  # resolved here: transformers' lazy imports aren't thread-safe
        tok = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
        model = AutoModelForCausalLM.from_pretrained(source, local_files_only=local_only, dtype=torch.float32)
        eos = model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos]) | {tok.eos_token_id}
        self._eos = sorted(i for i in eos if i is not None)
        self._pad = tok.pad_token_id if tok.pad_token_id is not None else (self._eos or [0])[0]
        self.tokenizer, self.model = tok, model.eval()

    def status(self) -> dict:
        """Configured model, what was actually loaded, demo flag/reason and readiness."""
        return {"model": self.model_id, "loaded": self._loaded, "demo": self._demo,
                "reason": self._reason, "ready": self._ready}

    @property
    def active_generations(self) -> int:
        """Number of generation threads still running."""
        return self._active

    @property
    def context_length(self) -> int:
        """Max prompt + completion tokens."""
        return self.max_context or getattr(self.model.config, "max_position_embeddings", None) or 2048

    def _prepare(self, request: dict) -> _Job:
        """Validate ``request`` and tokenize its templated prompt; raises ``ValueError``."""
        if not self._ready:
            raise RuntimeError("engine not started: call start() first")
        if request.get("n") not in (None, 1):
            raise ValueError("only n=1 is supported")
        ids, context = self.prompt_ids(request), self.context_length
        if len(ids) >= context:
            raise ValueError(f"prompt is {len(ids)} tokens; the model's context is {context} tokens")
        max_tokens = _first(request.get("max_completion_tokens"), request.get("max_tokens"),
                            self.default_max_tokens)
        if not _is_int(max_tokens) or max_tokens < 1:
            raise ValueError("max_tokens must be a positive integer")
        seed = request.get("seed")
        if seed is not None and not _is_int(seed):
            raise ValueError("seed must be an integer")
        stop = request.get("stop")
        stops = [s for s in ([stop] if isinstance(stop, str) else stop or []) if isinstance(s, str) and s]
        return _Job(ids, min(max_tokens, context - len(ids)), _sampling(request), seed, stops)

    def prompt_ids(self, request: dict) -> list[int]:
        """Token ids of the chat-templated prompt (with the assistant generation prompt)."""
        messages = request.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ValueError("messages must be a non-empty list")
        template = None if self.tokenizer.chat_template else FALLBACK_TEMPLATE
        try:
            text = self.tokenizer.apply_chat_template(
                [_flatten(m) for m in messages], tools=request.get("tools"), chat_template=template,
                tokenize=False, add_generation_prompt=True)
        except Exception as exc:  # noqa: BLE001 - templates raise arbitrary errors on bad conversations
            raise ValueError(f"the model's chat template rejected the messages: {_summary(exc)}") from exc
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _generate(self, job: _Job, tracker: _Tracker) -> None:
        import torch

        input_ids = torch.tensor([job.prompt_ids], dtype=torch.long)
        if job.seed is not None:
            torch.manual_seed(job.seed)
        self.model.generate(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=job.max_new_tokens,
            eos_token_id=self._eos or None, pad_token_id=self._pad, stopping_criteria=self._criteria([tracker]),
            **job.sampling)

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

    async def _events(self, job: _Job) -> AsyncIterator[tuple]:
        """Run ``job`` in a thread; yield ("delta", text) then ("end", finish_reason, n_tokens).

        Closing this generator (or cancelling its consumer) stops generation at the next token.
        """
        loop, queue, cancel = asyncio.get_running_loop(), asyncio.Queue(), threading.Event()

        def post(item: tuple) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # event loop closed: nobody is listening any more
                cancel.set()

        tracker = _Tracker(self.tokenizer, job, lambda text: post(("delta", text)), cancel)
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
        """Return an OpenAI ``chat.completion`` dict for ``request`` (raises ``ValueError`` on bad input)."""
        job = await asyncio.to_thread(self._prepare, request)
        parts, finish, n_out = [], "length", 0
        async with contextlib.aclosing(self._events(job)) as events:
            async for item in events:
                if item[0] == "delta":
                    parts.append(item[1])
                else:
                    finish, n_out = item[1], item[2]
        message = {"role": "assistant", "content": "".join(parts)}
        return {"id": _new_id(), "object": "chat.completion", "created": int(time.time()),
                "model": self.served_name, "usage": _usage(len(job.prompt_ids), n_out),
                "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}]}

    async def stream(self, request: dict) -> AsyncIterator[dict]:
        """Yield ``chat.completion.chunk`` dicts: role, content deltas, finish, then a usage-only chunk."""
        job = await asyncio.to_thread(self._prepare, request)
        rid, created = _new_id(), int(time.time())

        def chunk(delta: dict, finish: str | None = None) -> dict:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return {"id": rid, "object": "chat.completion.chunk", "created": created,
                    "model": self.served_name, "choices": [choice]}

        yield chunk({"role": "assistant", "content": ""})
        async with contextlib.aclosing(self._events(job)) as events:
            async for item in events:
                if item[0] == "delta":
                    yield chunk({"content": item[1]})
                else:
                    yield chunk({}, item[1])
                    usage = _usage(len(job.prompt_ids), item[2])
                    yield {**chunk({}), "choices": [], "usage": usage}


def _flatten(message: dict) -> dict:
    """Copy of ``message`` whose list-of-parts content is joined into one string."""
    content = message.get("content")
    if isinstance(content, list):
        text = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        return {**message, "content": text}
    return dict(message)


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


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _new_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"
