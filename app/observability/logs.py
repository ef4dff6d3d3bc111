"""Structured logs: one JSON object per line, and the ``route_decision`` event.

Prompt text and keys never reach these lines; ``log_prompts`` in the config is the only way
to add the prompt. ``LOG_LEVEL`` (debug, info, warning, error) overrides the config's level;
at debug the decision line also lists every candidate dropped and why.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

LOGGER_NAME = "hybrid_router"
logger = logging.getLogger(LOGGER_NAME)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        event = getattr(record, "event", None)
        if isinstance(event, dict):
            payload.update(event)
        else:
            payload["message"] = record.getMessage()
        if record.exc_info and record.levelno >= logging.ERROR:
            payload["error_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
        return json.dumps(payload, default=str, separators=(",", ":"))


def configure_logging(level: str = "info") -> None:
    """Route the router's logger to stderr as JSON lines, once per process."""
    level = os.environ.get("LOG_LEVEL", level).upper()
    logger.setLevel(level)
    quiet_vendor_loggers()
    logger.propagate = False
    if not any(getattr(h, "_hybrid_router", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._hybrid_router = True  # type: ignore[attr-defined]
        logger.addHandler(handler)


# Loggers of the SDKs and HTTP stacks below the adapters: at DEBUG some log whole request bodies
# (the Anthropic SDK's "Request options"), at INFO httpx logs full URLs (webhook tokens).
VENDOR_LOGGERS = ("anthropic", "openai", "google_genai", "google.genai", "httpx", "httpx2", "httpcore")


def quiet_vendor_loggers(log_prompts: bool = False) -> None:
    """Keeps prompts and secrets in vendor log records out of the logs, unless prompts are wanted."""
    if log_prompts:
        return
    for name in VENDOR_LOGGERS:
        vendor = logging.getLogger(name)
        vendor.setLevel(max(logging.WARNING, vendor.level))


def log_event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"event": {"event": name, **fields}})


def debug_enabled() -> bool:
    return logger.isEnabledFor(logging.DEBUG)


def now() -> float:
    return time.perf_counter()
