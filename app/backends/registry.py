"""Builds one backend per logical model from the config.

Self-hosted models get whatever the caller's ``self_hosted`` factory makes (a Serve handle to
the CPU engine or a vLLM server). Cloud models get their provider's adapter when its
credentials are present, else an ``UnavailableBackend`` that says which variable is missing:
a missing key is never a start-up failure, and routing skips such models. Where the adapters
run (in the ingress, or as their own deployments) is the caller's ``cloud`` factory.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping

from app.backends.base import Backend, UnavailableBackend
from app.config import ProviderSpec, RouterConfig
from app.observability.logs import quiet_vendor_loggers

# Provider kind -> "module:function" building its adapter (imported on first use).
CLOUD_FACTORIES = {
    "openai": "app.backends.openai_client:build",
    "openai_compatible": "app.backends.openai_client:build",
    "anthropic": "app.backends.anthropic_client:build",
    "vertex_ai": "app.backends.gemini_client:build",
}

CloudFactory = Callable[[str, ProviderSpec], Backend]


def missing_credentials(provider: ProviderSpec, env: Mapping[str, str] | None = None) -> str | None:
    """Which environment variable a provider still needs, as a reason; None when all are set."""
    env = os.environ if env is None else env
    needed = [v for v in (provider.api_key_env, provider.project_env) if v]
    missing = [v for v in needed if not env.get(v)]
    if missing:
        return f"{' and '.join(missing)} not set"
    return None


def cloud_backend(name: str, provider: ProviderSpec, config: RouterConfig, env: Mapping[str, str] | None = None) -> Backend:
    """The in-process adapter for cloud model ``name``, or why it cannot be had."""
    env = os.environ if env is None else env
    reason = missing_credentials(provider, env)
    if reason:
        return UnavailableBackend(reason)
    quiet_vendor_loggers(config.logging.log_prompts)
    module, _, function = CLOUD_FACTORIES[provider.kind].partition(":")
    build = getattr(importlib.import_module(module), function)
    backend: Backend = build(name, provider, config, env)
    return backend


def build_backends(
    config: RouterConfig,
    self_hosted: Callable[[str], Backend],
    cloud: CloudFactory | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Backend]:
    def in_process(name: str, provider: ProviderSpec) -> Backend:
        return cloud_backend(name, provider, config, env)

    make_cloud = cloud or in_process
    backends: dict[str, Backend] = {}
    for name, spec in config.models.items():
        provider = config.providers[spec.provider]
        backends[name] = self_hosted(name) if provider.runs_in_this_app else make_cloud(name, provider)
    return backends
