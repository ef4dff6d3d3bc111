"""Client API keys: read from the environment (or a Kubernetes Secret mounted there), kept only as
SHA-256 digests, compared in constant time. ``/health`` stays open; every other route needs a key
as ``Authorization: Bearer <key>`` or ``x-api-key: <key>`` when auth is on.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import AuthConfig, ConfigError
from app.errors import AuthenticationError, error_body, error_headers

OPEN_PATHS = frozenset({"/health"})


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


@dataclass(frozen=True)
class Client:
    name: str
    admin: bool


class KeyStore:
    def __init__(self, keys: Mapping[str, str], admin_keys: Mapping[str, str] | None = None) -> None:
        # Only digests are kept: the keys themselves are dropped here.
        self._entries = [(digest(k), Client(n, False)) for n, k in keys.items()]
        self._entries += [(digest(k), Client(n, True)) for n, k in (admin_keys or {}).items()]

    @classmethod
    def from_env(cls, config: AuthConfig, env: Mapping[str, str] | None = None) -> KeyStore:
        """The keys of ``config.keys_env`` and ``config.admin_keys_env``; a ``ConfigError`` when a
        name is given twice (one key would silently replace the other), two names share a key, or
        a key is empty."""
        env = os.environ if env is None else env
        check_client_keys(config, env)
        return cls(parse_keys(env.get(config.keys_env, "")), parse_keys(env.get(config.admin_keys_env, "")))

    def __len__(self) -> int:
        return len(self._entries)

    def identify(self, presented: str) -> Client | None:
        """The client a key belongs to. Every stored digest is compared, in constant time each, so
        the time taken says nothing about which key, or how much of one, matched."""
        candidate = digest(presented)
        found = None
        for stored, client in self._entries:
            if hmac.compare_digest(stored, candidate):
                found = client
        return found


def parse_keys(text: str) -> dict[str, str]:
    """``name:key,name2:key2`` (a bare key is named after its position)."""
    return dict(key_pairs(text))


def key_pairs(text: str) -> list[tuple[str, str]]:
    """(name, key) in the order given, repeats included."""
    pairs = []
    for i, item in enumerate(part.strip() for part in text.split(",")):
        if item:
            name, sep, key = item.partition(":")
            pairs.append((name, key) if sep else (f"key{i + 1}", name))
    return pairs


def key_problems(config: AuthConfig, env: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """(variable, problem) for the client keys in the environment: a name given twice (in one
    variable, where the second key would silently replace the first, or in both), two names
    with the same key, an empty key. A problem never shows a key."""
    env = os.environ if env is None else env
    problems: list[tuple[str, str]] = []
    names: dict[str, str] = {}
    owners: dict[bytes, str] = {}
    for variable in (config.keys_env, config.admin_keys_env):
        for name, key in key_pairs(env.get(variable, "")):
            if name in names:
                where = "twice" if names[name] == variable else f"in {names[name]} too"
                problems.append(
                    (variable, f"the key name {name!r} is given {where}; each name must be unique")
                )
            names.setdefault(name, variable)
            if not key:
                problems.append((variable, f"the key named {name!r} is empty"))
                continue
            first = owners.setdefault(digest(key), name)
            if first != name:
                problems.append((variable, f"{name!r} has the same key as {first!r}"))
    return problems


def check_client_keys(config: AuthConfig, env: Mapping[str, str] | None = None) -> None:
    """Raises a ``ConfigError`` (source ``environment``) listing every problem of ``key_problems``."""
    problems = key_problems(config, env)
    if problems:
        raise ConfigError("environment", problems, title="invalid client keys")


def presented_key(headers: Mapping[bytes, bytes]) -> str | None:
    authorization = headers.get(b"authorization", b"").decode("latin-1")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip() or None
    api_key = headers.get(b"x-api-key", b"").decode("latin-1").strip()
    return api_key or None


class AuthMiddleware:
    """401 in OpenAI's format for a missing or wrong key; the client's name goes in ``scope.state``."""

    def __init__(self, app: ASGIApp, keys: KeyStore, enabled: bool) -> None:
        self.app = app
        self.keys = keys
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.enabled or scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        key = presented_key(dict(scope.get("headers") or ()))
        client = self.keys.identify(key) if key else None
        if client is None:
            message = (
                "Incorrect API key provided."
                if key
                else "You didn't provide an API key (Authorization: Bearer ...)."
            )
            error = AuthenticationError(message)
            body = json.dumps(error_body(error)).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b"Bearer"),
            ]
            headers += [(k.encode(), v.encode()) for k, v in error_headers(error).items()]
            await send({"type": "http.response.start", "status": 401, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        scope.setdefault("state", {})["client"] = client
        await self.app(scope, receive, send)
