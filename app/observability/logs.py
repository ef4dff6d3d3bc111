"""Structured logs: one JSON object per line, and the ``route_decision`` event.

Prompt text and keys never reach these lines; ``log_prompts`` in the config is the only way
to add the prompt. ``LOG_LEVEL`` (debug, info, warning, error) overrides the config's level;
at debug the decision line also lists every candidate dropped and why.

Where they go: the process's stderr, and, when ``$ROUTER_LOG_DIR`` is set, the file
``$ROUTER_LOG_DIR/router.jsonl`` (``make run`` sets it; see README, "Logs"). Inside Ray Serve a
replica's stderr is a file of the Ray session, and in Serve's throughput-optimized mode Serve's own
log handlers are buffered and kept off stderr, so the file is the place to read: every process of
the app (each ingress replica, the cloud adapters, the CPU engine) appends to it, one ``write``
per record on an ``O_APPEND`` descriptor, so a record is in the file as soon as its call returns
(nothing is lost when the process is stopped or killed) and records of several processes never
interleave.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

LOGGER_NAME = "hybrid_router"
logger = logging.getLogger(LOGGER_NAME)

LOG_DIR_ENV = "ROUTER_LOG_DIR"
LOG_FILE_NAME = "router.jsonl"


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


class JsonLinesFile(logging.Handler):
    """Appends each record to ``path`` as one line, with one ``write(2)`` on an ``O_APPEND``
    descriptor: no buffer to lose, and lines of several processes never interleave."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8")
            with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
                if self._fd is None:
                    return
                while data:
                    data = data[os.write(self._fd, data) :]
        except Exception:  # noqa: BLE001 - logging never raises into the request
            self.handleError(record)

    def close(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        super().close()


def log_file(env: Mapping[str, str] | None = None) -> Path | None:
    """``$ROUTER_LOG_DIR/router.jsonl``, or None when ``ROUTER_LOG_DIR`` is unset or empty."""
    directory = (os.environ if env is None else env).get(LOG_DIR_ENV)
    return Path(directory).expanduser() / LOG_FILE_NAME if directory else None


def configure_logging(level: str = "info") -> None:
    """Route the router's logger to stderr and to ``$ROUTER_LOG_DIR/router.jsonl`` (when set) as
    JSON lines. Idempotent: called again, it keeps its handlers, and moves the file handler if
    ``ROUTER_LOG_DIR`` changed."""
    level = os.environ.get("LOG_LEVEL", level).upper()
    logger.setLevel(level)
    quiet_vendor_loggers()
    logger.propagate = False
    if not any(getattr(h, "_hybrid_router", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._hybrid_router = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    path = log_file()
    current = [h for h in logger.handlers if isinstance(h, JsonLinesFile)]
    if path is not None and any(h.path == path for h in current):
        return
    for old in current:
        logger.removeHandler(old)
        old.close()
    if path is None:
        return
    try:
        logger.addHandler(JsonLinesFile(path))
    except OSError as exc:  # an unwritable directory: stderr still has every line
        print(f"hybrid-router: cannot write the log file {path}: {exc}", file=sys.stderr)


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
