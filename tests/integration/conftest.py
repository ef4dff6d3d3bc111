"""One real Ray cluster and one Serve app for the whole integration run.

The app is the project's own graph (``deployments.builder:build_app``) on the default router
config, changed only where a 2-core test machine needs it: replicas take no CPU reservation
(three 1-CPU replicas on 2 CPUs deadlock), and the configured model does not exist, so the
CPU engine builds and serves the tiny local demo model, exactly as a fresh laptop would.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import httpx
import pytest
import yaml

PROJECT = Path(__file__).parents[2]
CLOUD_KEY_VARS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GOOGLE_CLOUD_PROJECT")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_router_config(tmp: Path) -> Path:
    config = yaml.safe_load((PROJECT / "deployments/configs/router.yaml").read_text())
    config["serving"]["cpu"].update(
        model="hybrid-router-tests/model-that-is-not-cached", demo_dir=str(tmp / "demo-model"), torch_threads=1
    )
    config["serving"]["ingress"]["num_cpus"] = 0
    config["serving"]["cpu_engine"]["num_cpus"] = 0
    path = tmp / "router.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="session")
def router_url(tmp_path_factory):
    import ray
    from ray import serve

    from deployments.builder import build_app

    for var in CLOUD_KEY_VARS:  # the local profile: no cloud keys at all
        os.environ.pop(var, None)
    tmp = tmp_path_factory.mktemp("router")
    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"config_path": str(test_router_config(tmp))}), name="router", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    _wait_healthy(url)
    yield url
    serve.shutdown()
    ray.shutdown()


def _wait_healthy(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            body = httpx.get(f"{url}/health", timeout=5).json()
            if body.get("self_hosted_engine", {}).get("ready"):
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)
    raise RuntimeError("the router did not become healthy in time")
