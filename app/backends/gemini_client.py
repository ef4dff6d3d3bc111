"""The thin client for Vertex AI Gemini, on google-genai in Vertex mode.

``GeminiClient`` is the provider's one SDK client (``google.genai.Client``, its credentials and
connection pools), shared by all its models; ``GeminiBackend`` is one logical model on it. The
pure translation lives in ``app.backends.gemini_translate``; this module only does the call and
maps every failure at this one boundary, raised unchained (see ``app.backends``):

- ``google.genai.errors.APIError`` (HTTP error statuses, error events inside a stream) ->
  ``error_from_gemini`` (Google's error body, ``RetryInfo``, the ``Retry-After`` header);
- transport failures (aiohttp / httpx errors, timeouts, a stream cut mid-way) ->
  ``error_for_transport``; credential refresh failures -> ``UpstreamAuthError``;
- an event or response that is not valid JSON or not a ``GenerateContentResponse`` ->
  ``UpstreamUnavailableError``.

Context caching, implicit first (``gemini_cache``): the client keeps its provider's caches and
sightings; after each call sent whole (``complete``, and a stream's usage chunk) a backend records
whether Vertex's implicit cache read the prefix, and creates an explicit context cache only for a
prefix the implicit cache was seen to miss on a repeat, then uses it while it lives. A cache the
API no longer has is forgotten and the request sent again whole, before anything reached the
client.

The SDK is set up so the router owns retries and continuations: ``HttpRetryOptions(attempts=1)``
(which also turns off the SDK's implicit 1-10 s sleep-and-retry on aiohttp connection
errors), automatic function calling and automatic stream continuation off. google-genai uses
aiohttp for its async calls whenever aiohttp is installed (it is, through ray[serve]), which is
the fast path; ``HttpOptions.timeout`` becomes aiohttp's *total* per-request timeout, so
``timeout_s`` bounds a whole call, stream included, and ``connect_timeout_s`` cannot be applied
(the SDK passes its own ``ClientTimeout`` on every request).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from app.backends import gemini_cache, prompt_cache
from app.backends import gemini_translate as tr
from app.backends.cloud import error_for_transport, transport_errors
from app.config import ModelSpec, ProviderSpec, RouterConfig
from app.errors import (
    InvalidRequestError,
    LastingReason,
    RouterError,
    UpstreamAuthError,
    UpstreamError,
    UpstreamUnavailableError,
)
from app.openai_wire import new_id

log = logging.getLogger(__name__)

_END = object()  # the end of an upstream stream
_WHOLE = object()  # the stream is read again whole: its context cache was gone
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
DEFAULT_LOCATION = "us-central1"


@dataclass(frozen=True)
class CachedCall:
    """How a request with a long stable prefix (``found``) is sent: through a context cache
    (``contents`` and ``config`` for it; ``created``: the tokens of the cache made for this
    request, 0 when it was there already, whose charges its usage carries) or, with ``contents``
    None, whole. ``repeat``: whether this sighting of the prefix is a repeat (see ``gemini_cache``)."""

    found: gemini_cache.Split
    repeat: bool
    contents: Any = None
    config: Any = None
    created: int = 0


class GeminiClient:
    """One provider's google-genai client (Vertex mode), shared by its models; ``__init__`` is
    cheap, the SDK client is built on first use. ``aclose`` may be called any number of times;
    a call after it builds a fresh client.

    Credentials: the ones passed in, else Application Default Credentials (Workload Identity
    on GKE), discovered once, off the event loop. When discovery fails, ``sdk()`` returns None
    and ``auth_problem`` says why, from then on.
    """

    def __init__(
        self, provider: ProviderSpec, *, project: str, location: str, credentials: Any = None
    ) -> None:
        self.provider = provider
        self.project = project
        self.location = location
        self._credentials = credentials
        self._sdk: Any = None  # google.genai.Client; kept referenced: it closes its pools when collected
        self.auth_problem: str | None = None
        self._lock: asyncio.Lock | None = None
        self.caches = gemini_cache.ContextCaches(provider.prompt_cache_ttl_s)

    async def sdk(self) -> Any:
        """The SDK client, or None when there are no credentials to build it with."""
        if self._sdk is not None:
            return self._sdk
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._sdk is None:
                if self.auth_problem is None and self._credentials is None:
                    self._credentials = await asyncio.to_thread(self._discover_credentials)
                if self.auth_problem is not None:
                    return None
                # NOTE: off the loop: building the client loads TLS contexts and the first
                # validation builds google-genai's deferred pydantic schemas (~1 s together).
                self._sdk = await asyncio.to_thread(self._build)
        return self._sdk

    def _discover_credentials(self) -> Any:
        """Application Default Credentials, or None with ``auth_problem`` set. Runs in a thread."""
        import google.auth
        from google.auth.exceptions import GoogleAuthError

        try:
            credentials, _ = google.auth.default(scopes=SCOPES)
            return credentials
        except GoogleAuthError as exc:
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            self.auth_problem = LastingReason(
                f"no Google Application Default Credentials: {first_line[:200]}"
            )
            log.warning("%s (project %s): %s", self.provider.kind, self.project, self.auth_problem)
            return None

    def _build(self) -> Any:
        from google import genai
        from google.genai import types

        options = types.HttpOptions(
            base_url=self.provider.base_url,
            timeout=int(self.provider.timeout_s * 1000),
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        client = genai.Client(
            vertexai=True,
            project=self.project,
            location=self.location,
            credentials=self._credentials,
            http_options=options,
        )
        _warm_up()
        return client

    async def aclose(self) -> None:
        """Closes the SDK's connection pools."""
        sdk, self._sdk = self._sdk, None
        if sdk is not None:
            await sdk.aio.aclose()
            sdk.close()


