"""Build a tiny random-weight Llama-style chat model, fully offline.

The demo model lets the router run end to end on a laptop or in CI without
downloading anything: it speaks nonsense, but through the real transformers
code path (tokenizer, chat template, ``generate``, streaming, token counts).
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

MARKER = ".complete"
SEED = 1234
VOCAB_SIZE = 1000
LOGIT_SCALE = 0.5  # std of output-head weights; logits ~ N(0, (8 * 0.5)^2)
BOS, EOS, PAD = "<|begin_of_text|>", "<|im_end|>", "<|pad|>"
IM_START = "<|im_start|>"
_BUILD_LOCK = threading.Lock()  # transformers' lazy imports are not thread-safe either

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] }}"
    "{% if message.get('name') %}{{ ' name=' + message['name'] }}{% endif %}"
    "{% if message.get('tool_call_id') %}{{ ' id=' + message['tool_call_id'] }}{% endif %}"
    "{{ '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% elif message['content'] is iterable %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}"
    "{% endif %}"
    "{% if message.get('tool_calls') %}{{ message['tool_calls'] | tojson }}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

CORPUS = """\
The quick brown fox jumps over the lazy dog. A router sends each request to the
model that can answer it best, and it keeps an eye on cost, latency and quality.
Hello! How can I help you today? I am a small assistant, and I answer questions
about programming, cloud services, and the weather. Please tell me more about
what you are trying to do, and I will do my best to explain it step by step.
The system prompt sets the rules; the user asks; the assistant replies; a tool
returns a result as JSON. Large language models predict the next token. When the
context window is full, the oldest messages are dropped or summarised first.
Streaming sends the answer in small pieces, so the reader sees words at once.
def add(a: int, b: int) -> int:
    \"\"\"Return the sum of two integers.\"\"\"
    return a + b

class Router:
    def __init__(self, backends: list[str]) -> None:
        self.backends = backends

    async def route(self, request: dict) -> dict:
        for backend in self.backends:
            if await self.healthy(backend):
                return {"backend": backend, "status": "ok"}
        raise RuntimeError("no healthy backend")

import json
print(json.dumps({"model": "demo", "messages": [{"role": "user", "content": "hi"}]}))
for i in range(10):
    if i % 2 == 0:
        continue
    print(f"odd number: {i}")
SELECT id, name, created_at FROM users WHERE active = true ORDER BY id LIMIT 10;
curl -s http://localhost:8000/v1/chat/completions -H 'Content-Type: application/json'
Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000 3.14 2.71 42. Dates: 2024-01-31, 12:30.
Punctuation and symbols: ( ) [ ] { } < > = + - * / % & | ^ ~ ! ? , . ; : ' " ` # @ $ _
"""


def default_demo_model_dir() -> Path:
    """``$HYBRID_ROUTER_CACHE_DIR/demo-model``, else ``~/.cache/hybrid-router/demo-model``."""
    base = os.environ.get("HYBRID_ROUTER_CACHE_DIR")
    root = Path(base) if base else Path.home() / ".cache" / "hybrid-router"
    return root / "demo-model"


def is_complete(path: str | Path) -> bool:
    """True when ``path`` holds a fully written demo model (marker present)."""
    return (Path(path) / MARKER).is_file()


def build_demo_model(path: str | Path) -> Path:
    """Build the demo model at ``path`` unless one is already complete there; return ``path``.

    Deterministic (fixed seed), no network, a few seconds. Builds in a sibling temp dir
    and renames it into place, so concurrent builders never expose a partial model.
    """
    path = Path(path).expanduser().resolve()
    with _BUILD_LOCK:  # threads of one process build once; processes race safely via rename
        if is_complete(path):
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            _write_model(tmp)
            (tmp / MARKER).write_text("ok\n")
            _publish(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def _publish(tmp: Path, path: Path) -> None:
    """Atomically move ``tmp`` to ``path``; a concurrent winner or stale partial dir is handled."""
    for _ in range(5):
        try:
            os.rename(tmp, path)
            return
        except OSError:
            if is_complete(path):
                return  # another builder won the race
        stale = path.parent / f".{path.name}.stale-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(path, stale)  # leftovers of a crashed, non-atomic writer
        except FileNotFoundError:
            continue  # another builder moved it first
        shutil.rmtree(stale, ignore_errors=True)
    raise OSError(f"could not publish the demo model at {path}")


def _write_model(out: Path) -> None:
    out.mkdir(parents=True)
    tokenizer = build_tokenizer()
    model = _build_llama(tokenizer)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def build_tokenizer() -> Any:
    """Train a byte-level BPE on the built-in corpus; return a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[PAD, BOS, EOS, IM_START],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS.splitlines(keepends=True), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[IM_START],
        chat_template=CHAT_TEMPLATE,
        model_max_length=2048,
        clean_up_tokenization_spaces=False,
    )


def _build_llama(tokenizer: Any) -> Any:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        initializer_range=0.2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = LlamaForCausalLM(config).eval()
    _shape_output_head(model, tokenizer)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )
    return model


def _shape_output_head(model: Any, tokenizer: Any) -> None:
    """Make the demo babble printable text that never ends early.

    Rows of the output head for special tokens, control characters and partial UTF-8
    bytes are zeroed while the others are scaled up, so those tokens are (almost) never
    chosen: greedy output is readable ASCII and always runs to ``max_tokens``.
    """
    import torch

    bad = [i for i in range(len(tokenizer)) if not _printable(tokenizer.decode([i]))]
    bad += list(tokenizer.all_special_ids)
    with torch.no_grad():
        weight = model.lm_head.weight
        weight.mul_(LOGIT_SCALE / weight.std())
        weight[sorted(set(bad))] = 0.0


def _printable(text: str) -> bool:
    return bool(text) and "\ufffd" not in text and text.replace("\n", " ").replace("\t", " ").isprintable()
