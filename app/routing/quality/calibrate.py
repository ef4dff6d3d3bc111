"""Sets the cost-quality knob from sample traffic: ``python -m app.routing.quality.calibrate``.

Give it sample requests as JSONL: chat bodies (``{"messages": [...]}``), bare prompts
(``{"prompt": "..."}``) or the router's own ``route_decision`` log lines, which carry the
features routing needs and no prompt text. It plans every sample with ``auto`` at each margin
from 0 to 1 (as if every model were up), and prints the share of premium calls and the
estimated USD per 1,000 requests at each, then the smallest margin (the best quality) that meets
the target: ``--premium-share 0.1`` (at most 10% of requests to premium models) or
``--cost-per-1k 2.5`` (at most $2.50 per 1,000 requests). Put the result in the config's
``quality.margin``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from app.config import RouterConfig, load_config
from app.routing.analysis import Analyzer, Features
from app.routing.catalog import Catalog
from app.routing.planner import Planner
from app.routing.strategies import StrategyRegistry

MARGINS = tuple(round(i / 100, 2) for i in range(101))


@dataclass(frozen=True)
class Point:
    margin: float
    premium_share: float
    usd_per_1k: float


def features_from_log(record: Mapping[str, Any]) -> Features:
    """A ``route_decision`` record's features (logged without metadata values)."""
    logged = dict(record["features"])
    names = {f.name for f in fields(Features)}
    values = {k: v for k, v in logged.items() if k in names and k != "metadata"}
    values["complexity_signals"] = tuple(values.get("complexity_signals", ()))
    values["quality_inputs"] = tuple(values.get("quality_inputs", ()))
    return Features(**values)


def sample_features(lines: Iterable[Mapping[str, Any]], analyzer: Analyzer) -> list[Features]:
    out = []
    for line in lines:
        if line.get("event") == "route_decision" or "features" in line:
            out.append(features_from_log(line))
        elif "messages" in line:
            out.append(analyzer.analyze(line))
        elif "prompt" in line:
            out.append(analyzer.analyze({"messages": [{"role": "user", "content": line["prompt"]}]}))
    return out


class Calibrator:
    def __init__(self, config: RouterConfig, premium_role: str = "large") -> None:
        self.catalog = Catalog(config)
        self.planner = Planner(self.catalog, StrategyRegistry(self.catalog))
        self.premium = {m for m, s in config.models.items() if s.quality_role == premium_role}
        self.default_output = config.routing.default_max_tokens

    def choices(self, samples: Sequence[Features], margin: float) -> list[str]:
        return [self.planner.plan(replace(f, quality_margin=margin), "auto").primary.model for f in samples]

    def point(self, samples: Sequence[Features], margin: float) -> Point:
        chosen = self.choices(samples, margin)
        cost = sum(
            self.catalog.cost_estimate(m, f.tokens, f.max_tokens or self.default_output)
            for m, f in zip(chosen, samples, strict=True)
        )
        n = max(1, len(samples))
        return Point(margin, sum(m in self.premium for m in chosen) / n, 1000 * cost / n)

    def curve(self, samples: Sequence[Features]) -> list[Point]:
        return [self.point(samples, m) for m in MARGINS]


def pick(
    curve: Sequence[Point], premium_share: float | None = None, cost_per_1k: float | None = None
) -> Point | None:
    """The smallest margin that meets the target (None if no margin does)."""
    for point in curve:
        if premium_share is not None and point.premium_share <= premium_share:
            return point
        if cost_per_1k is not None and point.usd_per_1k <= cost_per_1k:
            return point
    return None


def main(argv: Sequence[str] | None = None) -> None:
    default_config = Path(__file__).parents[3] / "deployments" / "configs" / "router.yaml"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "samples", help="JSONL: chat bodies, {'prompt': ...} lines, or route_decision log lines"
    )
    parser.add_argument("--config", default=str(default_config))
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--premium-share", type=float, help="most share of requests for premium models (0-1)")
    target.add_argument("--cost-per-1k", type=float, help="most USD per 1,000 requests")
    parser.add_argument("--premium-role", default="large", help="the quality role that counts as premium")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    with open(args.samples, encoding="utf-8") as f:
        lines = [json.loads(line) for line in f if line.strip().startswith("{")]
    samples = sample_features(lines, Analyzer(config.routing.thresholds))
    curve = Calibrator(config, args.premium_role).curve(samples)
    print(f"{len(samples)} samples\nmargin  premium share  USD per 1K requests")
    for point in curve[::5]:
        print(f"{point.margin:6.2f}  {point.premium_share:13.1%}  {point.usd_per_1k:19.4f}")
    chosen = pick(curve, args.premium_share, args.cost_per_1k)
    if chosen is None:
        raise SystemExit("no margin in [0, 1] meets that target")
    print(
        f"\nquality:\n  margin: {chosen.margin}   # premium share {chosen.premium_share:.1%}, "
        f"${chosen.usd_per_1k:.4f} per 1K requests"
    )


if __name__ == "__main__":
    main()