class GeminiBackend:
    """One Gemini model on Vertex AI behind the ``Backend`` protocol, on ``client`` (its
    provider's shared one) or, when none is given, on a client of its own for ``provider``,
    ``project``, ``location`` and ``credentials``."""

    def __init__(
        self,
        name: str,
        spec: ModelSpec,
        provider: ProviderSpec,
        *,
        project: str = "",
        location: str = DEFAULT_LOCATION,
        credentials: Any = None,
        client: GeminiClient | None = None,
    ) -> None:
        self.name = name
        self.spec = spec
        self.provider = provider
        self.client = client or GeminiClient(
            provider, project=project, location=location, credentials=credentials
        )
        # Context caches (implicit first) for prefixes this long (estimated tokens); None: off.
        self.cache_min_tokens = prompt_cache.threshold(spec, provider)

    def unavailable_reason(self) -> str | None:
        return self.client.auth_problem

    async def check_credentials(self) -> str | None:
        """Runs credential discovery now (once per client); None when usable, else the reason."""
        await self.client.sdk()
        return self.client.auth_problem

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        """One ``chat.completion``; raises only ``RouterError``s."""
        body = tr.to_gemini_request(request)
        sdk = await self._sdk()
        model, contents, config = self._arguments(request, body)
        cached = await self._cached_call(sdk, request, model, body)
        whole = cached is None or cached.contents is None
        try:
            response = None
            if cached is not None and cached.contents is not None:
                try:
                    response = await sdk.aio.models.generate_content(
                        model=model, contents=cached.contents, config=cached.config
                    )
                except Exception as exc:  # a cache gone is sent again whole; the rest re-raised
                    if not self._cache_gone(exc, cached):
                        raise
                    whole = True
            if response is None:
                response = await sdk.aio.models.generate_content(
                    model=model, contents=contents, config=config
                )
            completion = tr.to_openai_completion(wire(response), model=model)
        except Exception as exc:  # noqa: BLE001 - every failure is mapped here
            error = self._error(exc)
        else:
            self._account(cached, completion["usage"], whole)
            return completion
        raise error from None  # outside the except: no SDK exception in the chain

    async def stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """``chat.completion.chunk``s, then one usage chunk. Closing this iterator (or
        cancelling its consumer) closes the upstream HTTP stream; raises only ``RouterError``s."""
        body = tr.to_gemini_request(request)
        sdk = await self._sdk()
        model, contents, config = self._arguments(request, body)
        cached = await self._cached_call(sdk, request, model, body)
        whole = cached is None or cached.contents is None
        translator = tr.StreamTranslator(model, new_id(), provider=self.name)
        events: asyncio.Queue[Any] = asyncio.Queue()
        pump = asyncio.create_task(self._pump(sdk.aio.models, model, contents, config, cached, events))
        try:
            while (item := await events.get()) is not _END:
                if isinstance(item, RouterError):  # mapped in the pump, raised here unchained
                    raise item from None
                if item is _WHOLE:
                    whole = True
                    continue
                for chunk in translator.feed(item):
                    yield chunk
            for chunk in translator.finish():
                if chunk.get("usage"):
                    self._account(cached, chunk["usage"], whole)
                yield chunk
        finally:
            if not pump.done():
                pump.cancel()
                await asyncio.wait({pump})

    async def _pump(
        self,
        models: Any,
        model: str,
        contents: Any,
        config: Any,
        cached: CachedCall | None,
        events: asyncio.Queue[Any],
    ) -> None:
        """Reads the SDK's stream into ``events`` (then ``_END``, or the mapped error); through
        ``cached``'s context cache when it has one, then whole (after ``_WHOLE``) if that cache is
        gone before the first event.

        NOTE: the SDK's stream is a chain of async generators whose inner links are closed
        only by the garbage collector (reference cycles), so ``aclose()`` on the outer one
        leaves the HTTP response open. Reading in this task and cancelling it instead throws
        ``CancelledError`` through the whole chain, and aiohttp closes the connection.
        """
        sent = 0

        async def read(contents: Any, config: Any) -> None:
            nonlocal sent
            upstream = await models.generate_content_stream(model=model, contents=contents, config=config)
            async for event in upstream:
                sent += 1
                events.put_nowait(wire(event))

        try:
            try:
                if cached is None or cached.contents is None:
                    await read(contents, config)
                else:
                    await read(cached.contents, cached.config)
            except Exception as exc:  # a cache gone is read again whole; the rest re-raised
                if cached is None or cached.contents is None or sent or not self._cache_gone(exc, cached):
                    raise
                events.put_nowait(_WHOLE)
                await read(contents, config)
            events.put_nowait(_END)
        except Exception as exc:  # noqa: BLE001 - every failure is mapped here; the consumer raises it
            events.put_nowait(self._error(exc))

    async def aclose(self) -> None:
        """Closes the (shared) client; the other models of the provider may close it too."""
        await self.client.aclose()

    # --- internals ------------------------------------------------------------------------
    async def _sdk(self) -> Any:
        sdk = await self.client.sdk()
        if sdk is None:
            raise UpstreamAuthError(f"{self.name}: {self.client.auth_problem}")
        return sdk

    async def _cached_call(
        self, sdk: Any, request: dict[str, Any], model: str, body: dict[str, Any]
    ) -> CachedCall | None:
        """How to send ``body`` (see ``gemini_cache``): through the live context cache for its
        stable prefix, or one created now for a prefix the implicit cache was seen to miss, else
        whole (``contents`` None); None when caching is off or the prefix short. A cache that
        could not be had never fails the request."""
        if self.cache_min_tokens is None:
            return None
        found = gemini_cache.split(body, model, self.cache_min_tokens)
        if found is None:
            return None
        caches, created = self.client.caches, 0
        repeat = caches.seen_again(found.key)
        cache = caches.live(found.key)
        if cache is None:
            if not caches.should_create(found.key) or not caches.claim(found.key):
                return CachedCall(found, repeat)
            try:
                cache = await self._create_cache(sdk, model, found)
            except Exception as exc:  # noqa: BLE001 - a cache only saves money; the request goes on without
                caches.failed(found.key)
                log.warning("%s: no context cache (%s)", self.name, type(exc).__name__)
                return CachedCall(found, repeat)
            finally:
                caches.release(found.key)
            created = cache.tokens
        _, contents, config = self._arguments(request, gemini_cache.cached_body(body, found.rest, cache.name))
        return CachedCall(found, repeat, contents, config, created)

    def _account(self, cached: CachedCall | None, usage: dict[str, Any], whole: bool) -> None:
        """After an answer: a call sent whole tells whether the implicit cache read the prefix;
        a cache made for this request adds its charges to ``usage``."""
        if cached is None:
            return
        if whole:
            self.client.caches.record_implicit(cached.found, usage, cached.repeat)
        if cached.created:
            gemini_cache.add_creation(usage, cached.created, self.provider.prompt_cache_ttl_s)

    async def _create_cache(self, sdk: Any, model: str, found: gemini_cache.Split) -> gemini_cache.Cache:
        from google.genai import types

        ttl = f"{max(1, round(self.provider.prompt_cache_ttl_s))}s"
        config = types.CreateCachedContentConfig.model_validate_json(json.dumps({**found.prefix, "ttl": ttl}))
        async with asyncio.timeout(self.provider.timeout_s):
            made = await sdk.aio.caches.create(model=model, config=config)
        tokens = (made.usage_metadata and made.usage_metadata.total_token_count) or found.tokens
        return self.client.caches.add(found.key, str(made.name), int(tokens))

    def _cache_gone(self, exc: Exception, cached: CachedCall) -> bool:
        """True (and the cache forgotten) when ``exc`` says the API no longer has the cache."""
        from google.genai import errors as genai_errors

        if not isinstance(exc, genai_errors.APIError) or not gemini_cache.gone(exc.code, exc.message):
            return False
        self.client.caches.forget(cached.found.key)
        log.info("%s: context cache gone (HTTP %s), sent again without it", self.name, exc.code)
        return True

    def _arguments(self, request: dict[str, Any], body: dict[str, Any]) -> tuple[str, Any, Any]:
        """(model id, SDK contents, SDK config) from the translated wire body."""
        import pydantic
        from google.genai import types

        generation = body.get("generationConfig") or {}
        if generation.get("maxOutputTokens", 0) > self.spec.max_output_tokens:
            generation["maxOutputTokens"] = self.spec.max_output_tokens
        config = {k: v for k, v in body.items() if k != "contents" and k != "generationConfig"}
        config.update(generation)
        config.update(automaticFunctionCalling={"disable": True}, automaticContinuation=False)
        # NOTE: validated from JSON, so base64 fields (inlineData.data, thoughtSignature) decode.
        try:
            contents = _contents_adapter().validate_json(json.dumps(body["contents"]))
            sdk_config = types.GenerateContentConfig.model_validate_json(json.dumps(config))
        except pydantic.ValidationError as exc:
            where = ".".join(str(p) for p in exc.errors()[0]["loc"])
            raise InvalidRequestError(
                f"{self.name}: the request cannot be expressed for Gemini ({where})."
            ) from None
        return str(request.get("model") or self.spec.model_id), contents, sdk_config

    def _error(self, exc: Exception) -> RouterError:
        """The one mapping of SDK, credential, transport and decoding errors."""
        import pydantic
        from google.auth import exceptions as auth_errors
        from google.genai import errors as genai_errors

        if isinstance(exc, RouterError):
            return exc
        if isinstance(exc, genai_errors.APIError):
            headers = getattr(getattr(exc, "response", None), "headers", None)
            return tr.error_from_gemini(self.name, exc.code, exc.details, _plain(headers))
        if isinstance(exc, auth_errors.RefreshError | auth_errors.DefaultCredentialsError):
            return UpstreamAuthError(
                f"{self.name}: could not refresh Google credentials ({type(exc).__name__})"
            )
        if isinstance(exc, (auth_errors.TransportError, *transport_errors())):
            return error_for_transport(self.name, exc)
        if isinstance(
            exc, genai_errors.UnknownApiResponseError | json.JSONDecodeError | pydantic.ValidationError
        ):
            return UpstreamUnavailableError(f"{self.name}: malformed response from Vertex AI")
        # NOTE: the type only: an unknown error's text or traceback could quote the prompt.
        log.error("%s: unexpected error from google-genai: %s", self.name, type(exc).__name__)
        return UpstreamError(f"{self.name}: unexpected error ({type(exc).__name__})")


