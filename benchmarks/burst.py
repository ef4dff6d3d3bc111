"""Burst: load-aware spill-over under a ramp from idle to 4x the self-hosted capacity and back.

Method. One real Ray Serve cluster on this machine runs the router (the default ``router.yaml``,
local profile): the self-hosted models on the real CPU engine (the tiny demo model; it generates
one answer at a time, so its capacity is one request in flight), and the cheap cloud tier
(``gemini-flash``, ``claude-haiku``, priced as the catalog prices them) bound to ``tests/fakes``'
OpenAI-compatible server in its own process, which starts answering after ``CLOUD_FIRST_TOKEN_S``
(a cheap cloud model's typical first token; the fake's ``delay`` marker in the prompt) and then
sends its few tokens at once. The same ramp runs twice, on
a fresh app each time: spill-over on, and off (``load.spill.rules.enabled: false``).

The ramp. First the engine's own service time ``S`` is measured (sequential requests, unloaded);
then requests arrive open-loop (Poisson, fixed seed) at ``m / S`` per second, ``m`` stepping
through ``RAMP`` (0.5x, 1x, 2x, 4x, 4x, 2x, 1x, 0.5x of the engine's capacity, ``PHASE_S`` each),
whatever is in flight. Each request is a stream through ``auto:rules`` (the keyword tree: a plain
question goes to ``mistral-7b-instruct`` first, then its fallbacks ``mistral-7b-fast`` on the
same engine, then ``gemini-flash``), with ``max_tokens`` 128 and a stated latency need
(``max_latency_ms``: its first token within ``NEED_MS``). The spill cool-down is ``COOL_DOWN_S``
(shorter than a phase, so the return shows within the ramp).

Measured per request, by the client: time to first content and to the whole answer, the model
and reason (``x-router-*`` headers), errors, and its cost: the router's own price of the usage its
stream reports (``Pricer.usage_cost``, what the router settles budgets with; a stream's
``x-router-cost-usd`` header leaves before the answer and carries only the reservation).
``GET /v1/stats`` is polled every ``POLL_S``: the engine's own in-flight count and capacity, and
the spilling state (its transitions, and how long each spilling period lasted).

Run: .venv/bin/python benchmarks/burst.py [--phase-s 8] [--seed 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import aiohttp
import yaml
from _results import figure, save_plot, table, write_section

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.budget.pricing import Pricer
from app.config import parse_config
from deployments.configs.profiles import local_env
from tests.fakes.serve import start_process

STRATEGY = "auto:rules"
CLOUD_FIRST_TOKEN_S = 0.5
# The marker makes only the fake cloud wait before its first byte; the CPU engine reads it as text.
QUESTION = [
    {
        "role": "user",
        "content": f"Tell me a story about a lighthouse. [[fault@fake-openai:delay={CLOUD_FIRST_TOKEN_S}]]",
    }
]
MAX_TOKENS = 128
NEED_MS = 2_000
RAMP = (0.5, 1, 2, 4, 4, 2, 1, 0.5)  # offered load, in multiples of the engine's capacity
PEAK = max(RAMP)
COOL_DOWN_S = 4.0
POLL_S = 0.25
POOL_MODEL = "mistral-7b-instruct"
CLOUD = ("gemini-flash", "claude-haiku")
GOAL_FULLY_USED = 0.90


# --- setup -----------------------------------------------------------------------------------
def router_config(fake_url: str, spill: bool, demo_dir: Path) -> dict:
    config = yaml.safe_load((ROOT / "deployments/configs/router.yaml").read_text())
    config["providers"]["fake_cloud"] = {"kind": "openai_compatible", "base_url": f"{fake_url}/v1"}
    for model in CLOUD:  # the cheap cloud tier, at its own catalog price, answered by the fake
        config["models"][model]["provider"] = "fake_cloud"
    config["serving"]["cpu"].update(model="benchmarks/no-such-model", demo_dir=str(demo_dir), torch_threads=1)
    for deployment in ("ingress", "cpu_engine", "adapter"):
        config["serving"].setdefault(deployment, {})["num_cpus"] = 0
    for spec in config["models"].values():  # the demo model's own speed as the statistics' prior
        if spec["provider"] == "self_hosted":
            spec.update(typical_latency_ms=100, typical_tokens_per_s=300)
    config["load"].update(poll_interval_s=0.25, spill_cool_down_s=COOL_DOWN_S)
    config["load"]["spill"]["rules"] = {"enabled": spill}
    config["cache"]["enabled"] = False
    config["cost_rules"]["daily_budgets"] = {"total": 1_000.0}
    config["logging"]["level"] = "warning"
    return config


def start_cluster(port: int, state_dir: str) -> None:
    import ray
    from ray import serve

    from deployments.run_local import use_private_auth

    os.environ.update(local_env())
    os.environ["HYBRID_ROUTER_STATE_DIR"] = state_dir
    os.environ.pop("RAY_ADDRESS", None)
    use_private_auth()  # a token of the run's own, as the tests' cluster: none written to ~/.ray
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})


def deploy(name: str, config: dict, port: int) -> str:
    from ray import serve

    from deployments.builder import build_app

    path = Path(tempfile.mkdtemp()) / "router.yaml"
    path.write_text(yaml.safe_dump(config))
    serve.run(build_app({"config_path": str(path)}), name=name, route_prefix=f"/{name}")
    url = f"http://127.0.0.1:{port}/{name}"
    import httpx

    for _ in range(240):
        try:
            health = httpx.get(f"{url}/health", timeout=5).json()
            if (
                health.get("self_hosted_engine", {}).get("ready")
                and health["models"][POOL_MODEL]["available"]
            ):
                return url
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not become healthy")


# --- load ------------------------------------------------------------------------------------
@dataclass
class Result:
    sent: float  # seconds since the ramp started
    phase: int
    status: int = 0
    model: str = ""
    reason: str = ""
    ttft: float | None = None
    total: float | None = None
    usage: dict | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None and self.ttft is not None


async def one(session: aiohttp.ClientSession, url: str, result: Result, need: bool = True) -> Result:
    body = {
        "model": STRATEGY,
        "messages": QUESTION,
        "max_tokens": MAX_TOKENS,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if need:
        body["max_latency_ms"] = NEED_MS
    start = time.perf_counter()
    try:
        async with session.post(f"{url}/v1/chat/completions", json=body) as response:
            result.status = response.status
            result.model = response.headers.get("x-router-model", "")
            result.reason = response.headers.get("x-router-reason", "")
            done = False
            async for line in response.content:
                if not line.startswith(b"data: "):
                    continue
                if line.strip() == b"data: [DONE]":
                    done = True
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    result.error = str(chunk["error"].get("message"))[:80]
                if result.ttft is None and any(
                    (c.get("delta") or {}).get("content") for c in chunk.get("choices") or []
                ):
                    result.ttft = time.perf_counter() - start
                result.usage = chunk.get("usage") or result.usage
            if not done and result.error is None:
                result.error = "stream ended without [DONE]"
    except (aiohttp.ClientError, json.JSONDecodeError) as exc:
        result.error = type(exc).__name__
    result.total = time.perf_counter() - start
    return result


async def service_time(url: str, n: int = 6) -> float:
    """The engine's own time for one request, unloaded (the median of ``n``, after a warm-up)."""
    async with aiohttp.ClientSession() as session:
        await one(session, url, Result(0, -1), need=False)
        times = [(await one(session, url, Result(0, -1), need=False)).total or 0.0 for _ in range(n)]
    return statistics.median(times)


