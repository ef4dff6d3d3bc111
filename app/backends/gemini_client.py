"""The Vertex AI Gemini backend: google-genai in Vertex mode, behind the ``Backend`` protocol.

The pure translation lives in ``app.backends.gemini_translate``; this module only does the
call and maps every failure at this one boundary:

- ``google.genai.errors.APIError`` (HTTP error statuses, error events inside a stream) ->
  ``error_from_gemini`` (Google's error body, ``RetryInfo``, the ``Retry-After`` header);
- transport failures (aiohttp / httpx errors, timeouts, a stream cut mid-way) ->
  ``error_for_transport``; credential refresh failures -> ``UpstreamAuthError``;
- an event or response that is not valid JSON or not a ``GenerateContentResponse`` ->
  ``UpstreamUnavailableError``.

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
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from app.backends.cloud import error_for_transport, transport_errors
from app.backends.gemini_translate import (
    StreamTranslator,
    error_from_gemini,
    to_gemini_request,
    to_openai_completion,
)
from app.openai_wire import new_id
from app.config import ModelSpec, ProviderSpec, RouterConfig
from app.errors import (
    InvalidRequestError,
    LastingReason,
    RouterError,
    UpstreamAuthError,
    UpstreamError,
    UpstreamUnavailableError,
)

log = logging.getLogger(__name__)

_END = object()  # the end of an upstream stream
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
DEFAULT_LOCATION = "us-central1"


class GeminiBackend:
    """One Gemini model on Vertex AI. ``__init__`` is cheap; the SDK client is built on first use.

    Credentials: the ones passed in, else Application Default Credentials (Workload Identity
    on GKE), discovered once, off the event loop. When discovery fails, every call raises
    ``UpstreamAuthError`` and ``unavailable_reason()`` says why, from then on.
    """

    def __init__(
        self,
        name: str,
        spec: ModelSpec,
        provider: ProviderSpec,
        *,
        project: str,
        location: str,
        credentials: Any = None,
    ) -> None:
        self.name = name
        self.spec = spec
        self.provider = provider
        self.project = project
        self.location = location
        self._credentials = credentials
        self._client: Any = None  # google.genai.Client; kept referenced: it closes its pools when collected
        self._auth_problem: str | None = None
        self._lock: asyncio.Lock | None = None

    def unavailable_reason(self) -> str | None:
        return self._auth_problem

    async def check_credentials(self) -> str | None:
        """Runs credential discovery now (once); None when usable, else the reason."""
        with contextlib.suppress(UpstreamAuthError):
            await self._ensure_client()
        return self._auth_problem

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        """One ``chat.completion``; raises only ``RouterError``s."""
        body = to_gemini_request(request)
        client = await self._ensure_client()
        model, contents, config = self._arguments(request, body)
        try:
            response = await client.aio.models.generate_content(model=model, contents=contents, config=config)
            return to_openai_completion(wire(response), model=model)
        except RouterError:
            raise
        except Exception as exc:
            raise self._map(exc) from exc

    async def stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """``chat.completion.chunk``s, then one usage chunk. Closing this iterator (or
        cancelling its consumer) closes the upstream HTTP stream; raises only ``RouterError``s."""
        body = to_gemini_request(request)
        client = await self._ensure_client()
        model, contents, config = self._arguments(request, body)
        translator = StreamTranslator(model, new_id(), provider=self.name)
        events: asyncio.Queue[Any] = asyncio.Queue()
        pump = asyncio.create_task(self._pump(client.aio.models, model, contents, config, events))
        try:
            while (item := await events.get()) is not _END:
                if isinstance(item, Exception):
                    raise self._map(item) from item
                for chunk in translator.feed(item):
                    yield chunk
            for chunk in translator.finish():
                yield chunk
        finally:
            if not pump.done():
                pump.cancel()
                await asyncio.wait({pump})

    async def _pump(
        self, models: Any, model: str, contents: Any, config: Any, events: asyncio.Queue[Any]
    ) -> None:
        """Reads the SDK's stream into ``events`` (then ``_END``, or the exception).

        NOTE: the SDK's stream is a chain of async generators whose inner links are closed
        only by the garbage collector (reference cycles), so ``aclose()`` on the outer one
        leaves the HTTP response open. Reading in this task and cancelling it instead throws
        ``CancelledError`` through the whole chain, and aiohttp closes the connection.
        """
        try:
            upstream = await models.generate_content_stream(model=model, contents=contents, config=config)
            async for event in upstream:
                events.put_nowait(wire(event))
            events.put_nowait(_END)
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, which maps it
            events.put_nowait(exc)

    async def aclose(self) -> None:
        """Closes the SDK's connection pools; the next call builds a fresh client."""
        client, self._client = self._client, None
        if client is not None:
            await client.aio.aclose()
            client.close()

    # --- internals ------------------------------------------------------------------------
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

    async def _ensure_client(self) -> Any:
        if self._client is not None:
            return self._client
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._client is None:
                if self._auth_problem is None and self._credentials is None:
                    self._credentials = await asyncio.to_thread(self._discover_credentials)
                if self._auth_problem is not None:
                    raise UpstreamAuthError(f"{self.name}: {self._auth_problem}")
                # NOTE: off the loop: building the client loads TLS contexts and the first
                # validation builds google-genai's deferred pydantic schemas (~1 s together).
                self._client = await asyncio.to_thread(self._build_client)
        return self._client

    def _discover_credentials(self) -> Any:
        """Application Default Credentials, or None with ``_auth_problem`` set. Runs in a thread."""
        import google.auth
        from google.auth.exceptions import GoogleAuthError

        try:
            credentials, _ = google.auth.default(scopes=SCOPES)
            return credentials
        except GoogleAuthError as exc:
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            self._auth_problem = LastingReason(f"no Google Application Default Credentials: {first_line[:200]}")
            log.warning("%s: %s", self.name, self._auth_problem)
            return None

    def _build_client(self) -> Any:
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

    def _map(self, exc: Exception) -> RouterError:
        """Any failure of a call as the router's error (the one mapping boundary)."""
        import pydantic
        from google.auth import exceptions as auth_errors
        from google.genai import errors as genai_errors

        if isinstance(exc, genai_errors.APIError):
            headers = getattr(getattr(exc, "response", None), "headers", None)
            return error_from_gemini(self.name, exc.code, exc.details, _plain(headers))
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


def build(name: str, provider: ProviderSpec, config: RouterConfig, env: Mapping[str, str]) -> GeminiBackend:
    """The backend for catalog model ``name``; the project comes from ``env[provider.project_env]``."""
    project = env.get(provider.project_env or "", "") if provider.project_env else ""
    return GeminiBackend(
        name,
        config.models[name],
        provider,
        project=project,
        location=provider.location or DEFAULT_LOCATION,
    )
