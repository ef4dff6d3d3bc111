"""The vLLM path end to end on one GPU: the GKE graph (Ray Serve LLM's LLMServer behind the
router's ingress) with a small model, driven over HTTP by the official SDK.

Skipped unless vLLM imports and CUDA is available. The model is ``$HYBRID_ROUTER_GPU_TEST_MODEL``
(a Hugging Face id in the local cache, or a local directory of a small chat model with a chat
template), else the router's tiny demo model built locally (no network). One GPU: only
``mistral-7b-instruct`` runs on vLLM; the catalog's other self-hosted models point at an
OpenAI-compatible endpoint that is not there, so routing sees them unavailable.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("vllm")
torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)

import httpx
import openai

pytestmark = pytest.mark.ray

MODEL_ENV = "HYBRID_ROUTER_GPU_TEST_MODEL"
SERVED = "mistral-7b-instruct"
START_TIMEOUT_S = 900  # first start compiles kernels and may build the demo model
HELLO = [{"role": "user", "content": "Hello!"}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def model_source(tmp: Path) -> str:
    if os.environ.get(MODEL_ENV):
        return os.environ[MODEL_ENV]
    from app.engine.demo_model import build_demo_model

    return str(build_demo_model(tmp / "demo-model"))


def accelerator_type() -> str:
    """The GPU type Ray detected on this machine (vLLM's placement bundles ask for it)."""
    import ray

    kinds = [k.split(":", 1)[1] for k in ray.cluster_resources() if k.startswith("accelerator_type:")]
    assert kinds, "Ray detected no accelerator type on this GPU machine"
    return kinds[0]


def gpu_config(source: str, accelerator: str) -> dict[str, Any]:
    from deployments.configs.profiles import router_config

    config = router_config("gke")
    config["providers"]["offline"] = {
        "kind": "openai_compatible",
        "base_url": "http://127.0.0.1:9/v1",
        "self_hosted": True,
    }
    for name in ("codellama-13b", "mistral-7b-fast"):
        config["models"][name]["provider"] = "offline"
    config["serving"]["ingress"] = {"num_replicas": 1, "num_cpus": 0}
    config["serving"]["vllm"]["models"] = {
        SERVED: {
            "model_source": source,
            "accelerator_type": accelerator,
            "tensor_parallel_size": 1,
            "max_model_len": 1024,
            "gpu_memory_utilization": 0.3,
            "min_replicas": 1,
            "max_replicas": 1,
            "target_ongoing_requests": 4,
            "max_ongoing_requests": 16,
            "engine_kwargs": {"enforce_eager": True},
        }
    }
    config["ledger"], config["cache"] = {"backend": "sqlite"}, {"backend": "memory"}
    return config


@pytest.fixture(scope="module")
def router_url(tmp_path_factory):
    import ray
    from ray import serve

    from deployments.builder import build_app

    tmp = tmp_path_factory.mktemp("gpu")
    source = model_source(tmp)
    ray.init(
        include_dashboard=False,
        log_to_driver=False,
        ignore_reinit_error=True,
        runtime_env={"env_vars": {"HYBRID_ROUTER_STATE_DIR": os.environ["HYBRID_ROUTER_STATE_DIR"]}},
    )
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    url = f"http://127.0.0.1:{port}"
    try:
        serve.run(
            build_app({"config": gpu_config(source, accelerator_type())}), name="router", route_prefix="/"
        )
        _wait_ready(url)
        yield url
    finally:
        serve.shutdown()
        ray.shutdown()


def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            body = httpx.get(f"{url}/health", timeout=5).json()
            if body.get("self_hosted_engine", {}).get("ready") and body["models"][SERVED]["available"]:
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(2)
    raise RuntimeError(f"{SERVED} did not come up on vLLM in time")


@pytest.fixture(scope="module")
def sdk(router_url):
    return openai.OpenAI(base_url=f"{router_url}/v1", api_key="not-needed", max_retries=0)


def test_health_reports_the_vllm_deployment(router_url):
    engine = httpx.get(f"{router_url}/health", timeout=10).json()["self_hosted_engine"]
    assert engine["engine"] == "vllm"
    assert engine["models"][SERVED]["deployments"] == {f"LLMServer:{SERVED}": "up"}


def test_chat_through_the_ingress(sdk):
    raw = sdk.chat.completions.with_raw_response.create(model=SERVED, messages=HELLO, max_tokens=8)
    completion = raw.parse()
    assert raw.headers["x-router-provider"] == "self_hosted"
    assert completion.model == SERVED
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage.prompt_tokens > 0
    assert 0 < completion.usage.completion_tokens <= 8


def test_stream_through_the_ingress_ends_with_usage(sdk):
    chunks = list(
        sdk.chat.completions.create(
            model=SERVED, messages=HELLO, max_tokens=8, stream=True, stream_options={"include_usage": True}
        )
    )
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert content, "the stream carries tokens"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] in (
        ["stop"],
        ["length"],
    )
    assert chunks[-1].usage is not None and 0 < chunks[-1].usage.completion_tokens <= 8
    assert {c.model for c in chunks} == {SERVED}


def test_a_request_vllm_refuses_is_a_400(sdk):
    # The catalog says 32k tokens; this engine takes 1024, so vLLM itself refuses the request.
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model=SERVED, messages=HELLO, max_tokens=4000)


# Issue #14: vLLM gets tools, response_format and logprobs whole and honours them itself.
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 20}},
    "required": ["city"],
    "additionalProperties": False,
}


def test_response_format_json_schema_is_honoured(sdk):
    import json

    fmt = {"type": "json_schema", "json_schema": {"name": "weather", "schema": WEATHER, "strict": True}}
    answer = sdk.chat.completions.create(model=SERVED, messages=HELLO, max_tokens=64, response_format=fmt)
    assert set(json.loads(answer.choices[0].message.content)) == {"city"}


def test_logprobs_are_honoured(sdk):
    answer = sdk.chat.completions.create(
        model=SERVED, messages=HELLO, max_tokens=4, logprobs=True, top_logprobs=2
    )
    content = answer.choices[0].logprobs.content
    assert content and all(len(t.top_logprobs) == 2 for t in content)


def test_forced_tool_call_is_honoured(sdk):
    import json

    tool = {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}
    answer = sdk.chat.completions.create(
        model=SERVED,
        messages=HELLO,
        max_tokens=64,
        tools=[tool],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    call = answer.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and set(json.loads(call.function.arguments)) == {"city"}