async def poll_stats(url: str, started: float, out: list[dict], stop: asyncio.Event) -> None:
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            try:
                async with session.get(f"{url}/v1/stats") as response:
                    load = (await response.json())["models"][POOL_MODEL]["load"]
                out.append({"t": time.monotonic() - started, **load})
            except (aiohttp.ClientError, KeyError, ValueError):
                pass
            await asyncio.sleep(POLL_S)


async def ramp(url: str, service_s: float, phase_s: float, seed: int) -> tuple[list[Result], list[dict]]:
    rng = random.Random(seed)
    results: list[Result] = []
    polls: list[dict] = []
    stop = asyncio.Event()
    started = time.monotonic()
    poller = asyncio.create_task(poll_stats(url, started, polls, stop))
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=900)
    ) as session:
        tasks = []
        for phase, multiple in enumerate(RAMP):
            end = (phase + 1) * phase_s
            rate = multiple / service_s
            t = phase * phase_s
            while True:
                t += rng.expovariate(rate)
                if t >= end:
                    break
                await asyncio.sleep(max(0.0, t - (time.monotonic() - started)))
                result = Result(time.monotonic() - started, phase)
                tasks.append(asyncio.create_task(one(session, url, result)))
                results.append(result)
        await asyncio.gather(*tasks)
    await asyncio.sleep(1.0)
    stop.set()
    await poller
    return results, polls


