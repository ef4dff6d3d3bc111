"""The one Ray entry point: ``build_app(args)`` builds the whole graph from the router config.

Used by ``serve run deployments/configs/local.yaml``, by the serve config files and by the
RayService alike. Args:

- ``config_path``: the router config YAML (default: ``$ROUTER_CONFIG``, else
  ``deployments/configs/router.yaml``); a relative path is tried from the working directory,
  then from the project root.
- ``config``: the router config itself, inline (what the GKE serve config and the RayService
  carry, generated from the same router config; see ``deployments/configs/generate.py``).

A config with problems raises a ``RayServeException`` whose message lists every problem with
its field path: Serve reports it as is (``serve status``, the controller's log) instead of a
traceback, and does not retry the build. ``serve run`` keeps running after a failed deploy, so
``make run`` (and CI) check the config first: ``python -m app.check_config``.
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application
from ray.serve.exceptions import RayServeException

from app.config import ConfigError, RouterConfig, load_config, parse_config, resolve_config_path
from app.security.auth import check_client_keys
from deployments.cloud_adapter import CloudAdapter
from deployments.cpu_engine import CPUEngine
from deployments.ingress import RouterIngress
from deployments.llm_options import CPU_ENGINE_DEPLOYMENT


def _options(settings: Any) -> dict[str, Any]:
    return {
        "num_replicas": settings.num_replicas,
        "max_ongoing_requests": settings.max_ongoing_requests,
        "ray_actor_options": {"num_cpus": settings.num_cpus},
    }


def engine_apps(config: RouterConfig) -> dict[str, Application]:
    """Per self-hosted model, the deployment serving it in this profile (empty if none needs one).

    The cpu profile binds its one ``CPUEngine`` once and maps every self-hosted model to that
    same Application (Serve builds one deployment for it: bound applications are deduplicated by
    identity); the vllm profile gives each model its own Ray Serve LLM deployment(s).
    """
    in_app = [m for m in config.models if config.provider_of(m).runs_in_this_app]
    if not in_app:
        return {}
    if config.serving.engine == "vllm":
        from deployments.vllm_engines import build_vllm_engines  # imports ray.serve.llm: GPU images only

        return build_vllm_engines(config)
    assert config.serving.cpu is not None  # checked when the config was loaded
    cpu = config.serving.cpu
    engine_args = {
        "model": cpu.model,
        "demo_fallback": cpu.demo_fallback,
        "allow_download": cpu.allow_download,
        "demo_dir": cpu.demo_dir,
        "default_max_tokens": cpu.default_max_tokens,
        "torch_threads": cpu.torch_threads,
    }
    engine = CPUEngine.options(name=CPU_ENGINE_DEPLOYMENT, **_options(config.serving.cpu_engine)).bind(
        engine_args
    )
    return dict.fromkeys(in_app, engine)


def adapter_apps(config: RouterConfig, config_dict: dict[str, Any]) -> dict[str, Application] | None:
    """One adapter deployment per cloud provider, when the config places adapters that way."""
    if config.serving.cloud_adapters != "deployment":
        return None
    return {
        name: CloudAdapter.options(name=f"CloudAdapter-{name}", **_options(config.serving.adapter)).bind(
            config_dict, name
        )
        for name, provider in config.providers.items()
        if not provider.runs_in_this_app
    }


def load_router_config(inline: Any, path: str | None) -> RouterConfig:
    """The config ``build_app`` was given; its problems as a ``RayServeException`` (see above)."""
    try:
        config = (
            parse_config(inline, source="serve args: config")
            if inline is not None
            else load_config(resolve_config_path(path))
        )
        check_client_keys(config.auth)
        return config
    except ConfigError as exc:
        raise RayServeException(
            f"{exc}\n(python -m app.check_config lists these without starting Ray)"
        ) from None


def build_app(args: dict[str, Any] | None = None) -> Application:
    args = dict(args or {})
    inline = args.pop("config", None)
    path = args.pop("config_path", None)
    if args:
        raise ValueError(f"unknown build_app args: {sorted(args)}; expected config_path or config")
    config = load_router_config(inline, path)
    config_dict = config.model_dump(mode="json")
    ingress = RouterIngress.options(**_options(config.serving.ingress))
    return ingress.bind(config_dict, engine_apps(config), adapter_apps(config, config_dict))
