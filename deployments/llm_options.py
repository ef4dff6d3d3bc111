"""Ray Serve LLM options for the self-hosted models, as plain dicts (imports neither Ray Serve
LLM nor vLLM, so the CPU profile, the unit tests and the manifest generator can use it).

``llm_config_dicts(config)`` maps each logical model of ``serving.vllm.models`` to the keyword
arguments of Ray Serve LLM's ``LLMConfig``; a model with ``disaggregation`` maps to a prefill
and a decode config instead::

    {
        "mistral-7b-instruct": {"model_loading_config": {...}, "accelerator_type": "L4",
                                "engine_kwargs": {...}, "deployment_config": {...}},
        "mistral-7b-fast": {"prefill": {<LLMConfig kwargs>}, "decode": {<LLMConfig kwargs>}},
    }

Every config's ``model_id`` is the logical model name (vLLM serves it under that name); a model
on several GPUs keeps them on one node (``STRICT_PACK``); every deployment autoscales with
``target_ongoing_requests`` set (Ray Serve LLM's default target is effectively infinite, so it
would never scale up); and each deployment's name is fixed here: ``deployment_names`` tells the
ingress which deployments to watch for each model.
"""

from __future__ import annotations

from typing import Any

from app.config import RouterConfig, VLLMModelSettings

# Serve deployment names are PREFIX + logical model (build_llm_deployment's ``name_prefix`` plus
# the ``name`` in ``deployment_config``). Prefill/Decode are Ray Serve LLM's own PD prefixes.
SERVER_PREFIX = "LLMServer:"
PREFILL_PREFIX = "Prefill:"
DECODE_PREFIX = "Decode:"
CPU_ENGINE_DEPLOYMENT = "CPUEngine"  # the CPU profile's one engine deployment (its class name)

# Engine arguments that have their own setting (or that Ray Serve LLM sets itself).
RESERVED_ENGINE_KWARGS = frozenset(
    {
        "model",
        "served_model_name",
        "tensor_parallel_size",
        "max_model_len",
        "gpu_memory_utilization",
        "quantization",
        "kv_transfer_config",
    }
)
# KV connectors whose prefill and decode sides take different roles; the rest use kv_both.
ROLE_SPLIT_CONNECTORS = frozenset({"LMCacheConnectorV1"})

LLMConfigDict = dict[str, Any]


def llm_config_dicts(config: RouterConfig) -> dict[str, dict[str, Any]]:
    """Per self-hosted model, its ``LLMConfig`` kwargs, or ``{"prefill": ..., "decode": ...}``."""
    models = config.serving.vllm.models if config.serving.vllm else {}
    return {name: _model_entry(name, settings) for name, settings in models.items()}


def is_disaggregated(entry: dict[str, Any]) -> bool:
    """Whether an entry of ``llm_config_dicts`` is a prefill/decode pair."""
    return set(entry) == {"prefill", "decode"}


def deployment_names(config: RouterConfig) -> dict[str, list[str]]:
    """Per self-hosted model served in this app, the Serve deployments that must be up for it:
    the CPU engine for every model in the cpu profile; in the vllm profile the model's own
    server, or its prefill and decode servers."""
    in_app = [m for m in config.models if config.provider_of(m).runs_in_this_app]
    if config.serving.engine == "cpu":
        return {m: [CPU_ENGINE_DEPLOYMENT] for m in in_app}
    dicts = llm_config_dicts(config)
    names: dict[str, list[str]] = {}
    for model in in_app:
        entry = dicts.get(model)
        if entry is None:
            continue  # parse_config rejects this; nothing to watch
        if is_disaggregated(entry):
            names[model] = [PREFILL_PREFIX + model, DECODE_PREFIX + model]
        else:
            names[model] = [SERVER_PREFIX + model]
    return names


def engine_deployment_names(config: RouterConfig) -> list[str]:
    """Every engine deployment of this app, each once, in model order."""
    seen: dict[str, None] = {}
    for names in deployment_names(config).values():
        seen.update(dict.fromkeys(names))
    return list(seen)


def kv_transfer_config(connector: str, side: str) -> dict[str, str]:
    """vLLM's ``kv_transfer_config`` for one side (``prefill`` or ``decode``) of a PD pair:
    ``kv_both`` on both sides (Ray Serve LLM's NixlConnector setup), producer/consumer roles for
    connectors that split them."""
    if connector in ROLE_SPLIT_CONNECTORS:
        role = "kv_producer" if side == "prefill" else "kv_consumer"
    else:
        role = "kv_both"
    return {"kv_connector": connector, "kv_role": role}


def _model_entry(name: str, settings: VLLMModelSettings) -> dict[str, Any]:
    clash = sorted(RESERVED_ENGINE_KWARGS & set(settings.engine_kwargs))
    if clash:
        raise ValueError(
            f"serving.vllm.models.{name}.engine_kwargs: {', '.join(clash)} cannot be set there "
            "(use the model's own settings)"
        )
    pd = settings.disaggregation
    if pd is None:
        return _llm_config(name, settings, settings.min_replicas, settings.max_replicas)
    return {
        side: _llm_config(name, settings, low, high, kv_transfer_config(pd.kv_connector, side))
        for side, low, high in (
            ("prefill", pd.prefill_replicas, pd.prefill_max_replicas),
            ("decode", pd.decode_replicas, pd.decode_max_replicas),
        )
    }


def _llm_config(
    name: str,
    settings: VLLMModelSettings,
    min_replicas: int,
    max_replicas: int,
    kv_transfer: dict[str, str] | None = None,
) -> LLMConfigDict:
    engine_kwargs: dict[str, Any] = {
        "tensor_parallel_size": settings.tensor_parallel_size,
        "max_model_len": settings.max_model_len,
        "gpu_memory_utilization": settings.gpu_memory_utilization,
    }
    if settings.quantization:
        engine_kwargs["quantization"] = settings.quantization
    if kv_transfer is not None:
        engine_kwargs["kv_transfer_config"] = kv_transfer
    engine_kwargs.update(settings.engine_kwargs)
    config: LLMConfigDict = {
        "model_loading_config": {"model_id": name, "model_source": settings.model_source},
        "accelerator_type": settings.accelerator_type,
        "engine_kwargs": engine_kwargs,
    }
    devices = settings.tensor_parallel_size * int(settings.engine_kwargs.get("pipeline_parallel_size", 1))
    if devices > 1:
        # One GPU per rank (Ray Serve LLM's default bundles) but all on one node: its default PACK
        # would let the autoscaler split a tensor-parallel group across nodes.
        config["placement_group_config"] = {"bundle_per_worker": {"GPU": 1}, "strategy": "STRICT_PACK"}
    return {
        **config,
        "deployment_config": {
            "name": name,
            "max_ongoing_requests": settings.max_ongoing_requests,
            "autoscaling_config": {
                "min_replicas": min_replicas,
                "max_replicas": max_replicas,
                # At least one replica at start: the ingress routes only to running replicas.
                "initial_replicas": min(max(min_replicas, 1), max_replicas),
                "target_ongoing_requests": settings.target_ongoing_requests,
                "upscale_delay_s": settings.upscale_delay_s,
                "downscale_delay_s": settings.downscale_delay_s,
                "look_back_period_s": settings.look_back_period_s,
            },
        },
    }