# --- report ----------------------------------------------------------------------------------
@dataclass
class Run:
    name: str
    results: list[Result]
    polls: list[dict]
    phase_s: float
    elapsed_s: float = 0.0
    summary: dict = field(default_factory=dict)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def transitions(polls: list[dict]) -> tuple[int, list[float]]:
    """State changes seen by the polls, and how long each completed spilling period lasted."""
    changes, periods, since, state = 0, [], None, False
    for poll in polls:
        if poll["spilling"] != state:
            changes += 1
            if poll["spilling"]:
                since = poll["t"]
            elif since is not None:
                periods.append(poll["t"] - since)
            state = poll["spilling"]
    return changes, periods


def summarize(run: Run, pricer: Pricer, self_hosted: set[str]) -> dict:
    peak = [i for i, m in enumerate(RAMP) if m == PEAK]
    at_peak = [r for r in run.results if r.phase in peak and r.ok]
    window = (min(peak) * run.phase_s, (max(peak) + 1) * run.phase_s)
    peak_polls = [p for p in run.polls if window[0] <= p["t"] < window[1] and p["reported"]]
    full = [p for p in peak_polls if (p["in_flight_reported"] or 0) >= p["capacity"]]
    cost = sum((pricer.usage_cost(r.model, r.usage) for r in run.results if r.usage), Decimal(0))
    changes, periods = transitions(run.polls)
    return {
        "requests": len(run.results),
        "errors": sum(not r.ok for r in run.results),
        "peak_ttft_p95": pct([r.ttft for r in at_peak if r.ttft is not None], 0.95),
        "peak_total_p95": pct([r.total for r in at_peak if r.total is not None], 0.95),
        "peak_met": sum((r.ttft or 1e9) <= NEED_MS / 1000 for r in at_peak) / max(1, len(at_peak)),
        "fully_used": len(full) / max(1, len(peak_polls)),
        "self_hosted_share": sum(r.model in self_hosted for r in run.results) / max(1, len(run.results)),
        "spilled": sum(r.reason.startswith("spill:") for r in run.results),
        "cost": float(cost),
        "transitions": changes,
        "shortest_spilling_s": min(periods) if periods else None,
    }


def windows_table(run: Run, self_hosted: set[str]) -> list[list[object]]:
    rows = []
    for phase, multiple in enumerate(RAMP):
        rs = [r for r in run.results if r.phase == phase]
        ok = [r for r in rs if r.ok]
        ttft = [r.ttft for r in ok if r.ttft is not None]
        total = [r.total for r in ok if r.total is not None]
        share = sum(r.model in self_hosted for r in ok) / max(1, len(ok))
        rows.append(
            [
                f"{phase * run.phase_s:.0f}-{(phase + 1) * run.phase_s:.0f} s",
                f"{multiple:g}x",
                len(rs),
                f"{pct(ttft, 0.5):.2f} / {pct(ttft, 0.95):.2f} / {pct(ttft, 0.99):.2f}",
                f"{pct(total, 0.5):.2f} / {pct(total, 0.95):.2f} / {pct(total, 0.99):.2f}",
                f"{share:.0%}",
                ", ".join(f"{m} {n}" for m, n in Counter(r.model for r in ok).most_common()),
                sum(not r.ok for r in rs),
            ]
        )
    return rows


