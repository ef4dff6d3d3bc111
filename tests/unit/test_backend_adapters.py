"""What every adapter shares: one layout, one ``error_from_<provider>`` signature, one
error-chaining rule (Ray's handle included). The SDK paths are in each adapter's backend tests."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.backends import anthropic_translate, gemini_translate, openai_translate
from app.backends.registry import CLOUD_ADAPTERS
from app.backends.serve_handle import ServeHandleBackend
from app.errors import RouterError, UpstreamRateLimitedError, UpstreamUnavailableError
from tests.fakes.adapters import assert_unchained

TRANSLATORS = {
    "openai": (openai_translate, openai_translate.error_from_openai),
    "anthropic": (anthropic_translate, anthropic_translate.error_from_anthropic),
    "gemini": (gemini_translate, gemini_translate.error_from_gemini),
}


def test_every_translator_maps_errors_with_the_same_signature() -> None:
    signatures = {name: inspect.signature(fn) for name, (_, fn) in TRANSLATORS.items()}
    assert len({str(s) for s in signatures.values()}) == 1, signatures
    assert list(signatures["openai"].parameters) == ["provider", "status", "body", "headers"]
    for _, error_from in TRANSLATORS.values():
        error = error_from("m", 429, {"error": {"message": "slow down"}}, {"retry-after": "2"})
        assert isinstance(error, UpstreamRateLimitedError) and error.retry_after == 2.0
        assert error.message.startswith("m: ")
        assert isinstance(error_from("m", 503, None), UpstreamUnavailableError)  # headers optional


@pytest.mark.parametrize("module", sorted(set(CLOUD_ADAPTERS.values())))
def test_every_client_module_has_the_same_shape(module: str) -> None:
    client = importlib.import_module(module)
    provider = module.rsplit(".", 1)[1].removesuffix("_client")
    prefix = {"openai": "OpenAI", "anthropic": "Anthropic", "gemini": "Gemini"}[provider]
    for name in (f"{prefix}Client", f"{prefix}Backend", "make_client", "build"):
        assert hasattr(client, name), f"{module} has no {name}"
    assert list(inspect.signature(client.build).parameters) == ["name", "provider", "config", "env", "client"]
    # the translator is the one translation module the client imports
    assert client.tr is importlib.import_module(f"app.backends.{provider}_translate")
    source = inspect.getsource(client)
    assert f"backends.{provider}_request" not in source and f"backends.{provider}_response" not in source


# --- Ray's errors, through the Serve handle backend ------------------------------------------------
class ActorDiedError(Exception):
    """Stands in for Ray's: its text embeds the replica's traceback, which can quote a request."""


class RayTaskError(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"Traceback (most recent call last): ... {cause!r}")
        self.cause = cause


class _Method:
    def __init__(self, call: Any) -> None:
        self.remote = call


class FailingHandle:
    """A deployment handle whose calls fail with ``error`` (a stream after one chunk)."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.chat = _Method(self._chat)
        self.chat_stream = _Method(self._chat_stream)

    def options(self, **_kwargs: Any) -> FailingHandle:
        return self

    async def _chat(self, request: dict[str, Any]) -> dict[str, Any]:
        raise self.error

    async def _chat_stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        yield {"choices": []}
        raise self.error


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ActorDiedError("the replica died while handling 'my secret prompt'"), UpstreamUnavailableError),
        (
            RayTaskError(UpstreamRateLimitedError("claude: slow down", retry_after=3)),
            UpstreamRateLimitedError,
        ),
    ],
    ids=["ray", "wrapped-router-error"],
)
async def test_a_mapped_ray_error_carries_no_ray_exception(
    error: Exception, expected: type[RouterError], stream: bool
) -> None:
    backend = ServeHandleBackend("local", FailingHandle(error))
    with pytest.raises(RouterError) as exc:
        if stream:
            async for _ in backend.stream({"messages": []}):
                pass
        else:
            await backend.complete({"messages": []})
    assert type(exc.value) is expected
    assert_unchained(exc.value)
    assert "secret prompt" not in str(exc.value)
