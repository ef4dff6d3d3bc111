"""The GKE profile's Ray Serve LLM configs, the deployment names the ingress watches, and the
vLLM servers' dict API, all without vLLM: every config validates as Ray Serve LLM's own
``LLMConfig`` (which imports without vLLM), and the dict API runs on a stand-in server."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from app.config import ConfigError, parse_config
from app.errors import ContextWindowExceededError
from deployments.configs.profiles import router_config
from deployments.llm_options import (
    deployment_names,
    engine_deployment_names,
    is_disaggregated,
    kv_transfer_config,
    llm_config_dicts,
)
from deployments.vllm_engines import RouterChatMixin, completion_dict, engine_body, stream_chunks

LLMConfig = pytest.importorskip("ray.llm._internal.serve.core.configs.llm_config").LLMConfig
PROJECT = Path(__file__).parents[2]
# The delays chosen with spill-over (test_autoscaling.py, docs/operations.md).
BURST_DELAYS = {"upscale_delay_s": 15, "downscale_delay_s": 300, "look_back_period_s": 15}
NIXL = {"kv_connector": "NixlConnector", "kv_role": "kv_both"}


@pytest.fixture(scope="module")
def gke() -> Any:
    return parse_config(router_config("gke"), source="gke")


@pytest.fixture(scope="module")
def dicts(gke: Any) -> dict[str, dict[str, Any]]:
    return llm_config_dicts(gke)


def configs_of(dicts: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(logical model, LLMConfig kwargs) for every deployment, both sides of a PD pair included."""
    out = []
    for model, entry in dicts.items():
        out += (
            [(model, entry[side]) for side in ("prefill", "decode")]
            if is_disaggregated(entry)
            else [(model, entry)]
        )
    return out


def gpu_bundles(config: Any) -> tuple[list[dict[str, float]], str]:
    """The engine's placement bundles and strategy: vLLM's own computation when it is installed,
    else the same rule without it (``bundle_per_worker`` times tensor x pipeline parallel ranks,
    or one GPU bundle per rank by default, each tagged with the accelerator type)."""
    try:
        engine = config.get_engine_config()
        return list(engine.placement_bundles), engine.placement_strategy
    except ImportError:
        from ray.llm._internal.serve.core.configs.accelerators import GPUAccelerator

        assert config.accelerator_config.kind == "gpu"
        kwargs = config.engine_kwargs
        devices = kwargs.get("tensor_parallel_size", 1) * kwargs.get("pipeline_parallel_size", 1)
        group = config.placement_group_config
        if group is None:
            return GPUAccelerator().default_bundles(
                num_devices=devices, accelerator_type_str=config.accelerator_type
            ), "PACK"
        tag = {f"accelerator_type:{config.accelerator_type}": 0.001}
        return [{**group["bundle_per_worker"], **tag} for _ in range(devices)], group["strategy"]


def test_every_config_validates_as_ray_serve_llm_config(dicts):
    assert set(dicts) == {"mistral-7b-instruct", "codellama-13b", "mistral-7b-fast"}
    for model, kwargs in configs_of(dicts):
        config = LLMConfig(**kwargs)
        assert config.model_id == model, "vLLM serves each model under its logical name"
        assert config.accelerator_type == "L4"
        assert config.deployment_config["name"] == model


def test_mistral_runs_on_one_l4(dicts):
    config = LLMConfig(**dicts["mistral-7b-instruct"])
    assert config.model_loading_config.model_source == "mistralai/Mistral-7B-Instruct-v0.3"
    assert config.engine_kwargs == {
        "tensor_parallel_size": 1, "max_model_len": 32768, "gpu_memory_utilization": 0.9,
        # The catalog says Mistral takes tools: tool_choice "auto" needs vLLM's Mistral tool parser.
        "enable_auto_tool_choice": True, "tool_call_parser": "mistral",
    }  # fmt: skip
    assert gpu_bundles(config) == ([{"GPU": 1, "accelerator_type:L4": 0.001}], "PACK")


def test_codellama_spans_two_l4s_with_tensor_parallelism(dicts):
    config = LLMConfig(**dicts["codellama-13b"])
    assert config.engine_kwargs["tensor_parallel_size"] == 2
    assert config.engine_kwargs["max_model_len"] == 16384
    bundles, strategy = gpu_bundles(config)
    assert len(bundles) == 2 and sum(b["GPU"] for b in bundles) == 2
    assert all(b["accelerator_type:L4"] > 0 for b in bundles)
    assert strategy == "STRICT_PACK", "both ranks on one node (a g2-standard-24's two L4s)"


