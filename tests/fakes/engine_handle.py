"""The CPU engine in-process behind a stand-in for its Serve deployment handle (no Ray).

``EngineHandle`` has the shape ``ServeHandleBackend`` calls (``handle.chat.remote(request)``,
``handle.options(stream=True).chat_stream.remote(request)``) and runs the real
``TransformersChatEngine`` as ``deployments.cpu_engine.CPUEngine`` does, errors included: an
exception raised by the engine reaches the backend as it would through Ray.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from app.backends.registry import build_backends
from app.backends.serve_handle import ServeHandleBackend
from app.config import RouterConfig
from app.engine.transformers_engine import TransformersChatEngine


class _Method:
    def __init__(self, call: Any) -> None:
        self.remote = call


class EngineHandle:
    def __init__(self, engine: TransformersChatEngine) -> None:
        self.engine = engine
        self.calls: list[dict[str, Any]] = []
        self.chat = _Method(self._chat)
        self.chat_stream = _Method(self._chat_stream)

    def options(self, **_kwargs: Any) -> EngineHandle:
        return self

    async def _chat(self, request: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(request)
        return await self.engine.complete(request)

    async def _chat_stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        self.calls.append(request)
        async with contextlib.aclosing(self.engine.stream(request)) as chunks:
            async for chunk in chunks:
                yield chunk


def local_backends(
    config: RouterConfig, engine: TransformersChatEngine
) -> tuple[dict[str, Any], EngineHandle]:
    """The local profile's backends: every self-hosted model on ``engine``, cloud models with no
    credentials (unavailable, as on a laptop without keys)."""
    handle = EngineHandle(engine)
    backends = build_backends(config, lambda name: ServeHandleBackend(name, handle), env={})
    return backends, handle
