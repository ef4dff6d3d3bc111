"""Money in the ledger: exact nano-dollar integers, and a budget key's spend on one day.

Amounts are rounded up to the next nano-dollar (never under-counting spend), limits down;
negative or non-finite amounts are rejected (``ValueError``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

NANOS_PER_USD = 10**9
DEFAULT_RETENTION_S = 8 * 24 * 3600  # how long a day's Redis keys and finished ids are kept


@dataclass(frozen=True)
class KeySpend:
    """One key's money on one day: settled/recorded spend, and live (unexpired) reservations."""

    spent: Decimal
    reserved: Decimal


def to_nanos(amount: Decimal | str | float, *, rounding: str = ROUND_CEILING) -> int:
    """A money amount as integer nano-dollars (floats go through ``str`` to avoid binary noise)."""
    value = Decimal(str(amount)) if isinstance(amount, float) else Decimal(amount)
    if not value.is_finite():
        raise ValueError(f"money amount must be finite, got {amount!r}")
    return int((value * NANOS_PER_USD).to_integral_value(rounding=rounding))


def amount_nanos(amount: Decimal | str | float) -> int:
    """A spend or reservation amount: non-negative, rounded up to the nano-dollar."""
    nanos = to_nanos(amount, rounding=ROUND_CEILING)
    if nanos < 0:
        raise ValueError(f"money amount must not be negative, got {amount!r}")
    return nanos


def limit_nanos(limit: Decimal | str | float) -> int:
    """A limit, rounded down to the nano-dollar."""
    return to_nanos(limit, rounding=ROUND_FLOOR)


def from_nanos(nanos: int) -> Decimal:
    return Decimal(int(nanos)).scaleb(-9)