def test_every_deployment_autoscales_with_a_target(gke, dicts):
    for model, kwargs in configs_of(dicts):
        settings = gke.serving.vllm.models[model]
        deployment = LLMConfig(**kwargs).deployment_config
        assert deployment["max_ongoing_requests"] == settings.max_ongoing_requests
        autoscaling = deployment["autoscaling_config"]
        assert autoscaling["target_ongoing_requests"] == settings.target_ongoing_requests
        assert autoscaling["min_replicas"] <= autoscaling["initial_replicas"] <= autoscaling["max_replicas"]
    plain = dicts["mistral-7b-instruct"]["deployment_config"]["autoscaling_config"]
    assert plain == {
        "min_replicas": 1,
        "max_replicas": 4,
        "initial_replicas": 1,
        "target_ongoing_requests": 16,
        **BURST_DELAYS,
    }
    code = dicts["codellama-13b"]["deployment_config"]
    assert code["max_ongoing_requests"] == 32
    assert code["autoscaling_config"] == {
        "min_replicas": 1,
        "max_replicas": 2,
        "initial_replicas": 1,
        "target_ongoing_requests": 8,
        **BURST_DELAYS,
    }


def test_disaggregated_model_has_prefill_and_decode_with_nixl(dicts):
    entry = dicts["mistral-7b-fast"]
    assert is_disaggregated(entry)
    prefill, decode = LLMConfig(**entry["prefill"]), LLMConfig(**entry["decode"])
    assert prefill.model_id == decode.model_id == "mistral-7b-fast"
    for config in (prefill, decode):
        assert config.engine_kwargs["kv_transfer_config"] == NIXL
        assert config.engine_kwargs["max_model_len"] == 32768
        assert config.deployment_config["autoscaling_config"]["target_ongoing_requests"] == 8
        assert config.deployment_config["max_ongoing_requests"] == 32
    bounds = {
        side: {k: c.deployment_config["autoscaling_config"][k] for k in ("min_replicas", "max_replicas")}
        for side, c in (("prefill", prefill), ("decode", decode))
    }
    assert bounds == {
        "prefill": {"min_replicas": 1, "max_replicas": 2},
        "decode": {"min_replicas": 1, "max_replicas": 4},
    }
    assert not is_disaggregated(dicts["mistral-7b-instruct"])


def test_connector_roles():
    assert (
        kv_transfer_config("NixlConnector", "prefill")
        == kv_transfer_config("NixlConnector", "decode")
        == NIXL
    )
    assert kv_transfer_config("LMCacheConnectorV1", "prefill")["kv_role"] == "kv_producer"
    assert kv_transfer_config("LMCacheConnectorV1", "decode")["kv_role"] == "kv_consumer"


def test_quantization_and_extra_engine_arguments_reach_the_engine():
    raw = router_config("gke")
    raw["serving"]["vllm"]["models"]["codellama-13b"].update(
        quantization="awq", engine_kwargs={"enable_prefix_caching": True}
    )
    kwargs = llm_config_dicts(parse_config(raw))["codellama-13b"]["engine_kwargs"]
    assert kwargs["quantization"] == "awq" and kwargs["enable_prefix_caching"] is True
    assert (
        "quantization"
        not in llm_config_dicts(parse_config(router_config("gke")))["mistral-7b-instruct"]["engine_kwargs"]
    )


@pytest.mark.parametrize("key", ["tensor_parallel_size", "served_model_name", "kv_transfer_config"])
def test_engine_kwargs_cannot_override_the_models_own_settings(key):
    raw = router_config("gke")
    raw["serving"]["vllm"]["models"]["mistral-7b-instruct"]["engine_kwargs"] = {key: 2}
    with pytest.raises(ValueError, match=f"mistral-7b-instruct.engine_kwargs: {key}"):
        llm_config_dicts(parse_config(raw))


def test_deployment_names_per_model(gke, dicts):
    names = deployment_names(gke)
    assert names == {
        "mistral-7b-instruct": ["LLMServer:mistral-7b-instruct"],
        "codellama-13b": ["LLMServer:codellama-13b"],
        "mistral-7b-fast": ["Prefill:mistral-7b-fast", "Decode:mistral-7b-fast"],
    }
    assert engine_deployment_names(gke) == [n for model in names for n in names[model]]
    # build_llm_deployment names a deployment name_prefix + deployment_config["name"]
    for model, kwargs in configs_of(dicts):
        assert any(n.endswith(":" + kwargs["deployment_config"]["name"]) for n in names[model])


def test_cpu_profile_watches_the_one_cpu_engine():
    local = parse_config(router_config("local"))
    assert deployment_names(local) == {
        m: ["CPUEngine"] for m in ("mistral-7b-instruct", "codellama-13b", "mistral-7b-fast")
    }
    assert engine_deployment_names(local) == ["CPUEngine"]
    assert llm_config_dicts(local) == {}


