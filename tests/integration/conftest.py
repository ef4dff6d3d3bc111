"""One real Ray cluster for the whole integration run, with two Serve apps on it.

- ``router`` (at /): the project's own graph on the default router config with no cloud keys at
  all, as on a fresh laptop. The configured model does not exist, so the CPU engine builds and
  serves the tiny local demo model.
- ``cloud`` (at /cloud): the same graph with every cloud provider pointed at its local fake (keys
  and the GCP project from the environment, Vertex credentials from a fake GKE metadata server),
  adapters as their own deployments, and ``mistral-7b-fast`` bound to an OpenAI-compatible
  server the way a KServe / vLLM endpoint would be.
- ``burst`` (at /burst, only for the tests that ask for it, deleted after them): the self-hosted
  models on a CPU engine of its own, every cloud provider on its fake, with short load-aware settings
  (a 2 s spill cool-down, the engines polled every 0.25 s) so a burst's spill-over and its end
  fit in a test.

Replicas take no CPU reservation: three 1-CPU replicas on a 2-core machine deadlock.

The cluster is the run's own, whatever else runs on the machine: ``ray.init(address="local")``
never joins another cluster (not even the one ``$RAY_ADDRESS`` names, which is dropped here), with
a temp dir, ports (HAProxy's included) and an auth token of its own; at the end everything it
started is stopped, by pid (``deployments.run_local``). The router's JSON log goes to
``CLUSTER["log_file"]``.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from deployments.configs.profiles import local_env

PROJECT = Path(__file__).parents[2]
CLOUD_KEY_VARS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GOOGLE_CLOUD_PROJECT")
FAKE_ENV = {
    "TEST_OPENAI_KEY": "test-openai-key",
    "TEST_ANTHROPIC_KEY": "test-anthropic-key",
    "TEST_GCP_PROJECT": "test-project",
}


CLUSTER: dict[str, Any] = {}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def default_config() -> dict:
    return yaml.safe_load((PROJECT / "deployments/configs/router.yaml").read_text())


def for_this_machine(config: dict, tmp: Path) -> dict:
    config["serving"]["cpu"].update(
        model="hybrid-router-tests/model-that-is-not-cached",
        demo_dir=str(tmp / "demo-model"),
        torch_threads=1,
    )
    for deployment in ("ingress", "cpu_engine", "adapter"):
        config["serving"].setdefault(deployment, {})["num_cpus"] = 0
    return config


def with_cloud_fakes(config: dict, fakes: dict) -> dict:
    """Every cloud provider at its local fake, adapters as their own deployment."""
    providers = config["providers"]
    providers["openai"].update(api_key_env="TEST_OPENAI_KEY", base_url=f"{fakes['openai'].url}/v1")
    providers["anthropic"].update(api_key_env="TEST_ANTHROPIC_KEY", base_url=fakes["anthropic"].url)
    providers["vertex_ai"].update(project_env="TEST_GCP_PROJECT", base_url=fakes["gemini"].url)
    config["serving"]["cloud_adapters"] = "deployment"
    return config


def with_fakes(config: dict, fakes: dict) -> dict:
    providers = with_cloud_fakes(config, fakes)["providers"]
    providers["kserve"] = {
        "kind": "openai_compatible",
        "base_url": f"{fakes['vllm'].url}/v1",
        "self_hosted": True,
    }
    config["models"]["mistral-7b-fast"]["provider"] = "kserve"
    return config


def for_bursts(config: dict) -> dict:
    """Load-aware settings short enough for a test: the engines' load read every 0.25 s, a 2 s
    spill cool-down, and the self-hosted models' priors at the demo model's own speed (a few
    hundred tokens/s here, not an L4's 17), so the estimates start near the truth. No response
    cache: every request of a burst reaches a model."""
    config["load"].update(poll_interval_s=0.25, spill_cool_down_s=2)
    for spec in config["models"].values():
        if spec["provider"] == "self_hosted":
            spec.update(typical_latency_ms=100, typical_tokens_per_s=500)
    config["cache"]["enabled"] = False
    return config


def write_config(config: dict, path: Path) -> str:
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture(scope="session")
def fakes():
    from tests.fakes.anthropic_server import FakeAnthropic
    from tests.fakes.gemini_server import FakeGemini
    from tests.fakes.metadata_server import FakeMetadata
    from tests.fakes.openai_server import FakeOpenAI

    servers = {
        "openai": FakeOpenAI(api_key=FAKE_ENV["TEST_OPENAI_KEY"]),
        "vllm": FakeOpenAI(api_key=None, name="fake-vllm"),
        "anthropic": FakeAnthropic(api_key=FAKE_ENV["TEST_ANTHROPIC_KEY"]),
        "gemini": FakeGemini(),
        "metadata": FakeMetadata(project=FAKE_ENV["TEST_GCP_PROJECT"]),
    }
    for server in servers.values():
        server.start()
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="session")
def cluster(fakes, tmp_path_factory):
    """Ray plus Serve's HTTP proxy; the fakes' keys and metadata host are in every replica's env."""
    import ray
    from ray import serve

    from deployments.run_local import descendants, kill_leftovers, use_private_auth

    for var in (*CLOUD_KEY_VARS, "RAY_ADDRESS"):  # the default config's key variables stay unset everywhere
        os.environ.pop(var, None)
    log_dir = tmp_path_factory.mktemp("logs")
    CLUSTER["log_file"] = log_dir / "router.jsonl"
    env = {
        **FAKE_ENV,
        **fakes["metadata"].env(),
        "HYBRID_ROUTER_STATE_DIR": os.environ["HYBRID_ROUTER_STATE_DIR"],
        "ROUTER_LOG_DIR": str(log_dir),
    }
    port = free_port()
    CLUSTER["metrics_port"] = free_port()
    # Metrics reach the port within a second.
    os.environ["RAY_metrics_report_interval_ms"] = "1000"  # noqa: SIM112 - Ray's own (lower-case) name
    os.environ.update(local_env())  # the Serve ingress mode `make run` and the RayService use
    use_private_auth()
    # HAProxy's stats and metrics ports too: a `make run` on this machine holds 8404 and 9101.
    os.environ["RAY_SERVE_HAPROXY_STATS_PORT"] = str(free_port())
    os.environ["RAY_SERVE_HAPROXY_METRICS_PORT"] = str(free_port())
    temp_dir = tempfile.mkdtemp(prefix="hr-test-ray-")  # short: Ray's socket paths live in it
    before = {p.pid for p in descendants()}  # the fakes' processes, if any, are not the cluster's
    node_id = None
    try:
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            _temp_dir=temp_dir,
            runtime_env={"env_vars": env},
            _metrics_export_port=CLUSTER["metrics_port"],
        )
        node_id = ray.get_runtime_context().get_node_id()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield f"http://127.0.0.1:{port}"
    finally:
        started = descendants(before)
        try:
            if ray.is_initialized():
                serve.shutdown()
                ray.shutdown()
        finally:
            kill_leftovers(started, node_id)
            shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def metrics_url(cluster) -> str:
    """Ray's metrics port, where every replica's router_* series are exported."""
    return f"http://127.0.0.1:{CLUSTER['metrics_port']}"


