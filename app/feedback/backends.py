"""Opens the feedback store where the config's budget ledger lives: SQLite or Redis."""

from __future__ import annotations

from collections.abc import Mapping

from app.budget.budgets import ledger_settings
from app.budget.ledger import LedgerSettings
from app.config import LedgerConfig
from app.feedback.store import FeedbackStore


def build_store(settings: LedgerSettings) -> FeedbackStore:
    """The store beside the ledger that ``settings`` names (no I/O until first use)."""
    from app.feedback.store_redis import RedisFeedbackStore
    from app.feedback.store_sqlite import SQLiteFeedbackStore

    def sqlite(path: str, retention: int) -> FeedbackStore:
        return SQLiteFeedbackStore(path, retention_s=retention)

    def redis(url: str, prefix: str, retention: int) -> FeedbackStore:
        return RedisFeedbackStore(url, prefix, retention_s=retention)

    return settings.open("feedback store", sqlite, redis)


def store_for(config: LedgerConfig, env: Mapping[str, str] | None = None) -> FeedbackStore:
    """The store where the config's ledger lives (``ledger_for``'s rules: state dir, Redis URL)."""
    return build_store(ledger_settings(config, env))