def test_a_model_served_elsewhere_is_not_watched():
    raw = router_config("gke")
    raw["providers"]["kserve"] = {
        "kind": "openai_compatible",
        "base_url": "http://kserve/v1",
        "self_hosted": True,
    }
    raw["models"]["mistral-7b-fast"]["provider"] = "kserve"
    del raw["serving"]["vllm"]["models"]["mistral-7b-fast"]
    assert set(deployment_names(parse_config(raw))) == {"mistral-7b-instruct", "codellama-13b"}


def test_vllm_profile_needs_settings_for_every_self_hosted_model():
    raw = router_config("gke")
    del raw["serving"]["vllm"]["models"]["codellama-13b"]
    with pytest.raises(
        ConfigError, match=r"serving\.vllm\.models\.codellama-13b: a self-hosted model needs its vLLM"
    ):
        parse_config(raw)
    no_section = copy.deepcopy(router_config("gke"))
    del no_section["serving"]["vllm"]
    with pytest.raises(ConfigError, match=r"serving\.vllm\.models\.mistral-7b-instruct"):
        parse_config(no_section)


def test_cpu_engine_is_bound_once_for_every_self_hosted_model():
    from deployments.builder import engine_apps

    apps = engine_apps(parse_config(router_config("local")))
    assert set(apps) == {"mistral-7b-instruct", "codellama-13b", "mistral-7b-fast"}
    assert len({id(app) for app in apps.values()}) == 1, "one Application: Serve builds one deployment"


