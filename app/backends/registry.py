"""Builds one backend per logical model from the config.

Self-hosted models get whatever the caller's ``self_hosted`` factory makes (a Serve handle to
the CPU engine or a vLLM server). Cloud models get their provider's adapter when its
credentials are present, else an ``UnavailableBackend`` that says which variable is missing:
a missing key is never a start-up failure, and routing skips such models.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from app.backends.base import Backend, UnavailableBackend
from app.config import ProviderSpec, RouterConfig

CloudFactory = Callable[[str, ProviderSpec, RouterConfig], Backend]

# Provider kind -> adapter factory; cloud adapters register here.
CLOUD_FACTORIES: dict[str, CloudFactory] = {}


def missing_credentials(provider: ProviderSpec, env: Mapping[str, str] | None = None) -> str | None:
    """Which environment variable a provider still needs, as a reason; None when all are set."""
    env = os.environ if env is None else env
    needed = [v for v in (provider.api_key_env, provider.project_env) if v]
    missing = [v for v in needed if not env.get(v)]
    if missing:
        return f"{' and '.join(missing)} not set"
    return None


def build_backends(
    config: RouterConfig,
    self_hosted: Callable[[str], Backend],
    env: Mapping[str, str] | None = None,
) -> dict[str, Backend]:
    backends: dict[str, Backend] = {}
    for name, spec in config.models.items():
        provider = config.providers[spec.provider]
        if provider.is_self_hosted:
            backends[name] = self_hosted(name)
            continue
        reason = missing_credentials(provider, env)
        factory = CLOUD_FACTORIES.get(provider.kind)
        if reason is None and factory is None:
            reason = f"no adapter is installed for provider kind {provider.kind!r}"
        backends[name] = UnavailableBackend(reason) if reason else factory(name, provider, config)  # type: ignore[misc]
    return backends