def plots(runs: list[Run], self_hosted: set[str]) -> str:
    fig, _ = figure(10, 7)
    fig.clf()  # three stacked panels instead of the helper's one
    top, middle, bottom = fig.subplots(3, 1, sharex=True)
    for run, color in zip(runs, ("tab:blue", "tab:red"), strict=False):
        ok = [r for r in run.results if r.ok]
        top.scatter([r.sent for r in ok], [r.ttft for r in ok], s=6, color=color, alpha=0.6, label=run.name)
        middle.plot(
            [p["t"] for p in run.polls],
            [p["in_flight_reported"] or 0 for p in run.polls],
            color=color,
            label=f"{run.name}: in the engine",
        )
        shares = []
        for phase in range(len(RAMP)):
            rs = [r for r in ok if r.phase == phase]
            shares.append(sum(r.model in self_hosted for r in rs) / max(1, len(rs)))
        bottom.step(
            [(i + 0.5) * run.phase_s for i in range(len(RAMP))],
            shares,
            where="mid",
            color=color,
            label=run.name,
        )
    phase_s = runs[0].phase_s
    top.axhline(NEED_MS / 1000, color="black", linestyle="--", linewidth=1, label="latency need")
    top.set_yscale("log")
    top.set_ylabel("first token (s)")
    top.legend(fontsize=8)
    middle.axhline(1, color="black", linestyle=":", linewidth=1, label="capacity (target)")
    middle.set_ylabel("requests in flight")
    middle.legend(fontsize=8)
    bottom.set_ylabel("self-hosted share")
    bottom.set_xlabel(f"seconds since the ramp started (offered load per {phase_s:g} s: {RAMP})")
    bottom.set_ylim(-0.05, 1.05)
    bottom.legend(fontsize=8)
    return save_plot(fig, "burst", "first token, engine in-flight and self-hosted share over the ramp")


def report(runs: list[Run], service_s: float, self_hosted: set[str], phase_s: float) -> str:
    on, off = (run.summary for run in runs)
    need_s = NEED_MS / 1000
    shortest = on["shortest_spilling_s"]
    lines = [
        "Method: `benchmarks/burst.py` (docstring). The real Serve app on one 2-core machine: the CPU "
        "engine (demo model, one generation at a time: capacity 1) and the cheap cloud tier on a fake "
        f"whose first token comes after {CLOUD_FIRST_TOKEN_S:g} s (a cheap cloud model's typical first "
        "token), the rest at once. "
        f"Open-loop Poisson arrivals ramp through {RAMP} times the engine's capacity "
        f"(its unloaded service time S = {service_s:.2f} s for {MAX_TOKENS} tokens), {phase_s:g} s per step; "
        f"each request streams through `{STRATEGY}` needing its first token within {need_s:g} s "
        f"(`max_latency_ms`). Spill cool-down {COOL_DOWN_S:g} s, band 0.2.",
        "",
        "Targets (issue #16):",
        "",
        table(
            ["target", "goal", "spill-over on", "spill-over off", "met"],
            [
                [
                    f"p95 first token at the {PEAK:g}x peak",
                    f"<= {need_s:g} s",
                    f"{on['peak_ttft_p95']:.2f} s ({on['peak_met']:.0%} within)",
                    f"{off['peak_ttft_p95']:.2f} s ({off['peak_met']:.0%} within)",
                    "yes" if on["peak_ttft_p95"] <= need_s else "no",
                ],
                [
                    "engine in flight >= its target, share of the peak",
                    f">= {GOAL_FULLY_USED:.0%}",
                    f"{on['fully_used']:.0%}",
                    f"{off['fully_used']:.0%}",
                    "yes" if on["fully_used"] >= GOAL_FULLY_USED else "no",
                ],
                [
                    "requests lost or failed",
                    "0",
                    on["errors"],
                    off["errors"],
                    "yes" if on["errors"] == 0 else "no",
                ],
                [
                    "shortest spilling period (no flapping)",
                    f">= cool-down {COOL_DOWN_S:g} s",
                    f"{shortest:.1f} s, {on['transitions']} transitions"
                    if shortest is not None
                    else "none ended",
                    f"{off['transitions']} transitions",
                    "yes" if shortest is None or shortest >= COOL_DOWN_S else "no",
                ],
            ],
        ),
        "",
        "Decision time with the live statistics on is the `Decision speed` section's (the service it "
        "measures has them on); this benchmark does not time decisions.",
        "",
        table(
            ["run", "requests", "spilled", "self-hosted share", "cost (USD)", "errors"],
            [
                [
                    run.name,
                    run.summary["requests"],
                    run.summary["spilled"],
                    f"{run.summary['self_hosted_share']:.0%}",
                    f"{run.summary['cost']:.6f}",
                    run.summary["errors"],
                ]
                for run in runs
            ],
        ),
        "",
        "Cost is the router's own price of each answer's usage (cloud at the catalog's Gemini Flash / "
        "Claude Haiku prices, self-hosted at its fixed per-token price). The fake's cloud answers are "
        "a few tokens long, so the spilled requests' cost here is a floor, not what real answers of "
        f"{MAX_TOKENS} tokens would cost.",
        "",
    ]
    for run in runs:
        lines += [
            f"**{run.name}** (the ramp took {run.elapsed_s:.0f} s to finish, drain included): per step, "
            "first token and whole answer p50 / p95 / p99 in seconds, the share answered self-hosted, and "
            "by which model",
            "",
            table(
                [
                    "window",
                    "offered",
                    "requests",
                    "first token",
                    "whole answer",
                    "self-hosted",
                    "answered by",
                    "errors",
                ],
                windows_table(run, self_hosted),
            ),
            "",
        ]
    lines += [plots(runs, self_hosted), ""]
    lines += why_not(on, off, need_s)
    return "\n".join(lines)