def test_importing_the_vllm_module_imports_neither_ray_serve_llm_nor_vllm():
    code = (
        "import sys, deployments.builder, deployments.vllm_engines\n"
        "bad = [m for m in sys.modules if m.split('.')[0] == 'vllm' or m.startswith('ray.serve.llm')]\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- the dict API of the vLLM servers, on a stand-in for Ray Serve LLM's LLMServer --------------


class FakeError:
    """Ray Serve LLM's ErrorResponse shape: ``.error`` with message, HTTP code and type."""

    def __init__(self, message: str, code: int) -> None:
        self.error = SimpleNamespace(message=message, code=code, type="BadRequestError")


class FakeResponse:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    def model_dump(self, **_: Any) -> dict[str, Any]:
        return copy.deepcopy(self.body)


class FakeServer:
    """What LLMServer.chat returns: an async generator (of batched SSE strings when streaming)."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.requests: list[Any] = []
        self.closed = False

    async def chat(self, request: Any, raw_request_info: Any = None) -> Any:
        self.requests.append(request)

        async def results() -> Any:
            try:
                for item in self.items:
                    yield item
            finally:
                self.closed = True

        return results()


class Server(RouterChatMixin, FakeServer):
    _llm_config = SimpleNamespace(model_id="mistral-7b-instruct")

    def chat_request(self, request: dict[str, Any], *, stream: bool) -> Any:
        return engine_body(request, self._llm_config.model_id, stream=stream)


def sse(*events: Any) -> str:
    return "".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events)


def chunk(content: str) -> dict[str, Any]:
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": content}}]}


USAGE = {
    "object": "chat.completion.chunk",
    "choices": [],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2},
}
ANSWER = {
    "object": "chat.completion",
    "model": "mistral-7b-instruct",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "hi", "tool_calls": []},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}
REQUEST = {"model": "mistralai/Mistral-7B-Instruct-v0.3", "messages": [{"role": "user", "content": "hi"}]}


def test_engine_body_names_the_served_model_and_always_asks_for_usage():
    streamed = engine_body({**REQUEST, "stream_options": {"include_usage": False}}, "m", stream=True)
    assert streamed["model"] == "m" and streamed["stream"] is True
    assert streamed["stream_options"] == {"include_usage": True}
    plain = engine_body(
        {**REQUEST, "stream": True, "stream_options": {"include_usage": True}}, "m", stream=False
    )
    assert plain["stream"] is False and "stream_options" not in plain


async def test_chat_returns_the_completion_as_a_dict():
    server = Server([FakeResponse(ANSWER)])
    answer = await server.chat(dict(REQUEST))
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "hi"}
    assert answer["usage"]["total_tokens"] == 4
    assert server.requests[0]["model"] == "mistral-7b-instruct" and server.requests[0]["stream"] is False
    assert server.closed


async def test_chat_with_rays_own_request_goes_to_the_server_unchanged():
    server = Server([FakeResponse(ANSWER)])
    native = SimpleNamespace(model="mistral-7b-instruct")
    results = await server.chat(native, None)
    assert [item.body async for item in results] == [ANSWER]
    assert server.requests == [native]


async def test_chat_stream_yields_chunk_dicts_ending_with_usage():
    batches = [[sse(chunk("Hel"))], [sse(chunk("lo")), sse(USAGE, "[DONE]")]]
    server = Server(batches)
    chunks = [c async for c in server.chat_stream(dict(REQUEST))]
    assert [c["choices"][0]["delta"]["content"] for c in chunks[:-1]] == ["Hel", "lo"]
    assert chunks[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 2} and chunks[-1]["choices"] == []
    assert server.requests[0]["stream_options"] == {"include_usage": True}


async def test_a_stream_left_early_closes_the_servers_generator():
    server = Server([[sse(chunk("a"))], [sse(chunk("b"))], [sse(USAGE)]])
    stream = server.chat_stream(dict(REQUEST))
    assert (await stream.__anext__())["choices"][0]["delta"]["content"] == "a"
    await stream.aclose()
    assert server.closed


async def test_engine_errors_map_onto_what_the_ingress_expects():
    with pytest.raises(ValueError, match="temperature must be"):
        await Server([FakeError("temperature must be >= 0", 400)]).chat(dict(REQUEST))
    with pytest.raises(ContextWindowExceededError):
        await Server([FakeError("This model's maximum context length is 32768 tokens.", 400)]).chat(
            dict(REQUEST)
        )
    with pytest.raises(RuntimeError, match="500"):
        await Server([FakeError("engine dead", 500)]).chat(dict(REQUEST))
    with pytest.raises(ValueError, match="bad"):  # an error before the stream starts
        [c async for c in Server([[FakeError("bad", 422)]]).chat_stream(dict(REQUEST))]


def test_an_error_event_mid_stream_raises():
    error = {"error": {"message": "boom", "type": "InternalServerError", "code": 500}}
    events = stream_chunks(sse(chunk("a"), error, "[DONE]"))
    assert next(events)["choices"][0]["delta"]["content"] == "a"
    with pytest.raises(RuntimeError, match="boom"):
        next(events)
    with pytest.raises(ValueError, match="old shape"):
        list(stream_chunks(sse({"object": "error", "message": "old shape", "code": 400})))


def test_completion_dict_keeps_null_content_and_drops_empty_tool_calls():
    body = copy.deepcopy(ANSWER)
    body["choices"][0]["message"] = {"role": "assistant", "tool_calls": [{"id": "x"}]}
    message = completion_dict(FakeResponse(body))["choices"][0]["message"]
    assert message == {"role": "assistant", "tool_calls": [{"id": "x"}], "content": None}


def test_server_classes_are_lazy_module_attributes():
    from deployments import vllm_engines

    with pytest.raises(AttributeError):
        vllm_engines.NotAServer
    assert "RouterLLMServer" not in vars(vllm_engines)


# --- the ingress on the vLLM profile: one handle per model, health per model's deployments ------


class FakeHandle:
    def options(self, **_: Any) -> FakeHandle:
        return self


class FakeHealth:
    def __init__(self, reasons: dict[str, str]) -> None:
        self.reasons = reasons

    def reason(self, deployment: str) -> str | None:
        return self.reasons.get(deployment)


@pytest.fixture
def vllm_ingress():
    from deployments.ingress import RouterIngress

    raw = router_config("gke")
    raw["ledger"], raw["cache"] = {"backend": "sqlite"}, {"backend": "memory"}
    handles = {
        "mistral-7b-instruct": FakeHandle(),
        "mistral-7b-fast": FakeHandle(),
    }  # codellama: not deployed
    ingress = RouterIngress.func_or_class.__mro__[1](raw, handles)
    ingress.health.stop()
    yield ingress


async def test_ingress_health_follows_each_models_own_deployments(vllm_ingress):
    assert vllm_ingress.watched == {
        "mistral-7b-instruct": ["LLMServer:mistral-7b-instruct"],
        "mistral-7b-fast": ["Prefill:mistral-7b-fast", "Decode:mistral-7b-fast"],
    }
    assert sorted(vllm_ingress.health.deployments) == sorted(
        ["LLMServer:mistral-7b-instruct", "Prefill:mistral-7b-fast", "Decode:mistral-7b-fast"]
    )
    down = "deployment Decode:mistral-7b-fast has no running replica"
    vllm_ingress.health = FakeHealth({"Decode:mistral-7b-fast": down})
    assert vllm_ingress.service.availability("mistral-7b-fast") == down
    assert vllm_ingress.service.availability("mistral-7b-instruct") is None
    assert vllm_ingress.service.availability("codellama-13b") == "no self-hosted engine is deployed"
    extra = await vllm_ingress._health_extra()
    engine = extra["self_hosted_engine"]
    assert engine["engine"] == "vllm" and engine["ready"] is False
    assert engine["models"]["mistral-7b-instruct"] == {
        "ready": True,
        "deployments": {"LLMServer:mistral-7b-instruct": "up"},
    }
    assert engine["models"]["mistral-7b-fast"]["deployments"] == {
        "Prefill:mistral-7b-fast": "up",
        "Decode:mistral-7b-fast": down,
    }
