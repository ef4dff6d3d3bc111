"""The router's ingress deployment: the FastAPI app of ``app.api.routes`` on Ray Serve.

The constructor is cheap: it validates the config it was given (as a dict, so replicas on any
node need no file) and wires backends to handles, one per self-hosted model; Serve then asks
``__serve_build_asgi_app__`` for the ASGI app. A self-hosted model is routable while every
deployment serving it (``deployments.llm_options.deployment_names``) has a running replica.
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
from deployments.llm_options import deployment_names

ENGINE_STATUS_TIMEOUT_S = 2.0
LOAD_TIMEOUT_S = 1.0  # a load poll that takes longer is skipped; the last report ages out


@serve.deployment(max_ongoing_requests=256)
@serve.ingress()
class RouterIngress:
    """``engines`` maps each self-hosted logical model to the handle serving it: the one CPU
    engine for all of them, or each model's own vLLM server; ``adapters`` maps cloud providers
    to their adapter deployments when adapters run as deployments."""

    def __init__(
        self,
        config: dict[str, Any],
        engines: dict[str, Any] | None = None,
        adapters: dict[str, Any] | None = None,
    ) -> None:
        self.config = parse_config(config, source="serve args: config")
        configure_logging(self.config.logging.level)
        self.engines = dict(engines or {})
        self.watched = {m: names for m, names in deployment_names(self.config).items() if m in self.engines}
        self._engine_status: dict[str, Any] | None = None
        watched = list(dict.fromkeys(n for names in self.watched.values() for n in names))
        self.health = DeploymentHealth(watched)

        def self_hosted(name: str) -> Backend:
            if name not in self.engines:
                return UnavailableBackend("no self-hosted engine is deployed")
            return ServeHandleBackend(name, self.engines[name], health=lambda: self._engine_unavailable(name))

        def through_adapter(name: str, provider: ProviderSpec) -> Backend:
            reason = missing_credentials(provider)
            if reason:
                return UnavailableBackend(reason)
            handle = (adapters or {})[self.config.models[name].provider]
            return ServeHandleBackend(name, handle, call_kwargs={"model": name})

        cloud = through_adapter if adapters else None
        # The deployment each self-hosted model's handle reaches (a disaggregated model's decode
        # server): models sharing one (the CPU engine) count their requests in flight together.
        self.pools = {m: names[-1] for m, names in self.watched.items()}
        self._load_failing: set[str] = set()
        self.service = RouterService(
            self.config,
            build_backends(self.config, self_hosted, cloud),
            pools=self.pools,
            load_probe=self._engine_load if self.pools else None,
        )
        self.health.start()
        unavailable = {m: self.service.availability(m) for m in self.config.models}
        log_event(
            "router_started",
            models_available=[m for m, r in unavailable.items() if r is None],
            models_unavailable={m: r for m, r in unavailable.items() if r is not None},
        )

    def __del__(self) -> None:
        """Serve calls this when the replica stops (after the app's lifespan shutdown): the
        health poller stops with it."""
        stop = getattr(getattr(self, "health", None), "stop", None)
        if stop is None:  # the constructor did not get that far
            return
        try:
            stop()
            log_event("router_stopped")
        except Exception:  # noqa: BLE001, S110 - a destructor never raises (at interpreter exit, say)
            pass

    async def _engine_load(self) -> dict[str, list[dict[str, Any]]]:
        """Every engine replica's own ``load()`` (requests in it now, and its capacity), per pool:
        what every ingress replica sent it, not only this one. A pool whose replicas do not all
        answer in time is left out this round."""
        handles = {pool: self.engines[model] for model, pool in self.pools.items()}
        out: dict[str, list[dict[str, Any]]] = {}
        for pool, handle in handles.items():
            try:
                out[pool] = await handle.broadcast("load").results_async(timeout_s=LOAD_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - a replica starting or gone: skip this round
                if pool not in self._load_failing:  # once until it answers again, not every poll
                    log_event("engine_load_failed", deployment=pool, error_type=type(exc).__name__)
                self._load_failing.add(pool)
            else:
                self._load_failing.discard(pool)
        return out

    def _engine_unavailable(self, model: str) -> str | None:
        """Why ``model``'s engine cannot take requests (names the deployment), or None."""
        for deployment in self.watched.get(model, ()):
            reason = self.health.reason(deployment)
            if reason:
                return reason
        return None

    async def _health_extra(self) -> dict[str, Any]:
        if not self.engines:
            return {}
        if self.config.serving.engine == "vllm":
            return {"self_hosted_engine": self._vllm_status()}
        return await self._cpu_status()

    def _vllm_status(self) -> dict[str, Any]:
        """Per model, its deployments' state as last polled (Serve's replica states)."""
        models: dict[str, Any] = {}
        for model, names in self.watched.items():
            states = {name: self.health.reason(name) or "up" for name in names}
            models[model] = {"ready": all(s == "up" for s in states.values()), "deployments": states}
        return {"engine": "vllm", "ready": all(m["ready"] for m in models.values()), "models": models}

    async def _cpu_status(self) -> dict[str, Any]:
        """The CPU engine's own status: configured and loaded model, demo flag, readiness."""
        engine = next(iter(self.engines.values()))
        if self._engine_status is None or not self._engine_status.get("ready"):
            try:
                self._engine_status = await asyncio.wait_for(
                    engine.status.remote(), timeout=ENGINE_STATUS_TIMEOUT_S
                )
            except Exception as exc:  # noqa: BLE001 - health reports, it never raises
                return {"self_hosted_engine": {"ready": False, "reason": type(exc).__name__}}
        extra: dict[str, Any] = {"self_hosted_engine": self._engine_status}
        if self._engine_status.get("demo"):
            extra["warnings"] = [
                (
                    "Self-hosted models are served by a tiny DEMO model with random weights: "
                    f"{self._engine_status.get('model')} could not be loaded. "
                    "See README, 'Serve a real model'."
                )
            ]
        return extra

    def __serve_build_asgi_app__(self) -> Any:
        return create_app(self.service, health_extra=self._health_extra, echo_request_id=False)