def why_not(on: dict, off: dict, need_s: float) -> list[str]:
    notes = []
    if on["peak_ttft_p95"] > need_s:
        notes.append(
            "- The p95 first token missed the need with spill-over on: requests the engine took just "
            "under the need's lowered limit still waited behind the running ones longer than estimated."
        )
    if on["fully_used"] < GOAL_FULLY_USED:
        notes.append(
            "- The engine was not at its target for the whole peak: with a capacity of one, each request "
            "the engine finishes leaves it idle until the next arrival that the estimate lets through "
            "(and the router sees the engine's count up to a poll late)."
        )
    if on["errors"]:
        notes.append("- Some requests failed with spill-over on; see the per-step tables.")
    return (["Where a target is not met, why:", "", *notes, ""]) if notes else []


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--phase-s", type=float, default=6.0, help="seconds per step of the ramp")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--port", type=int, default=8125)
    args = parser.parse_args()
    os.chdir(ROOT)
    fake, fake_url = start_process("openai")
    state_dir = tempfile.mkdtemp(prefix="hr-burst-")
    runs: list[Run] = []
    try:
        start_cluster(args.port, state_dir)
        from ray import serve

        service_s = 0.0
        for name, spill in (("spill-over on", True), ("spill-over off", False)):
            app = "on" if spill else "off"
            config = router_config(fake_url, spill, Path(state_dir) / "demo-model")
            url = deploy(app, config, args.port)
            if not service_s:
                service_s = asyncio.run(service_time(url))
            started = time.monotonic()
            results, polls = asyncio.run(ramp(url, service_s, args.phase_s, args.seed))
            runs.append(Run(name, results, polls, args.phase_s, time.monotonic() - started))
            serve.delete(app)
    finally:
        import ray
        from ray import serve

        if ray.is_initialized():
            serve.shutdown()
            ray.shutdown()
        fake.terminate()
    parsed = parse_config(router_config(fake_url, True, Path(state_dir)))
    pricer = Pricer(parsed.models)
    self_hosted = {m for m in parsed.models if parsed.is_self_hosted(m)}
    for run in runs:
        run.summary = summarize(run, pricer, self_hosted)
    write_section("burst", "Burst: load-aware spill-over", report(runs, service_s, self_hosted, args.phase_s))
    print(json.dumps({run.name: run.summary for run in runs}, indent=1))


if __name__ == "__main__":
    main()
