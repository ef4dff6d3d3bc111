"""Ray Serve deployment serving one Hugging Face causal LM on CPU.

``CPUEngine`` wraps :class:`app.engine.transformers_engine.TransformersChatEngine`.
torch/transformers load inside the replica, so importing this module stays light.
Streaming: ``handle.options(stream=True).chat_stream.remote(request)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from ray import serve

from app.observability.logs import configure_logging


@serve.deployment(max_ongoing_requests=16, ray_actor_options={"num_cpus": 1})
class CPUEngine:
    """One replica = one loaded model; ``engine_args`` are TransformersChatEngine kwargs."""

    def __init__(self, engine_args: dict[str, Any]):
        from app.engine.transformers_engine import TransformersChatEngine

        configure_logging()  # the demo-model warning is a structured event (README, "Logs")

        args = dict(engine_args)
        args.setdefault("torch_threads", _assigned_cpus())
        self._engine = TransformersChatEngine(**args)
        self._engine.start()

    async def chat(self, request: dict) -> dict:
        """OpenAI ``chat.completion`` dict for a chat-completions request body."""
        return await self._engine.complete(request)

    async def chat_stream(self, request: dict) -> AsyncIterator[dict]:
        """``chat.completion.chunk`` dicts; the last one carries only ``usage``."""
        async with contextlib.aclosing(self._engine.stream(request)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def load(self) -> dict:
        """Requests in this replica now, and how many it serves at once (one generation at a
        time): read by every ingress replica for load-aware routing (``app.load``)."""
        return {"in_flight": self._engine.active_generations, "capacity": 1}

    def status(self) -> dict:
        """Configured vs loaded model, demo flag and reason, readiness."""
        return self._engine.status()

    def check_health(self) -> None:
        """Serve health hook: raises while the engine is not ready."""
        if not self._engine.status()["ready"]:
            raise RuntimeError("CPU engine is not ready")


def _assigned_cpus() -> int | None:
    """Whole CPUs Ray gave this replica (for torch threads), or None outside Ray."""
    try:
        import ray

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except Exception:  # noqa: BLE001 - not in a Ray worker
        return None
    return max(1, int(cpus)) if cpus else None
