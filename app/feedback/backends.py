"""Opens the feedback store where the config's budget ledger lives: SQLite or Redis."""

from __future__ import annotations

from collections.abc import Mapping

from app.budget.budgets import ledger_settings
from app.budget.ledger import LedgerSettings
from app.config import LedgerConfig
from app.feedback.store import FeedbackStore


def build_store(settings: LedgerSettings) -> FeedbackStore:
    """The store beside the ledger that ``settings`` names (no I/O until first use)."""
    if settings.backend == "sqlite":
        from app.feedback.store_sqlite import SQLiteFeedbackStore

        return SQLiteFeedbackStore(settings.path, retention_s=settings.retention_s)
    if settings.backend == "redis":
        if not settings.redis_url:
            raise ValueError("the redis feedback store needs redis_url")
        from app.feedback.store_redis import RedisFeedbackStore

        return RedisFeedbackStore(settings.redis_url, settings.key_prefix, retention_s=settings.retention_s)
    raise ValueError(f"unknown feedback store backend {settings.backend!r}")


def store_for(config: LedgerConfig, env: Mapping[str, str] | None = None) -> FeedbackStore:
    """The store where the config's ledger lives (``ledger_for``'s rules: state dir, Redis URL)."""
    return build_store(ledger_settings(config, env))
