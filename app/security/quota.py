"""Per-client limits: requests and tokens per minute, and a daily budget, shared by every replica.

They live in the budget ledger (SQLite or Redis), as keys ``client:<name>`` and counters in
one-minute windows, checked and added in one atomic step. Over a limit: a 429 with Retry-After.
The daily budget joins the request's budget reservation (see ``Budgets.reserve``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

from app.budget.ledger import Ledger
from app.config import AuthConfig, ClientLimits
from app.errors import RateLimitError

WINDOW_S = 60


def client_key(name: str) -> str:
    return f"client:{name}"


class Quota:
    def __init__(
        self,
        config: AuthConfig,
        ledger: Ledger,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.now = now

    def limits_for(self, client: str) -> ClientLimits:
        return self.config.key_limits.get(client, self.config.limits)

    def daily_limit(self, client: str | None) -> Decimal | None:
        if client is None:
            return None
        budget = self.limits_for(client).daily_budget_usd
        return Decimal(str(budget)) if budget is not None else None

    async def admit(self, client: str | None, tokens: int) -> None:
        """Counts one request and its tokens in this minute's window, or raises a 429."""
        if client is None:
            return
        limits = self.limits_for(client)
        now = self.now()
        window = now.strftime("minute:%Y-%m-%dT%H:%M")
        retry_after = max(1, math.ceil(WINDOW_S - (now.second + now.microsecond / 1e6)))
        amounts, caps = {}, {}
        if limits.requests_per_minute:
            amounts[f"rpm:{client}"], caps[f"rpm:{client}"] = Decimal(1), Decimal(limits.requests_per_minute)
        if limits.tokens_per_minute:
            amounts[f"tpm:{client}"], caps[f"tpm:{client}"] = (
                Decimal(tokens),
                Decimal(limits.tokens_per_minute),
            )
        if not amounts:
            return
        granted = await self.ledger.reserve(window, amounts, caps, ttl_s=2 * WINDOW_S)
        if granted is None:
            raise RateLimitError(
                f"Rate limit for key {client!r} reached ({_describe(limits)}); retry in {retry_after} s.",
                retry_after=retry_after,
            )
        await self.ledger.settle(granted, window, amounts)  # counted for good, in this window


def _describe(limits: ClientLimits) -> str:
    parts = []
    if limits.requests_per_minute:
        parts.append(f"{limits.requests_per_minute} requests/min")
    if limits.tokens_per_minute:
        parts.append(f"{limits.tokens_per_minute} tokens/min")
    return ", ".join(parts)
