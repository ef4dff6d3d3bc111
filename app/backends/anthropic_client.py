"""The thin client for Anthropic's Messages API, on the official ``anthropic`` SDK.

Translation lives in ``anthropic_translate``; this module makes the call and maps every vendor
and transport error at this one boundary. The SDK is built on first use (so it binds to the
running event loop), on its aiohttp transport when installed (``anthropic[aiohttp]``, measured
much faster than httpx under concurrency, see SDK-NOTES), with SDK retries off: retries and
fallbacks are the router's.

NOTE: anthropic 2.x runs on ``httpx2``, not ``httpx``: its timeouts are ``anthropic.Timeout``
(httpx2's) and a stream cut surfaces as an ``httpx2``/``aiohttp`` error the SDK does not wrap.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

from app.backends import anthropic_translate as tr
from app.backends.cloud import error_for_transport, transport_errors
from app.config import ModelSpec, ProviderSpec, RouterConfig
from app.errors import RouterError, UpstreamError, UpstreamUnavailableError

# Passed explicitly so that ANTHROPIC_BASE_URL in the environment cannot redirect the router.
ANTHROPIC_BASE_URL = "https://api.anthropic.com"


class AnthropicBackend:
    """One Anthropic model behind the ``Backend`` protocol.

    ``complete``/``stream`` raise only ``RouterError``s; ``timeout_s`` bounds a whole
    ``complete`` call and, for a stream, the wait for its first byte and for each later read.
    Closing (or cancelling) a stream closes the upstream HTTP response, which stops generation.
    """

    def __init__(self, name: str, spec: ModelSpec, provider: ProviderSpec, *, api_key: str) -> None:
        self.name = name
        self.spec = spec
        self.provider = provider
        self._api_key = api_key
        self._client: Any = None

    def unavailable_reason(self) -> str | None:
        return None

    def _sdk(self) -> Any:
        if self._client is None:
            import anthropic

            self._client = anthropic.AsyncAnthropic(
                api_key=self._api_key,
                base_url=self.provider.base_url or ANTHROPIC_BASE_URL,
                max_retries=0,
                timeout=self._timeout(),
                http_client=_aiohttp_client(),
            )
        return self._client

    def _timeout(self) -> Any:
        import anthropic

        return anthropic.Timeout(self.provider.timeout_s, connect=self.provider.connect_timeout_s)

    def _kwargs(self, request: dict[str, Any]) -> dict[str, Any]:
        kwargs = tr.to_anthropic(request, max_output_tokens=self.spec.max_output_tokens)
        # NOTE: an explicit per-call timeout also stops the SDK from refusing large non-streaming
        # max_tokens ("Streaming is required...") when the client timeout equals its default.
        kwargs["timeout"] = self._timeout()
        return kwargs

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        """A ``chat.completion`` dict whose ``model`` is ``request["model"]``."""
        kwargs = self._kwargs(request)
        try:
            async with asyncio.timeout(self.provider.timeout_s):
                message = await self._sdk().messages.create(**kwargs)
            body = message.model_dump()
        except Exception as exc:  # noqa: BLE001 - every failure is mapped here
            raise self._error(exc) from None
        return tr.from_anthropic(body, model=request["model"])

    async def stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """``chat.completion.chunk`` dicts, ending with a usage chunk (``choices: []``)."""
        kwargs = self._kwargs(request)
        translator = tr.StreamTranslator(request["model"])
        upstream = None
        try:
            async with asyncio.timeout(self.provider.timeout_s):
                upstream = await self._sdk().messages.create(**kwargs, stream=True)
            async for event in upstream:
                for chunk in translator.feed(event.model_dump()):
                    yield chunk
            if not translator.done:
                raise UpstreamUnavailableError(f"{self.name}: the stream ended before message_stop")
        except Exception as exc:  # noqa: BLE001 - every failure is mapped here
            raise self._error(exc) from None
        finally:
            # NOTE: runs on normal end, on error, on aclose() and on cancellation alike.
            if upstream is not None:
                await upstream.close()

    def _error(self, exc: Exception) -> RouterError:
        """The one mapping of SDK, transport and decoding errors; never shows the API key.

        ``from None`` at the raise sites keeps SDK exceptions (which carry the request and
        its headers) out of the chain that reaches logs.
        """
        import anthropic

        if isinstance(exc, RouterError):
            error = exc
        elif isinstance(exc, anthropic.APIStatusError):
            body = exc.body if exc.body is not None else exc.response.text
            error = tr.error_from_anthropic(exc.status_code, body, exc.response.headers, provider=self.name)
        elif isinstance(exc, (anthropic.APIConnectionError, *transport_errors())):
            error = error_for_transport(self.name, exc)
        elif isinstance(exc, ValueError):  # a stream event that is not JSON
            error = UpstreamUnavailableError(f"{self.name}: malformed response ({type(exc).__name__})")
        else:
            error = UpstreamError(f"{self.name}: unexpected failure ({type(exc).__name__})")
        if self._api_key and self._api_key in error.message:
            error.message = error.message.replace(self._api_key, "***")
            error.args = (error.message,)
        return error

    async def aclose(self) -> None:
        """Closes the SDK client and its connection pool; a later call builds a new one."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()


def _aiohttp_client() -> Any:
    """The SDK's aiohttp transport when the ``aiohttp`` extra is installed, else None (httpx2)."""
    import anthropic

    try:
        import aiohttp  # noqa: F401

        return anthropic.DefaultAioHttpClient()
    except (ImportError, RuntimeError):
        return None


def build(
    name: str, provider: ProviderSpec, config: RouterConfig, env: Mapping[str, str] | None = None
) -> AnthropicBackend:
    """The backend for logical model ``name``; the key comes from ``env[provider.api_key_env]``."""
    env = os.environ if env is None else env
    key = env.get(provider.api_key_env) if provider.api_key_env else None
    if not key:
        raise ValueError(f"{name}: {provider.api_key_env or 'api_key_env'} is not set")
    return AnthropicBackend(name, config.models[name], provider, api_key=key)
