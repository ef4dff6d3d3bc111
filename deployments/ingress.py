"""The router's ingress deployment: the FastAPI app of ``app.api.routes`` on Ray Serve.

The constructor is cheap: it validates the config it was given (as a dict, so replicas on any
node need no file) and wires backends to handles; Serve then asks ``__serve_build_asgi_app__``
for the ASGI app.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ray import serve

from app.api.routes import create_app
from app.backends.base import Backend, UnavailableBackend
from app.backends.registry import build_backends, missing_credentials
from app.backends.serve_handle import ServeHandleBackend
from app.config import ProviderSpec, parse_config
from app.observability.logs import configure_logging, log_event
from app.service import RouterService
from deployments.health import DeploymentHealth

ENGINE_STATUS_TIMEOUT_S = 2.0
ENGINE_DEPLOYMENT = "CPUEngine"


@serve.deployment(max_ongoing_requests=256)
@serve.ingress()
class RouterIngress:
    def __init__(self, config: dict[str, Any], engine: Any = None, adapters: dict[str, Any] | None = None) -> None:
        self.config = parse_config(config, source="serve args: config")
        configure_logging(self.config.logging.level)
        self.engine = engine
        self._engine_status: dict[str, Any] | None = None
        self.health = DeploymentHealth([ENGINE_DEPLOYMENT] if engine is not None else [], on_poll=self._refresh)

        def self_hosted(name: str) -> Backend:
            return ServeHandleBackend(name, engine, health=self._engine_unavailable)

        def through_adapter(name: str, provider: ProviderSpec) -> Backend:
            reason = missing_credentials(provider)
            if reason:
                return UnavailableBackend(reason)
            handle = (adapters or {})[self.config.models[name].provider]
            return ServeHandleBackend(name, handle, call_kwargs={"model": name})

        cloud = through_adapter if adapters else None
        self.service = RouterService(self.config, build_backends(self.config, self_hosted, cloud))
        self.health.start()
        unavailable = {m: self.service.availability(m) for m in self.config.models}
        log_event(
            "router_started",
            models_available=[m for m, r in unavailable.items() if r is None],
            models_unavailable={m: r for m, r in unavailable.items() if r is not None},
        )

    def _engine_unavailable(self) -> str | None:
        if self.engine is None:
            return "no self-hosted engine is deployed"
        return self.health.reason(ENGINE_DEPLOYMENT)

    def _refresh(self) -> None:
        self.service.refresh_gauges()

    async def _health_extra(self) -> dict[str, Any]:
        if self.engine is None:
            return {}
        if self._engine_status is None or not self._engine_status.get("ready"):
            try:
                self._engine_status = await asyncio.wait_for(
                    self.engine.status.remote(), timeout=ENGINE_STATUS_TIMEOUT_S
                )
            except Exception as exc:  # noqa: BLE001 - health reports, it never raises
                return {"self_hosted_engine": {"ready": False, "reason": type(exc).__name__}}
        extra: dict[str, Any] = {"self_hosted_engine": self._engine_status}
        if self._engine_status.get("demo"):
            extra["warnings"] = [
                "Self-hosted models are served by a tiny DEMO model with random weights: "
                f"{self._engine_status.get('model')} could not be loaded. See README, 'Serve a real model'."
            ]
        return extra

    def __serve_build_asgi_app__(self) -> Any:
        return create_app(self.service, health_extra=self._health_extra, echo_request_id=False)
