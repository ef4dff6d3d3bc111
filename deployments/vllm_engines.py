"""Self-hosted models on GPUs: vLLM through Ray Serve LLM, behind the CPU engine's dict API.

The one module that imports ``ray.serve.llm``, and only inside functions, so importing it needs
no vLLM. The ingress speaks plain dicts to every engine (``chat(request) -> dict`` and
``chat_stream(request)`` yielding ``chat.completion.chunk`` dicts, the last one carrying only
``usage``); the servers here build Ray Serve LLM's ``ChatCompletionRequest`` inside the GPU
replica and run it through ``LLMServer``'s own ``chat``.

Graph per model (``build_vllm_engines``):

- a plain model: ``RouterLLMServer`` (``LLMServer`` + the dict API), deployment
  ``LLMServer:<model>``;
- a disaggregated model: Ray Serve LLM's ``PDPrefillServer`` (``Prefill:<model>``) and
  ``RouterPDDecodeServer`` (``PDDecodeServer`` + the dict API, ``Decode:<model>``), bound to the
  prefill handle exactly as ``build_pd_openai_app`` binds them, without its OpenAI ingress: the
  decode server runs the remote prefill, then decodes locally with the KV cache moved by the
  connector, so the router's handle reaches it with the same dict API.

``RouterLLMServer`` and ``RouterPDDecodeServer`` are module attributes made on first access (they
subclass Ray Serve LLM's servers), so Serve pickles them by reference and a GPU replica rebuilds
them by importing this module.

Errors: a request vLLM refuses (4xx) raises ``ValueError`` (the ingress answers 400), a prompt
over the context window raises ``ContextWindowExceededError`` (400, and the router may still try
a larger-window model), anything else ``RuntimeError`` (502, retried or failed over).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from app.config import RouterConfig
from deployments.llm_options import (
    DECODE_PREFIX,
    PREFILL_PREFIX,
    SERVER_PREFIX,
    is_disaggregated,
    llm_config_dicts,
)

if TYPE_CHECKING:
    from ray.serve import Application

# Lazily made classes: attribute name -> the Ray Serve LLM server class it extends.
SERVER_BASES = {"RouterLLMServer": "LLMServer", "RouterPDDecodeServer": "PDDecodeServer"}


def build_vllm_engines(config: RouterConfig) -> dict[str, Application]:
    """Per self-hosted model, the Serve application whose handle the ingress calls."""
    from ray.serve.llm import LLMConfig, build_llm_deployment

    apps: dict[str, Application] = {}
    for model, entry in llm_config_dicts(config).items():
        if is_disaggregated(entry):
            apps[model] = _build_pd(entry)
        else:
            apps[model] = build_llm_deployment(
                LLMConfig(**entry), name_prefix=SERVER_PREFIX, deployment_cls=server_class("RouterLLMServer")
            )
    return apps


def _build_pd(entry: dict[str, Any]) -> Application:
    """Prefill and decode servers, wired as Ray Serve LLM's ``build_pd_openai_app`` wires them
    (its ``PDServingArgs`` validates the pair and fills in the decode side's NIXL port base)."""
    from ray.llm._internal.serve.serving_patterns.prefill_decode.builder import PDServingArgs
    from ray.serve.llm import build_llm_deployment
    from ray.serve.llm.deployment import PDPrefillServer

    pd = PDServingArgs.model_validate({"prefill_config": entry["prefill"], "decode_config": entry["decode"]})
    prefill = build_llm_deployment(
        pd.prefill_config, name_prefix=PREFILL_PREFIX, deployment_cls=PDPrefillServer
    )
    return build_llm_deployment(
        pd.decode_config,
        name_prefix=DECODE_PREFIX,
        bind_kwargs={"prefill_server": prefill},
        deployment_cls=server_class("RouterPDDecodeServer"),
    )


def server_class(name: str) -> type:
    """``RouterLLMServer`` or ``RouterPDDecodeServer``, made once (imports Ray Serve LLM)."""
    made = globals().get(name)
    if isinstance(made, type):
        return made
    if name not in SERVER_BASES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from ray.serve.llm import deployment

    base = getattr(deployment, SERVER_BASES[name])
    doc = f"{base.__name__} serving the router's dict API (``chat``, ``chat_stream``)."
    cls = type(name, (RouterChatMixin, base), {"__module__": __name__, "__qualname__": name, "__doc__": doc})
    globals()[name] = cls
    return cls


def __getattr__(name: str) -> Any:
    """``RouterLLMServer`` and ``RouterPDDecodeServer`` come into being on first access."""
    if name in SERVER_BASES:
        return server_class(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class RouterChatMixin:
    """The CPU engine's dict API on top of a Ray Serve LLM server (``LLMServer`` or
    ``PDDecodeServer``). ``chat`` still takes Ray's own ``ChatCompletionRequest`` too, so Ray
    Serve LLM's internals calling it keep working."""

    _llm_config: Any  # set by LLMServer
    _router_in_flight = 0  # the router's requests in this replica now (an instance attribute once set)

    async def load(self) -> dict[str, int]:
        """The router's requests in this replica now, and how many it serves at once before they
        queue (the deployment's autoscaling target): read by every ingress replica
        (``app.load``)."""
        return {"in_flight": self._router_in_flight, "capacity": replica_capacity(self._llm_config)}

    async def chat(self, request: Any, raw_request_info: Any = None) -> Any:
        """A ``chat.completion`` dict for a request dict; Ray's generator for Ray's request."""
        if not isinstance(request, dict):
            return await super().chat(request, raw_request_info)  # type: ignore[misc]
        self._router_in_flight += 1
        try:
            results = await super().chat(self.chat_request(request, stream=False))  # type: ignore[misc]
            async with _closing(results):
                async for item in results:
                    for one in _flatten(item):
                        return completion_dict(one)
            raise RuntimeError("the vLLM engine returned no response")
        finally:
            self._router_in_flight -= 1

    async def chat_stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """``chat.completion.chunk`` dicts; the last one carries only ``usage``."""
        self._router_in_flight += 1
        try:
            results = await super().chat(self.chat_request(request, stream=True))  # type: ignore[misc]
            async with _closing(results):
                async for item in results:
                    for one in _flatten(item):
                        for chunk in stream_chunks(one):
                            yield chunk
        finally:
            self._router_in_flight -= 1

    def chat_request(self, request: dict[str, Any], *, stream: bool) -> Any:
        """Ray Serve LLM's ``ChatCompletionRequest`` for a request dict; ``ValueError`` if invalid."""
        from ray.llm._internal.serve.core.ingress.utils import _sanitize_chat_completion_request
        from ray.serve.llm.openai_api_models import ChatCompletionRequest

        body = engine_body(request, self._llm_config.model_id, stream=stream)
        try:
            parsed = ChatCompletionRequest.model_validate(body)
        except ValueError as exc:  # pydantic's ValidationError; plain, so it pickles
            raise ValueError(f"invalid chat request: {_summary(exc)}") from None
        # Materialise pydantic's lazy iterators so the request pickles (a PD decode server sends
        # it on to its prefill deployment), as Ray Serve LLM's own ingress does.
        return _sanitize_chat_completion_request(parsed)


def replica_capacity(llm_config: Any) -> int:
    """Requests one replica serves before they queue: its autoscaling target_ongoing_requests."""
    deployment = getattr(llm_config, "deployment_config", None) or {}
    autoscaling = deployment.get("autoscaling_config") or {}
    target = autoscaling.get("target_ongoing_requests") or deployment.get("max_ongoing_requests") or 1
    return max(1, int(target))


def engine_body(request: dict[str, Any], model_id: str, *, stream: bool) -> dict[str, Any]:
    """The request as vLLM takes it: its served name as ``model``, and on a stream a final usage
    chunk always (the router settles costs from it)."""
    body = dict(request)
    body["model"] = model_id
    body["stream"] = stream
    if stream:
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    else:
        body.pop("stream_options", None)  # vLLM refuses stream_options without stream
    return body


def completion_dict(response: Any) -> dict[str, Any]:
    """A non-streamed answer (``ChatCompletionResponse``) as an OpenAI dict; raises its error."""
    _raise_if_error(response)
    if not hasattr(response, "model_dump"):
        raise RuntimeError(f"the vLLM engine answered with {type(response).__name__}, not a completion")
    body: dict[str, Any] = response.model_dump(mode="json", exclude_none=True)
    for choice in body.get("choices") or []:
        message = choice.get("message")
        if isinstance(message, dict):
            message.setdefault("content", None)  # OpenAI's schema: present, possibly null
            if not message.get("tool_calls"):
                message.pop("tool_calls", None)
    return body


def stream_chunks(item: Any) -> Iterator[dict[str, Any]]:
    """The chunk dicts in one item of an ``LLMServer`` stream: SSE text (``data: {...}``,
    possibly several events), a chunk object, or an error (raised)."""
    _raise_if_error(item)
    if hasattr(item, "model_dump"):
        yield item.model_dump(mode="json", exclude_none=True)
        return
    if not isinstance(item, str):
        raise RuntimeError(f"unexpected item in the vLLM stream: {type(item).__name__}")  # noqa: TRY004
    for line in item.splitlines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if not data or data == "[DONE]":
            continue
        chunk = json.loads(data)
        _raise_if_error(chunk)
        yield chunk


def engine_error(message: str, code: Any) -> Exception:
    """vLLM's error (message, HTTP status) as what the ingress maps: the client's fault is a
    ``ValueError`` (or ``ContextWindowExceededError``), the rest a ``RuntimeError``."""
    from app.backends.cloud import CONTEXT_TOO_LONG
    from app.errors import ContextWindowExceededError

    status = code if isinstance(code, int) else None
    if status is not None and 400 <= status < 500 and status not in (404, 408, 429):
        if CONTEXT_TOO_LONG.search(message):
            return ContextWindowExceededError(f"vLLM: {message}", param="messages")
        return ValueError(message)
    return RuntimeError(f"vLLM engine error ({status or 'no status'}): {message}")


def _raise_if_error(item: Any) -> None:
    """Raise the error an ``ErrorResponse`` (or its JSON, old or new shape) carries."""
    if isinstance(item, dict):
        if isinstance(item.get("error"), dict):
            err = item["error"]
            raise engine_error(str(err.get("message", "")), err.get("code"))
        if item.get("object") == "error":
            raise engine_error(str(item.get("message", "")), item.get("code"))
        return
    error = getattr(item, "error", None)
    if error is not None and not hasattr(item, "choices"):
        raise engine_error(str(getattr(error, "message", error)), getattr(error, "code", None))
    if getattr(item, "object", None) == "error":
        raise engine_error(str(getattr(item, "message", "")), getattr(item, "code", None))


def _flatten(item: Any) -> list[Any]:
    """``LLMServer`` batches stream items into lists; everything else comes one by one."""
    return list(item) if isinstance(item, list) else [item]


def _summary(exc: Exception) -> str:
    """The first few of pydantic's errors (``loc: msg``), else the message's first line."""
    errors = getattr(exc, "errors", None)
    with contextlib.suppress(Exception):
        if callable(errors):
            return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors()[:3])
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@contextlib.asynccontextmanager
async def _closing(results: Any) -> AsyncIterator[Any]:
    """Close the server's generator however the caller leaves (a client gone mid-stream aborts
    the request in vLLM)."""
    try:
        yield results
    finally:
        aclose = getattr(results, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
