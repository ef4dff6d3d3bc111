"""The thin client for OpenAI and any OpenAI-compatible server, on the official ``openai`` SDK.

The SDK runs on its aiohttp transport (``DefaultAioHttpClient``), measured much faster than
httpx under concurrency (SDK-NOTES), with SDK retries off: retries and fallbacks are the
router's. Every vendor and transport error is mapped here, at this one boundary.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from app.backends import openai_translate as tr
from app.backends.cloud import error_for_transport, transport_errors
from app.config import ModelSpec, ProviderSpec, RouterConfig
from app.errors import RouterError, UpstreamError, UpstreamUnavailableError

OPENAI_BASE_URL = "https://api.openai.com/v1"
NO_KEY = "not-needed"  # OpenAI-compatible servers often take no key; the SDK insists on one


class OpenAIBackend:
    def __init__(self, name: str, spec: ModelSpec, provider: ProviderSpec, *, api_key: str | None) -> None:
        self.name = name
        self.spec = spec
        self.provider = provider
        self.native = provider.kind == "openai"
        self._api_key = api_key or NO_KEY
        self._client: Any = None

    def unavailable_reason(self) -> str | None:
        return None

    def _sdk(self) -> Any:
        """The SDK client, made on first use so it binds to the running event loop."""
        if self._client is None:
            import httpx
            import openai

            self._client = openai.AsyncOpenAI(
                api_key=self._api_key,
                base_url=self.provider.base_url or OPENAI_BASE_URL,
                max_retries=0,
                timeout=httpx.Timeout(self.provider.timeout_s, connect=self.provider.connect_timeout_s),
                http_client=openai.DefaultAioHttpClient(),
            )
        return self._client

    def _error(self, exc: Exception) -> RouterError:
        import openai

        if isinstance(exc, RouterError):
            return exc
        if isinstance(exc, openai.APIStatusError):
            try:
                body = exc.response.json()
            except (ValueError, json.JSONDecodeError):
                body = exc.message
            return tr.error_from_openai(self.name, exc.status_code, body, exc.response.headers)
        if isinstance(exc, openai.APIConnectionError | openai.APIResponseValidationError) or isinstance(exc, transport_errors()):
            return error_for_transport(self.name, exc.__cause__ or exc)
        if isinstance(exc, ValueError):  # a malformed stream event
            return UpstreamUnavailableError(f"{self.name}: malformed response ({type(exc).__name__})")
        return UpstreamError(f"{self.name}: unexpected failure ({type(exc).__name__})")

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        kwargs = tr.to_openai(request, native=self.native, stream=False)
        try:
            raw = await self._sdk().chat.completions.with_raw_response.create(**kwargs)
            body = raw.http_response.json()
        except Exception as exc:  # noqa: BLE001 - every failure is mapped here
            raise self._error(exc) from exc
        return tr.from_openai(body, model=request["model"])

    async def stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        kwargs = tr.to_openai(request, native=self.native, stream=True)
        upstream = None
        try:
            upstream = await self._sdk().chat.completions.create(**kwargs)
            async for chunk in upstream:
                yield tr.chunk_from_openai(chunk.to_dict(), model=request["model"])
        except Exception as exc:  # noqa: BLE001 - every failure is mapped here
            raise self._error(exc) from exc
        finally:
            # NOTE: closing the SDK stream closes its HTTP response, which is what stops an
            # upstream generation when the client goes away.
            if upstream is not None:
                await upstream.close()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()


def build(name: str, provider: ProviderSpec, config: RouterConfig, env: Mapping[str, str]) -> OpenAIBackend:
    key = env.get(provider.api_key_env) if provider.api_key_env else None
    return OpenAIBackend(name, config.models[name], provider, api_key=key)
