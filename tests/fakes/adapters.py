"""Helpers for the cloud adapters' tests: a config with several models on one provider, a
record of the aiohttp sessions the SDKs open, and the error-chaining check."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from app.config import RouterConfig


def one_provider_config(provider: dict[str, Any], model_ids: dict[str, str]) -> RouterConfig:
    """``providers: {p: provider}`` and one model per ``name: model_id``, all on ``p`` (no
    cross-checks: the routing defaults name other models)."""
    return RouterConfig.model_validate(
        {
            "providers": {"p": provider},
            "models": {
                name: {
                    "provider": "p",
                    "model_id": model_id,
                    "context_window": 100_000,
                    "max_output_tokens": 1024,
                    "weights": {"cost": 0.5, "latency": 0.5, "quality": 0.5},
                    "typical_latency_ms": 500,
                }
                for name, model_id in model_ids.items()
            },
        }
    )


def record_aiohttp_sessions(monkeypatch: pytest.MonkeyPatch) -> list[aiohttp.ClientSession]:
    """Every ``aiohttp.ClientSession`` (subclasses included) made from now on in this test."""
    made: list[aiohttp.ClientSession] = []
    original = aiohttp.ClientSession.__init__

    def init(self: aiohttp.ClientSession, *args: Any, **kwargs: Any) -> None:
        made.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(aiohttp.ClientSession, "__init__", init)
    return made


def assert_unchained(error: BaseException) -> None:
    """No foreign exception (an SDK's, with the request and its headers) hangs off ``error``."""
    assert error.__cause__ is None, repr(error.__cause__)
    assert error.__context__ is None, repr(error.__context__)
    assert error.__suppress_context__
