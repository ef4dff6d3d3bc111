"""The thin client for OpenAI and any OpenAI-compatible server, on the official ``openai`` SDK.

``OpenAIClient`` is the provider's one SDK client (``AsyncOpenAI`` and its connection pool),
shared by all its models; ``OpenAIBackend`` is one logical model on it. The SDK runs on its
aiohttp transport (``DefaultAioHttpClient``), measured much faster than httpx under concurrency
(SDK-NOTES), with SDK retries off: retries and fallbacks are the router's. Every vendor and
transport error is mapped here, at this one boundary, and raised unchained (see
``app.backends``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from app.backends import openai_translate as tr
from app.backends import prompt_cache
from app.backends.cloud import error_for_transport, transport_errors
from app.config import ModelSpec, ProviderSpec, RouterConfig
from app.errors import RouterError, UpstreamError, UpstreamUnavailableError

OPENAI_BASE_URL = "https://api.openai.com/v1"
NO_KEY = "not-needed"  # OpenAI-compatible servers often take no key; the SDK insists on one


class OpenAIClient:
    """One provider's SDK client, shared by its models; built on first use (so it binds to the
    running event loop). ``aclose`` may be called any number of times; a call after it builds a
    fresh client."""

    def __init__(self, provider: ProviderSpec, *, api_key: str | None) -> None:
        self.provider = provider
        self._api_key = api_key or NO_KEY
        self._sdk: Any = None

    def sdk(self) -> Any:
        if self._sdk is None:
            import openai

            self._sdk = openai.AsyncOpenAI(
                api_key=self._api_key,
                base_url=self.provider.base_url or OPENAI_BASE_URL,
                max_retries=0,
                timeout=openai.Timeout(self.provider.timeout_s, connect=self.provider.connect_timeout_s),
                http_client=openai.DefaultAioHttpClient(),
            )
        return self._sdk

    async def aclose(self) -> None:
        sdk, self._sdk = self._sdk, None
        if sdk is not None:
            await sdk.close()


class OpenAIBackend:
    """One logical model behind the ``Backend`` protocol, on ``client`` (its provider's shared
    one) or, when none is given, on a client of its own for ``provider`` and ``api_key``."""

    def __init__(
        self,
        name: str,
        spec: ModelSpec,
        provider: ProviderSpec,
        *,
        api_key: str | None = None,
        client: OpenAIClient | None = None,
    ) -> None:
        self.name = name
        self.spec = spec
        self.provider = provider
        self.native = provider.kind == "openai"
        self.client = client or OpenAIClient(provider, api_key=api_key)
        # A derived prompt_cache_key for prefixes this long, on OpenAI's own API only (what an
        # OpenAI-compatible server does with the field is its own business); None: off.
        self.cache_min_tokens = prompt_cache.threshold(spec, provider) if self.native else None

    def unavailable_reason(self) -> str | None:
        return None

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        kwargs = tr.to_openai(
            request, native=self.native, stream=False, cache_min_tokens=self.cache_min_tokens
        )
        try:
            raw = await self.client.sdk().chat.completions.with_raw_response.create(**kwargs)
            body = raw.http_response.json()
        except Exception as exc:  # noqa: BLE001 - every failure is mapped here
            error = self._error(exc)
        else:
            return tr.from_openai(body, model=request["model"])
        raise error from None  # outside the except: no SDK exception in the chain

    async def stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        kwargs = tr.to_openai(
            request, native=self.native, stream=True, cache_min_tokens=self.cache_min_tokens
        )
        upstream = None
        error: RouterError | None = None
        try:
            upstream = await self.client.sdk().chat.completions.create(**kwargs)
            async for chunk in upstream:
                yield tr.chunk_from_openai(chunk.to_dict(), model=request["model"])
        except Exception as exc:  # noqa: BLE001 - every failure is mapped here
            error = self._error(exc)
        finally:
            # NOTE: closing the SDK stream closes its HTTP response, which is what stops an
            # upstream generation when the client goes away.
            if upstream is not None:
                await upstream.close()
        if error is not None:
            raise error from None  # outside the except: no SDK exception in the chain

    def _error(self, exc: Exception) -> RouterError:
        """The one mapping of SDK, transport and decoding errors."""
        import openai

        if isinstance(exc, RouterError):
            return exc
        if isinstance(exc, openai.APIStatusError):
            try:
                body = exc.response.json()
            except (ValueError, json.JSONDecodeError):
                body = exc.message
            return tr.error_from_openai(self.name, exc.status_code, body, exc.response.headers)
        if isinstance(
            exc, (openai.APIConnectionError, openai.APIResponseValidationError, *transport_errors())
        ):
            return error_for_transport(self.name, exc.__cause__ or exc)
        if isinstance(exc, ValueError):  # a malformed stream event
            return UpstreamUnavailableError(f"{self.name}: malformed response ({type(exc).__name__})")
        return UpstreamError(f"{self.name}: unexpected failure ({type(exc).__name__})")

    async def aclose(self) -> None:
        """Closes the (shared) client; the other models of the provider may close it too."""
        await self.client.aclose()


def make_client(provider: ProviderSpec, env: Mapping[str, str]) -> OpenAIClient:
    """The provider's one client; the key (optional for OpenAI-compatible servers) comes from
    ``env[provider.api_key_env]``."""
    key = env.get(provider.api_key_env) if provider.api_key_env else None
    return OpenAIClient(provider, api_key=key)


def build(
    name: str,
    provider: ProviderSpec,
    config: RouterConfig,
    env: Mapping[str, str],
    client: OpenAIClient | None = None,
) -> OpenAIBackend:
    """The backend for logical model ``name``, on ``client`` (else a client of its own)."""
    client = client or make_client(provider, env)
    return OpenAIBackend(name, config.models[name], provider, client=client)
