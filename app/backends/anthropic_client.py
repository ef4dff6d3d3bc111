"""The thin client for Anthropic's Messages API, on the official ``anthropic`` SDK.

``AnthropicClient`` is the provider's one SDK client (``AsyncAnthropic`` and its connection
pool), shared by all its models; ``AnthropicBackend`` is one logical model on it. Translation
lives in ``anthropic_translate``; this module makes the call and maps every vendor and
transport error at this one boundary, raised unchained (see ``app.backends``). The SDK is built
on first use (so it binds to the running event loop), on its aiohttp transport when installed
(``anthropic[aiohttp]``, measured much faster than httpx under concurrency, see SDK-NOTES),
with SDK retries off: retries and fallbacks are the router's.

NOTE: anthropic 2.x runs on ``httpx2``, not ``httpx``: its timeouts are ``anthropic.Timeout``
(httpx2's) and a stream cut surfaces as an ``httpx2``/``aiohttp`` error the SDK does not wrap.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

from app.backends import anthropic_translate as tr
from app.backends import prompt_cache
from app.backends.cloud import error_for_transport, transport_errors
from app.config import ModelSpec, ProviderSpec, RouterConfig
from app.errors import RouterError, UpstreamError, UpstreamUnavailableError

# Passed explicitly so that ANTHROPIC_BASE_URL in the environment cannot redirect the router.
ANTHROPIC_BASE_URL = "https://api.anthropic.com"


class AnthropicClient:
    """One provider's SDK client, shared by its models; built on first use (so it binds to the
    running event loop). ``aclose`` may be called any number of times; a call after it builds a
    fresh client."""

    def __init__(self, provider: ProviderSpec, *, api_key: str) -> None:
        self.provider = provider
        self._api_key = api_key
        self._sdk: Any = None

    def sdk(self) -> Any:
        if self._sdk is None:
            import anthropic

            self._sdk = anthropic.AsyncAnthropic(
                api_key=self._api_key,
                base_url=self.provider.base_url or ANTHROPIC_BASE_URL,
                max_retries=0,
                timeout=self.timeout(),
                http_client=_aiohttp_client(),
            )
        return self._sdk

    def timeout(self) -> Any:
        import anthropic

        return anthropic.Timeout(self.provider.timeout_s, connect=self.provider.connect_timeout_s)

    def mask_key(self, error: RouterError) -> RouterError:
        """``error`` with the API key masked, should the provider have quoted it whole."""
        if self._api_key and self._api_key in error.message:
            error.message = error.message.replace(self._api_key, "***")
            error.args = (error.message,)
        return error

    async def aclose(self) -> None:
        sdk, self._sdk = self._sdk, None
        if sdk is not None:
            await sdk.close()


class AnthropicBackend:
    """One Anthropic model behind the ``Backend`` protocol, on ``client`` (its provider's shared
    one) or, when none is given, on a client of its own for ``provider`` and ``api_key``.

    ``complete``/``stream`` raise only ``RouterError``s; ``timeout_s`` bounds a whole
    ``complete`` call and, for a stream, the wait for its first byte and for each later read.
    Closing (or cancelling) a stream closes the upstream HTTP response, which stops generation.
    """

    def __init__(
        self,
        name: str,
        spec: ModelSpec,
        provider: ProviderSpec,
        *,
        api_key: str | None = None,
        client: AnthropicClient | None = None,
    ) -> None:
        self.name = name
        self.spec = spec
        self.provider = provider
        self.client = client or AnthropicClient(provider, api_key=api_key or "")
        # Breakpoints on prefixes at least this long (estimated tokens); None: caching is off.
        self.cache_min_tokens = prompt_cache.threshold(spec, provider)

    def unavailable_reason(self) -> str | None:
        return None

    def _kwargs(self, request: dict[str, Any]) -> dict[str, Any]:
        kwargs = tr.to_anthropic(
            request, max_output_tokens=self.spec.max_output_tokens, cache_min_tokens=self.cache_min_tokens
        )
        # NOTE: an explicit per-call timeout also stops the SDK from refusing large non-streaming
        # max_tokens ("Streaming is required...") when the client timeout equals its default.
        kwargs["timeout"] = self.client.timeout()
        return kwargs

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        """A ``chat.completion`` dict whose ``model`` is ``request["model"]``."""
        kwargs = self._kwargs(request)
        try:
            async with asyncio.timeout(self.provider.timeout_s):
                message = await self.client.sdk().messages.create(**kwargs)
            body = message.model_dump()
        except Exception as exc:  # noqa: BLE001 - every failure is mapped here
            error = self._error(exc)
        else:
            return tr.from_anthropic(body, model=request["model"])
        raise error from None  # outside the except: no SDK exception in the chain

    async def stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """``chat.completion.chunk`` dicts, ending with a usage chunk (``choices: []``)."""
        kwargs = self._kwargs(request)
        translator = tr.StreamTranslator(request["model"], provider=self.name)
        upstream = None
        error: RouterError | None = None
        try:
            async with asyncio.timeout(self.provider.timeout_s):
                upstream = await self.client.sdk().messages.create(**kwargs, stream=True)
            async for event in upstream:
                for chunk in translator.feed(event.model_dump()):
                    yield chunk
            if not translator.done:
                raise UpstreamUnavailableError(f"{self.name}: the stream ended before message_stop")
        except Exception as exc:  # noqa: BLE001 - every failure is mapped here
            error = self._error(exc)
        finally:
            # NOTE: runs on normal end, on error, on aclose() and on cancellation alike.
            if upstream is not None:
                await upstream.close()
        if error is not None:
            raise error from None  # outside the except: no SDK exception in the chain

    def _error(self, exc: Exception) -> RouterError:
        """The one mapping of SDK, transport and decoding errors; never shows the API key."""
        import anthropic

        if isinstance(exc, RouterError):
            error = exc
        elif isinstance(exc, anthropic.APIStatusError):
            body = exc.body if exc.body is not None else exc.response.text
            error = tr.error_from_anthropic(self.name, exc.status_code, body, exc.response.headers)
        elif isinstance(exc, (anthropic.APIConnectionError, *transport_errors())):
            error = error_for_transport(self.name, exc)
        elif isinstance(exc, ValueError):  # a stream event that is not JSON
            error = UpstreamUnavailableError(f"{self.name}: malformed response ({type(exc).__name__})")
        else:
            error = UpstreamError(f"{self.name}: unexpected failure ({type(exc).__name__})")
        return self.client.mask_key(error)

    async def aclose(self) -> None:
        """Closes the (shared) client; the other models of the provider may close it too."""
        await self.client.aclose()


def _aiohttp_client() -> Any:
    """The SDK's aiohttp transport when the ``aiohttp`` extra is installed, else None (httpx2)."""
    import anthropic

    try:
        import aiohttp  # noqa: F401

        return anthropic.DefaultAioHttpClient()
    except (ImportError, RuntimeError):
        return None


def make_client(provider: ProviderSpec, env: Mapping[str, str] | None = None) -> AnthropicClient:
    """The provider's one client; the key comes from ``env[provider.api_key_env]`` (a
    ``ValueError`` naming the variable, never the key, when it is not set)."""
    env = os.environ if env is None else env
    key = env.get(provider.api_key_env) if provider.api_key_env else None
    if not key:
        raise ValueError(f"{provider.api_key_env or 'api_key_env'} is not set")
    return AnthropicClient(provider, api_key=key)


def build(
    name: str,
    provider: ProviderSpec,
    config: RouterConfig,
    env: Mapping[str, str] | None = None,
    client: AnthropicClient | None = None,
) -> AnthropicBackend:
    """The backend for logical model ``name``, on ``client`` (else a client of its own)."""
    client = client or make_client(provider, env)
    return AnthropicBackend(name, config.models[name], provider, client=client)