@pytest.fixture(scope="session")
def router_url(cluster, tmp_path_factory):
    from ray import serve

    from deployments.builder import build_app

    tmp = tmp_path_factory.mktemp("router")
    path = write_config(for_this_machine(default_config(), tmp), tmp / "router.yaml")
    serve.run(build_app({"config_path": path}), name="router", route_prefix="/")
    _wait_healthy(cluster)
    return cluster


@pytest.fixture(scope="session")
def cloud_url(cluster, fakes, tmp_path_factory):
    from ray import serve

    from deployments.builder import build_app

    tmp = tmp_path_factory.mktemp("cloud")
    path = write_config(with_fakes(for_this_machine(default_config(), tmp), fakes), tmp / "router.yaml")
    serve.run(build_app({"config_path": path}), name="cloud", route_prefix="/cloud")
    url = f"{cluster}/cloud"
    _wait_healthy(url)
    return url


@pytest.fixture(scope="module")
def burst_url(cluster, fakes, tmp_path_factory):
    """The ``burst`` app, deleted after the module that asked for it (its engine is a third one)."""
    from ray import serve

    from deployments.builder import build_app

    tmp = tmp_path_factory.mktemp("burst")
    config = for_bursts(with_cloud_fakes(for_this_machine(default_config(), tmp), fakes))
    serve.run(
        build_app({"config_path": write_config(config, tmp / "router.yaml")}),
        name="burst",
        route_prefix="/burst",
    )
    url = f"{cluster}/burst"
    _wait_healthy(url)
    yield url
    serve.delete("burst")


def _wait_healthy(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            body = httpx.get(f"{url}/health", timeout=5).json()
            engine_up = body.get("self_hosted_engine", {}).get("ready")
            if engine_up and body["models"]["mistral-7b-instruct"]["available"]:
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not become healthy in time")
