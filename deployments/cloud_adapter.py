"""One cloud provider's adapters as their own Serve deployment (``serving.cloud_adapters:
deployment``). The ingress calls it through a handle, with the logical model name.

Keys come from this replica's own environment (Kubernetes Secrets), never from its args.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from ray import serve

from app.backends.registry import ProviderClients, cloud_backend
from app.config import parse_config
from app.errors import ModelNotFoundError
from app.observability.logs import configure_logging


@serve.deployment(max_ongoing_requests=256)
class CloudAdapter:
    def __init__(self, config: dict[str, Any], provider: str) -> None:
        parsed = parse_config(config, source="serve args: config")
        configure_logging(parsed.logging.level)
        spec = parsed.providers[provider]
        clients = ProviderClients()  # one SDK client (and connection pool) for all of this provider's models
        self.backends = {
            name: cloud_backend(name, spec, parsed, clients=clients)
            for name, model in parsed.models.items()
            if model.provider == provider
        }

    def _backend(self, model: str) -> Any:
        if model not in self.backends:
            raise ModelNotFoundError(f"this adapter does not serve {model!r}")
        return self.backends[model]

    async def chat(self, request: dict[str, Any], model: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._backend(model).complete(request)
        return result

    async def chat_stream(self, request: dict[str, Any], model: str) -> AsyncIterator[dict[str, Any]]:
        async with contextlib.aclosing(self._backend(model).stream(request)) as chunks:
            async for chunk in chunks:
                yield chunk

    def status(self) -> dict[str, str | None]:
        return {name: backend.unavailable_reason() for name, backend in self.backends.items()}
