"""Looks at and resets the budget ledger: ``python -m app.budget.admin show|reset``.

``show`` prints a day's spend and live reservations per budget key, with the config's limits.
``reset`` sets a day's recorded spend of some budget keys (or all) back to zero and clears their
alert marks; every router replica sees it at its next re-read of the ledger (within 15 s), and a
budget that had switched routing to self-hosted only goes back to normal. It uses the same store
as the router (the config's ``ledger``: the SQLite file, or Redis at ``$REDIS_URL``).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from app.budget.budgets import ledger_for
from app.budget.ledger import Ledger, day_of
from app.config import RouterConfig, load_config

DEFAULT_CONFIG = Path(__file__).parents[2] / "deployments" / "configs" / "router.yaml"


async def show(ledger: Ledger, config: RouterConfig, day: str) -> list[str]:
    spend = await ledger.spend(day)
    limits = config.cost_rules.daily_budgets
    lines = [f"{'budget':<14} {'spent USD':>12} {'reserved USD':>13} {'limit USD':>10}"]
    for key in sorted(set(spend) | set(limits)):
        entry = spend.get(key)
        limit = f"{limits[key]:.2f}" if key in limits else "-"
        spent, reserved = (entry.spent, entry.reserved) if entry else (0, 0)
        lines.append(f"{key:<14} {spent:>12.6f} {reserved:>13.6f} {limit:>10}")
    return lines


async def reset(ledger: Ledger, day: str, keys: Sequence[str]) -> list[str]:
    """Resets ``keys`` (all keys with spend that day when empty); returns the keys reset."""
    chosen = list(keys) or sorted(await ledger.spend(day))
    await ledger.reset(day, chosen)
    return chosen


async def _main(args: argparse.Namespace) -> None:
    config = load_config(args.config)
    day = args.day or day_of(datetime.now(UTC), config.cost_rules.timezone)
    ledger = ledger_for(config.ledger)
    try:
        if args.command == "show":
            print(f"day {day}\n" + "\n".join(await show(ledger, config, day)))
        else:
            done = await reset(ledger, day, args.key)
            print(f"day {day}: spend reset to zero for {', '.join(done) or 'nothing (no spend recorded)'}")
    finally:
        await ledger.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["show", "reset"])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--day", help="YYYY-MM-DD in the budgets' time zone (default: today)")
    parser.add_argument(
        "--key", action="append", default=[], help="a budget key to reset (repeatable; default all)"
    )
    parser.add_argument("--yes", action="store_true", help="reset without asking")
    args = parser.parse_args(argv)
    if args.command == "reset" and not args.yes:
        parser.error("reset changes recorded spend: add --yes")
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
