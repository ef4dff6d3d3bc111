"""A ``RouterService`` over scripted backends, the FastAPI app over it, and the log collector."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from app.api.routes import create_app
from app.config import RouterConfig, load_config
from app.observability.logs import JsonFormatter, logger
from app.service import RouterService
from tests.fakes.backends import ScriptedBackend

CONFIG_PATH = Path(__file__).parents[2] / "deployments" / "configs" / "router.yaml"


def default_config() -> RouterConfig:
    return load_config(CONFIG_PATH)


async def no_wait(_seconds: float) -> None:
    """A ``sleep`` for the service: retries back off without waiting."""


def scripted_backends(
    config: RouterConfig, down: Mapping[str, str] | None = None
) -> dict[str, ScriptedBackend]:
    """One scripted backend per catalog model; ``down`` names models unavailable, with the reason."""
    backends = {name: ScriptedBackend(name) for name in config.models}
    for name, reason in (down or {}).items():
        backends[name].down = reason
    return backends


def make_service(
    config: RouterConfig | None = None, backends: Mapping[str, Any] | None = None, **kwargs: Any
) -> RouterService:
    """The service as the ingress wires it, over scripted backends; retries do not sleep."""
    config = config or default_config()
    kwargs.setdefault("sleep", no_wait)
    return RouterService(
        config, dict(backends) if backends is not None else scripted_backends(config), **kwargs
    )


@contextmanager
def app_client(service: RouterService, **kwargs: Any) -> Iterator[TestClient]:
    """The real FastAPI app over ``service``, started (lifespan) and stopped around the block."""
    with TestClient(create_app(service, **kwargs)) as client:
        yield client


@contextmanager
def log_records(level: int = logging.DEBUG) -> Iterator[list[dict[str, Any]]]:
    """The router's structured log records emitted inside the block, as the JSON log writes them."""
    records: list[dict[str, Any]] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(json.loads(JsonFormatter().format(record)))

    handler, previous = Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