def wire(response: Any) -> dict[str, Any]:
    """An SDK ``GenerateContentResponse`` back in its wire JSON shape (camelCase)."""
    data: dict[str, Any] = response.model_dump(mode="json", by_alias=True, exclude_none=True)
    data.pop("sdkHttpResponse", None)
    return data


def _warm_up() -> None:
    """Builds the SDK's request and response validators now rather than on the first call."""
    from google.genai import types

    _contents_adapter().validate_json('[{"role": "user", "parts": [{"text": "hi"}]}]')
    types.GenerateContentConfig.model_validate_json('{"temperature": 0}')
    types.GenerateContentResponse.model_validate({"candidates": [{"content": {"parts": [{"text": "hi"}]}}]})


def _plain(headers: Any) -> dict[str, str] | None:
    return {str(k): str(v) for k, v in headers.items()} if headers is not None else None


_CONTENTS_ADAPTER: Any = None


def _contents_adapter() -> Any:
    global _CONTENTS_ADAPTER
    if _CONTENTS_ADAPTER is None:
        import pydantic
        from google.genai import types

        _CONTENTS_ADAPTER = pydantic.TypeAdapter(list[types.Content])
    return _CONTENTS_ADAPTER


def make_client(provider: ProviderSpec, env: Mapping[str, str]) -> GeminiClient:
    """The provider's one client; the project comes from ``env[provider.project_env]``,
    credentials from ADC on first use."""
    project = env.get(provider.project_env or "", "") if provider.project_env else ""
    return GeminiClient(provider, project=project, location=provider.location or DEFAULT_LOCATION)


def build(
    name: str,
    provider: ProviderSpec,
    config: RouterConfig,
    env: Mapping[str, str],
    client: GeminiClient | None = None,
) -> GeminiBackend:
    """The backend for logical model ``name``, on ``client`` (else a client of its own)."""
    client = client or make_client(provider, env)
    return GeminiBackend(name, config.models[name], provider, client=client)
