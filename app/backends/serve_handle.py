"""A backend reached through a Ray Serve deployment handle (the CPU engine, vLLM servers).

The handle is duck-typed (``.chat.remote(req)`` and ``.options(stream=True).chat_stream
.remote(req)``), so this module imports no Ray and tests can pass any object of that shape.

Ray's errors are mapped and raised unchained, like the SDKs' (see ``app.backends``): they
carry no credentials, but their text embeds the replica's traceback, which can quote a request,
and nothing in the router reads the chain; the mapped error keeps the Ray error's type name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from app.errors import InvalidRequestError, RouterError, UpstreamError, UpstreamUnavailableError


def map_handle_error(exc: BaseException, name: str) -> RouterError:
    """Ray and engine errors onto the router's tree: engine ValueErrors are the client's fault."""
    cause = getattr(exc, "cause", None) or exc.__cause__
    if isinstance(cause, RouterError):  # raised in the replica, wrapped by Ray on the way back
        return cause
    if isinstance(exc, RouterError):
        return exc
    if isinstance(exc, ValueError) or isinstance(cause, ValueError):
        return InvalidRequestError(f"{name} refused the request: {cause or exc}")
    kind = type(exc).__name__
    if (
        "Unavailable" in kind
        or "ActorDied" in kind
        or "ActorUnavailable" in kind
        or "DeploymentUnavailable" in kind
    ):
        return UpstreamUnavailableError(f"{name} is unavailable ({kind})")
    return UpstreamError(f"{name} failed ({kind})")


class ServeHandleBackend:
    """``call_kwargs`` go with every call (the cloud adapter deployment takes ``model=``)."""

    def __init__(
        self,
        name: str,
        handle: Any,
        health: Callable[[], str | None] | None = None,
        call_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.handle = handle
        self._stream_handle = handle.options(stream=True)
        self._health = health
        self._kwargs = call_kwargs or {}

    def unavailable_reason(self) -> str | None:
        return self._health() if self._health else None

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            result: dict[str, Any] = await self.handle.chat.remote(request, **self._kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure is mapped here
            error = map_handle_error(exc, self.name)
        else:
            return result
        raise error from None  # outside the except: no Ray exception in the chain

    async def stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        response = self._stream_handle.chat_stream.remote(request, **self._kwargs)
        error: RouterError | None = None
        try:
            async for chunk in response:
                yield chunk
        except Exception as exc:  # noqa: BLE001 - every failure is mapped here
            error = map_handle_error(exc, self.name)
        finally:
            # NOTE: cancelling the response stops the generator in the replica, so an abandoned
            # stream does not keep generating.
            cancel = getattr(response, "cancel", None)
            if cancel is not None:
                cancel()
        if error is not None:
            raise error from None  # outside the except: no Ray exception in the chain
