"""Autoscaling and spill-over agree in the GKE profile (docs/operations.md, "Bursts: spill-over and
autoscaling"): the generated serve config carries the chosen Serve autoscaling settings; each vLLM
replica reports as its capacity the target Serve scales on, so the router spills where the
autoscaler wants more replicas; replicas leave only well after traffic has come back to them."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from app.config import ConfigError, parse_config
from app.load.monitor import LoadMonitor
from deployments.configs.generate import GKE_SERVE_CONFIG
from deployments.configs.profiles import router_config
from deployments.llm_options import deployment_names, is_disaggregated, llm_config_dicts
from deployments.vllm_engines import replica_capacity

CHOSEN = {"upscale_delay_s": 15, "downscale_delay_s": 300, "look_back_period_s": 15}


@pytest.fixture(scope="module")
def generated() -> dict[str, Any]:
    """The router config inside the generated gke.yaml, as `serve deploy` and the RayService get it."""
    serve_config = yaml.safe_load(GKE_SERVE_CONFIG.read_text())
    return serve_config["applications"][0]["args"]["config"]


def deployments(config: Any) -> list[tuple[str, dict[str, Any]]]:
    """(logical model, deployment_config) of every vLLM deployment, both sides of a PD pair."""
    out = []
    for model, entry in llm_config_dicts(config).items():
        sides = [entry["prefill"], entry["decode"]] if is_disaggregated(entry) else [entry]
        out += [(model, side["deployment_config"]) for side in sides]
    return out


def test_generated_gke_config_carries_the_chosen_autoscaling(generated):
    config = parse_config(generated, source="gke.yaml")
    found = deployments(config)
    assert {model for model, _ in found} == {"mistral-7b-instruct", "codellama-13b", "mistral-7b-fast"}
    for _model, deployment in found:
        autoscaling = deployment["autoscaling_config"]
        assert {k: autoscaling[k] for k in CHOSEN} == CHOSEN
        # a replica accepts past its target (and queues there) rather than refusing at it
        assert autoscaling["target_ongoing_requests"] < deployment["max_ongoing_requests"]


def test_replicas_leave_only_after_traffic_has_returned(generated):
    config = parse_config(generated, source="gke.yaml")
    cool_down = config.load.spill_cool_down_s
    for _model, deployment in deployments(config):
        autoscaling = deployment["autoscaling_config"]
        # Spill-over stops after its cool-down; the replicas it spilled off are still there.
        assert cool_down < autoscaling["downscale_delay_s"]
        # A short burst is the cloud's to carry; one that outlasts the delay gets a replica.
        assert autoscaling["upscale_delay_s"] < autoscaling["downscale_delay_s"]


def test_replica_capacity_is_the_autoscaling_target(generated):
    """What each vLLM server's ``load()`` reports as its capacity is what Serve scales on; before
    the first report (or when reports stop) the router assumes the same, on the minimum replicas."""
    config = parse_config(generated, source="gke.yaml")
    for model, deployment in deployments(config):
        settings = config.serving.vllm.models[model]
        llm_config = SimpleNamespace(deployment_config=deployment)
        assert replica_capacity(llm_config) == settings.target_ongoing_requests
    pools = {m: names[-1] for m, names in deployment_names(config).items()}  # as the ingress builds them
    board = LoadMonitor(config, pools).board
    for model, pool in pools.items():
        settings = config.serving.vllm.models[model]
        pd = settings.disaggregation
        replicas = pd.decode_replicas if pd else settings.min_replicas
        assert board.configured[pool] == settings.target_ongoing_requests * replicas


def test_a_downscale_delay_within_the_spill_cool_down_is_refused_at_start_up():
    raw = router_config("gke")
    raw["serving"]["vllm"]["models"]["mistral-7b-instruct"]["downscale_delay_s"] = 20
    with pytest.raises(ConfigError) as refused:
        parse_config(raw, source="gke")
    assert [path for path, _ in refused.value.problems] == [
        "serving.vllm.models.mistral-7b-instruct.downscale_delay_s"
    ]
    assert "load.spill_cool_down_s (30 s)" in str(refused.value)
