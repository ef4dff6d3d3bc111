"""Builds one backend per logical model from the config, and one SDK client per cloud provider.

Self-hosted models get whatever the caller's ``self_hosted`` factory makes (a Serve handle to
the CPU engine or a vLLM server). Cloud models get their provider's adapter when its
credentials are present, else an ``UnavailableBackend`` that says which variable is missing:
a missing key is never a start-up failure, and routing skips such models. Where the adapters
run (in the ingress, or as their own deployments) is the caller's ``cloud`` factory. The models
of one provider share its SDK client and connection pool (``ProviderClients``); the per-model
parts (model id, output limit, the name in responses and errors) stay in each backend.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from typing import Any

from app.backends.base import Backend, UnavailableBackend
from app.config import ProviderSpec, RouterConfig
from app.observability.logs import quiet_vendor_loggers

# Provider kind -> the adapter's client module: ``make_client(provider, env)`` builds the
# provider's one SDK client, ``build(name, provider, config, env, client)`` one model's backend.
CLOUD_ADAPTERS = {
    "openai": "app.backends.openai_client",
    "openai_compatible": "app.backends.openai_client",
    "anthropic": "app.backends.anthropic_client",
    "vertex_ai": "app.backends.gemini_client",
}

CloudFactory = Callable[[str, ProviderSpec], Backend]


class ProviderClients:
    """One SDK client (and so one connection pool) per provider, by its name under
    ``providers:``, made on the first request for it and shared by every model of the provider.

    Closing any of those backends closes the shared client; a second close does nothing, and a
    call after a close builds a fresh SDK client, so closing them all (``RouterService.close``)
    closes each client once.
    """

    def __init__(self) -> None:
        self._clients: dict[str, Any] = {}

    def get(self, provider_name: str, make: Callable[[], Any]) -> Any:
        if provider_name not in self._clients:
            self._clients[provider_name] = make()
        return self._clients[provider_name]


def missing_credentials(provider: ProviderSpec, env: Mapping[str, str] | None = None) -> str | None:
    """Which environment variable a provider still needs, as a reason; None when all are set."""
    env = os.environ if env is None else env
    needed = [v for v in (provider.api_key_env, provider.project_env) if v]
    missing = [v for v in needed if not env.get(v)]
    if missing:
        return f"{' and '.join(missing)} not set"
    return None


def cloud_backend(
    name: str,
    provider: ProviderSpec,
    config: RouterConfig,
    env: Mapping[str, str] | None = None,
    clients: ProviderClients | None = None,
) -> Backend:
    """The in-process adapter for cloud model ``name``, or why it cannot be had. With
    ``clients``, the model shares its provider's client with the others built through it;
    without, it gets a client of its own."""
    env = os.environ if env is None else env
    reason = missing_credentials(provider, env)
    if reason:
        return UnavailableBackend(reason)
    quiet_vendor_loggers(config.logging.log_prompts)
    adapter = importlib.import_module(CLOUD_ADAPTERS[provider.kind])
    clients = ProviderClients() if clients is None else clients
    client = clients.get(config.models[name].provider, lambda: adapter.make_client(provider, env))
    backend: Backend = adapter.build(name, provider, config, env, client=client)
    return backend


def build_backends(
    config: RouterConfig,
    self_hosted: Callable[[str], Backend],
    cloud: CloudFactory | None = None,
    env: Mapping[str, str] | None = None,
    clients: ProviderClients | None = None,
) -> dict[str, Backend]:
    """One backend per logical model; in-process cloud models of one provider share one client
    (from ``clients``, else a cache made for this call)."""
    clients = ProviderClients() if clients is None else clients

    def in_process(name: str, provider: ProviderSpec) -> Backend:
        return cloud_backend(name, provider, config, env, clients)

    make_cloud = cloud or in_process
    backends: dict[str, Backend] = {}
    for name, spec in config.models.items():
        provider = config.providers[spec.provider]
        backends[name] = self_hosted(name) if provider.runs_in_this_app else make_cloud(name, provider)
    return backends
