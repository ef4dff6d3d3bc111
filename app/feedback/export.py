"""Stored feedback as training rows: for a training command to fold clients' ratings in.

In code::

    from app.feedback.export import read_rows
    rows = read_rows("deployments/configs/router.yaml", since=0.0)   # list of dicts, oldest rating first

or, inside a running event loop, ``async for row in export_rows(store, since=...)``.

From a shell (one JSON object per line; ``--out -`` or no ``--out`` writes to stdout)::

    python -m app.feedback.export --config deployments/configs/router.yaml --out feedback.jsonl

Each row: ``request_id``, ``model`` (the one that answered), ``strategy``, ``features`` (the
routing features, no prompt text), ``score`` (0 to 1), ``created_at`` (the answer's unix time),
``rated_at``, and ``prompt`` / ``comment`` only where they were stored (``logging.log_prompts``
on). The store is the config's ``ledger`` store (SQLite file or ``$REDIS_URL``); ratings older
than its retention (8 days) are gone, so export at least that often.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from app.config import RouterConfig, load_config
from app.feedback.backends import store_for
from app.feedback.store import FeedbackStore

DEFAULT_CONFIG = "deployments/configs/router.yaml"


async def export_rows(store: FeedbackStore, *, since: float = 0.0) -> AsyncIterator[dict[str, Any]]:
    """Every rating given at or after ``since`` (unix time) with its decision, as a row dict."""
    async for row in store.training_rows(since=since):
        yield row.as_dict()


async def write_jsonl(store: FeedbackStore, out: TextIO, *, since: float = 0.0) -> int:
    """Writes the rows to ``out`` as JSON lines; returns how many."""
    count = 0
    async for row in export_rows(store, since=since):
        out.write(json.dumps(row, separators=(",", ":")) + "\n")
        count += 1
    return count


def read_rows(
    config: RouterConfig | str | os.PathLike[str], *, since: float = 0.0, env: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Every stored row (rated at or after ``since``) of the store that ``config`` (a config or a
    YAML path) names. Synchronous: call it outside any running event loop."""

    async def collect() -> list[dict[str, Any]]:
        store = _store(config, env)
        try:
            return [row async for row in export_rows(store, since=since)]
        finally:
            await store.close()

    return asyncio.run(collect())


def _store(config: RouterConfig | str | os.PathLike[str], env: Mapping[str, str] | None) -> FeedbackStore:
    loaded = config if isinstance(config, RouterConfig) else load_config(Path(config))
    return store_for(loaded.ledger, env)


def parse_since(text: str) -> float:
    """Unix seconds, or an ISO date or time (``2025-06-01``, ``2025-06-01T12:00:00+00:00``)."""
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text).timestamp()


def main(argv: list[str] | None = None) -> int:
    summary = (__doc__ or "").split("\n\n")[0]
    parser = argparse.ArgumentParser(prog="python -m app.feedback.export", description=summary)
    parser.add_argument(
        "--config",
        default=os.environ.get("ROUTER_CONFIG", DEFAULT_CONFIG),
        help="router config YAML (default: $ROUTER_CONFIG, else %(default)s)",
    )
    parser.add_argument("--out", default="-", help="JSONL file to write (default: stdout)")
    parser.add_argument(
        "--since",
        type=parse_since,
        default=0.0,
        help="only ratings given at or after this (unix seconds or ISO date/time)",
    )
    args = parser.parse_args(argv)

    async def run() -> int:
        store = _store(args.config, None)
        try:
            if args.out == "-":
                return await write_jsonl(store, sys.stdout, since=args.since)
            partial = Path(f"{args.out}.partial")  # the file appears whole, or not at all
            with partial.open("w", encoding="utf-8") as out:
                count = await write_jsonl(store, out, since=args.since)
            partial.replace(args.out)
            return count
        finally:
            await store.close()

    count = asyncio.run(run())
    print(f"{count} feedback rows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
