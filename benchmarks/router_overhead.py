"""Router overhead: the same chat requests sent to a fast local OpenAI-compatible fake directly,
through the LiteLLM proxy, and through the router, in alternating rounds of one run.

Serve's ingress is a cluster-wide choice made by environment variables when Ray starts, so each
Serve mode runs in its own Ray cluster (a child process of this script):

- ``proxy``: Serve's Python HTTP proxy, Ray's default;
- ``haproxy``: ``RAY_SERVE_ENABLE_HA_PROXY=1``, HAProxy in front, requests go straight to the
  ingress replica's own HTTP server;
- ``haproxy+throughput``: also ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` (gRPC between replicas, no
  user-code thread, buffered request logs): ``deployments/configs/serve.env``, the shipped mode.

Every mode also gets the rest of ``serve.env`` (two malloc arenas).

In each cluster both placements of the cloud adapters run as their own application: in the
ingress (``in_process``) and as their own deployment (``deployment``). The fake and LiteLLM are
started once and measured again inside every cluster's run, so each comparison is made between
rounds that alternate on the same machine at the same time. (Ray Serve LLM's direct streaming,
``RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING``, makes a single-model ``LLMServer`` its own ingress; a
router must sit in front of several models, so it does not apply.)

Run: .venv/bin/python benchmarks/router_overhead.py [--requests 200] [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import litellm_proxy
import yaml
from _results import figure, save_plot, table, write_section

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `tests.fakes` lives at the repo root

from deployments.configs.profiles import HAPROXY_MODE, serve_env_file
from tests.fakes.serve import start_process

MESSAGES = [{"role": "user", "content": "What is Kubernetes? Answer in one sentence."}]
SHIPPED = serve_env_file()  # what `make run`, the tests and the RayService start Ray with
COMMON = {k: v for k, v in SHIPPED.items() if k not in HAPROXY_MODE}  # e.g. the malloc arenas
SERVE_MODES = {
    "proxy": COMMON,
    "haproxy": COMMON | {"RAY_SERVE_ENABLE_HA_PROXY": "1"},
    "haproxy+throughput": SHIPPED,
}
DEFAULT_SETUP = "router haproxy+throughput in_process"  # what `make run` and the RayService use


def router_config(fake_url: str, placement: str) -> dict:
    """A one-model catalog bound to the fake, so every request takes the same path."""
    return {
        "providers": {"bench": {"kind": "openai_compatible", "base_url": f"{fake_url}/v1"}},
        "models": {
            "gpt": {
                "provider": "bench",
                "model_id": "fake",
                "context_window": 128000,
                "weights": {"cost": 0.5, "latency": 0.5, "quality": 0.5},
                "pricing": {"source": "fixed", "input_per_million": 1.0, "output_per_million": 2.0},
                "typical_latency_ms": 100,
            }
        },
        "routing": {
            "auto": {
                k: ["gpt"]
                for k in (
                    "long_context",
                    "medium_context",
                    "code_generation",
                    "high_complexity",
                    "low_latency",
                    "default",
                )
            }
        },
        "serving": {
            "cloud_adapters": placement,
            "ingress": {"num_cpus": 0, "max_ongoing_requests": 256},
            "adapter": {"num_cpus": 0, "max_ongoing_requests": 256},
        },
        "logging": {"level": "warning"},
    }


def start_router(fake_url: str, placements: list[str], port: int) -> dict[str, str]:
    import ray
    from ray import serve

    from deployments.builder import build_app

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    urls = {}
    for placement in placements:
        path = Path(tempfile.mkdtemp()) / "router.yaml"
        path.write_text(yaml.safe_dump(router_config(fake_url, placement)))
        serve.run(build_app({"config_path": str(path)}), name=placement, route_prefix=f"/{placement}")
        urls[placement] = f"http://127.0.0.1:{port}/{placement}"
    return urls


# --- load ---------------------------------------------------------------------------------
@dataclass
class Sample:
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    errors: int = 0


async def one(session: aiohttp.ClientSession, url: str, model: str, stream: bool, sample: Sample) -> None:
    body = {"model": model, "messages": MESSAGES, "max_tokens": 64, "stream": stream}
    start = time.perf_counter()
    try:
        async with session.post(f"{url}/v1/chat/completions", json=body) as response:
            if response.status != 200:
                sample.errors += 1
                await response.read()
                return
            if not stream:
                json.loads(await response.read())
            else:
                first, done = None, False
                async for line in response.content:
                    if (
                        first is None
                        and line.startswith(b"data: {")
                        and b'"content":"' in line
                        and b'"content":""' not in line
                    ):
                        first = time.perf_counter() - start
                    done = done or line.strip() == b"data: [DONE]"
                if first is None or not done:  # a stream without content or without its end is wrong
                    sample.errors += 1
                    return
                sample.ttfts.append(first)
    except aiohttp.ClientError:
        sample.errors += 1
        return
    sample.latencies.append(time.perf_counter() - start)


async def run(url: str, model: str, stream: bool, concurrency: int, requests: int) -> Sample:
    sample = Sample()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        queue = iter(range(requests))

        async def worker() -> None:
            for _ in queue:
                await one(session, url, model, stream, sample)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        sample.elapsed = time.perf_counter() - start
    return sample


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


async def measure(
    targets: dict[str, tuple[str, str]], concurrencies: list[int], requests: int, rounds: int
) -> list[dict]:
    for url, model in targets.values():  # warm every path (connections, imports, JIT caches)
        await run(url, model, False, 8, 64)
        await run(url, model, True, 8, 64)
    results = []
    for stream in (False, True):
        for concurrency in concurrencies:
            samples: dict[str, Sample] = {name: Sample() for name in targets}
            for _ in range(rounds):  # alternate targets round by round, so drift hits all alike
                for name, (url, model) in targets.items():
                    got = await run(url, model, stream, concurrency, requests)
                    s = samples[name]
                    s.latencies += got.latencies
                    s.ttfts += got.ttfts
                    s.elapsed += got.elapsed
                    s.errors += got.errors
            for name, s in samples.items():
                results.append(
                    {
                        "mode": "stream" if stream else "json",
                        "concurrency": concurrency,
                        "target": name,
                        "p50": pct(s.latencies, 0.5),
                        "p99": pct(s.latencies, 0.99),
                        "rps": len(s.latencies) / s.elapsed if s.elapsed else 0.0,
                        "ttft_p50": pct(s.ttfts, 0.5) if stream else None,
                        "errors": s.errors,
                    }
                )
                print(results[-1], file=sys.stderr, flush=True)
    return results


# --- one Serve mode (child process) ----------------------------------------------------------
def child(args: argparse.Namespace) -> None:
    """Measures one Serve mode in a fresh Ray cluster; writes its results as JSON to ``args.out``."""
    urls = start_router(args.fake_url, args.placements, args.port)
    targets = {"direct": (args.fake_url, "fake")}
    if args.litellm_url:
        targets["litellm"] = (args.litellm_url, args.litellm_model)
    targets |= {f"router {args.child} {p}": (url, "gpt") for p, url in urls.items()}
    results = asyncio.run(measure(targets, args.concurrency, args.requests, args.rounds))
    Path(args.out).write_text(json.dumps(results))


def run_mode(
    mode: str, args: argparse.Namespace, fake_url: str, litellm: tuple[str, str] | None
) -> list[dict]:
    out = Path(tempfile.mkdtemp()) / f"{mode}.json"
    command = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--out",
        str(out),
        "--fake-url",
        fake_url,
        "--requests",
        str(args.requests),
        "--rounds",
        str(args.rounds),
        "--port",
        str(args.port),
        "--concurrency",
        *map(str, args.concurrency),
        "--placements",
        *args.placements,
    ]
    if litellm:
        command += ["--litellm-url", litellm[0], "--litellm-model", litellm[1]]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_SERVE_")} | SERVE_MODES[mode]
    print(f"== Serve mode {mode}", file=sys.stderr, flush=True)
    subprocess.run(command, cwd=ROOT, env=env, check=True)
    return json.loads(out.read_text())


# --- report -------------------------------------------------------------------------------
Key = tuple  # (mode, concurrency, target, run)


def added(results: list[dict], key: str = "p50") -> dict[Key, float]:
    """Milliseconds each target adds over the direct call measured in the same run and setting."""
    base = {(r["mode"], r["concurrency"], r["run"]): r[key] for r in results if r["target"] == "direct"}
    return {
        (r["mode"], r["concurrency"], r["target"], r["run"]): r[key]
        - base[(r["mode"], r["concurrency"], r["run"])]
        for r in results
        if r["target"] != "direct" and r[key] is not None
    }


def by_target(values: dict[Key, float]) -> dict[tuple[str, int, str], float]:
    """Drops the run from the key; LiteLLM, measured once per run, gets the median of its runs."""
    grouped: dict[tuple[str, int, str], list[float]] = {}
    for (mode, c, target, _run), v in values.items():
        grouped.setdefault((mode, c, target), []).append(v)
    return {k: statistics.median(v) for k, v in grouped.items()}


def ratios(values: dict[Key, float]) -> dict[tuple[str, int, str], float]:
    """Ours / LiteLLM, each router setup against LiteLLM as measured in its own run."""
    return {
        (mode, c, target): v / values[(mode, c, "litellm", run)]
        for (mode, c, target, run), v in values.items()
        if target != "litellm" and values.get((mode, c, "litellm", run), 0) > 0
    }


def geomean(values: list[float]) -> float:
    return statistics.geometric_mean([max(v, 0.01) for v in values])


def verdicts(p50: dict, ratio: dict, settings: list[tuple[str, int]], routers: list[str]) -> str:
    """The issue's two targets: the default setup is the fastest measured, and adds less than
    LiteLLM in every setting."""
    score = {t: geomean([p50[(m, c, t)] for m, c in settings if (m, c, t) in p50]) for t in routers}
    fastest = min(score, key=score.get)
    default = DEFAULT_SETUP if DEFAULT_SETUP in score else None
    worse = [
        f"{m} c={c} ({ratio[(m, c, default)]:.2f})"
        for m, c in settings
        if default and ratio.get((m, c, default), 0) >= 1
    ]
    ratios_default = [ratio[(m, c, default)] for m, c in settings if default and (m, c, default) in ratio]
    rows = [
        [
            "the default is the fastest setup (geometric mean of added p50 over every setting)",
            f"fastest: `{fastest}` ({score[fastest]:.1f} ms); default: `{DEFAULT_SETUP}`"
            + (f" ({score[default]:.1f} ms)" if default else " (not measured)"),
            "yes" if default == fastest else "**no**",
        ],
        [
            "the default adds less latency than LiteLLM at every concurrency, JSON and stream",
            f"ours/LiteLLM from {min(ratios_default):.2f} to {max(ratios_default):.2f}"
            if ratios_default
            else "not measured",
            "yes" if ratios_default and not worse else "**no**" + (f": {', '.join(worse)}" if worse else ""),
        ],
    ]
    return table(["target", "measured", "met"], rows)


def report(results: list[dict], concurrencies: list[int], args: argparse.Namespace) -> str:
    p50_runs = added(results)
    p50, ttft = by_target(p50_runs), by_target(added(results, "ttft_p50"))
    settings = [(m, c) for m in ("json", "stream") for c in concurrencies]
    routers = list(dict.fromkeys(k[2] for k in p50 if k[2] != "litellm"))
    targets = (["litellm"] if any(k[2] == "litellm" for k in p50) else []) + routers
    header = ["target"] + [f"{m} c={c}" for m, c in settings]

    def grid(values: dict, names: list[str], fmt: str) -> str:
        return table(
            header,
            [
                [t] + [format(values[(m, c, t)], fmt) if (m, c, t) in values else "n/a" for m, c in settings]
                for t in names
            ],
        )

    body = verdicts(p50, ratios(p50_runs), settings, routers) if "litellm" in targets else ""
    body += "\n\n### Added latency, p50 ms over the direct call\n\n" + grid(p50, targets, "+.1f")
    if "litellm" in targets:
        body += "\n\n### Ours / LiteLLM, added p50 (below 1: the router adds less)\n\n"
        body += grid(ratios(p50_runs), routers, ".2f")
    body += "\n\n### Streams: added time to first token, p50 ms\n\n" + table(
        ["target"] + [f"c={c}" for c in concurrencies],
        [
            [t]
            + [f"{ttft[('stream', c, t)]:+.1f}" if ("stream", c, t) in ttft else "n/a" for c in concurrencies]
            for t in targets
        ],
    )
    body += "\n\n" + plot(p50, results, concurrencies, targets)
    detail = table(
        ["run", "mode", "concurrency", "target", "p50 ms", "p99 ms", "req/s", "TTFT p50 ms", "errors"],
        [
            [
                r["run"],
                r["mode"],
                r["concurrency"],
                r["target"],
                f"{r['p50']:.1f}",
                f"{r['p99']:.1f}",
                f"{r['rps']:.0f}",
                "-" if r["ttft_p50"] is None else f"{r['ttft_p50']:.1f}",
                r["errors"],
            ]
            for r in results
        ],
    )
    body += f"\n\n<details><summary>Every measurement</summary>\n\n{detail}\n\n</details>"
    body += (
        f"\n\n{args.requests} requests per target, setting and round; {args.rounds} rounds alternating "
        "targets, after a warm-up. The fake answers at once, so the numbers are each proxy's own cost "
        "plus the loopback hop; the load generator, the fake, LiteLLM and Ray share the same CPUs. "
        "Errors count non-200 answers and streams that end without content or `[DONE]`. Default setup: "
        f"`{DEFAULT_SETUP}` (`deployments/configs/serve.env`, `serving.cloud_adapters`). LiteLLM: "
        f"{litellm_proxy.describe()}."
    )
    return body


def plot(p50: dict, results: list[dict], concurrencies: list[int], targets: list[str]) -> str:
    links = []
    for mode in ("json", "stream"):
        fig, ax = figure()
        width = 0.8 / max(len(targets), 1)
        for i, target in enumerate(targets):
            xs = [j + i * width for j in range(len(concurrencies))]
            ax.bar(xs, [p50.get((mode, c, target), 0) for c in concurrencies], width, label=target)
        ax.set_xticks(
            [j + 0.4 - width / 2 for j in range(len(concurrencies))], [f"c={c}" for c in concurrencies]
        )
        ax.set_ylabel("added p50 latency, ms")
        ax.set_yscale("log")
        ax.set_title(f"Latency added over a direct call ({mode})")
        ax.legend(fontsize=7)
        links.append(save_plot(fig, f"overhead_{mode}", f"added latency, {mode}"))
    fig, ax = figure()
    for target in ["direct"] + targets:
        rows = [r for r in results if r["target"] == target and r["mode"] == "json"]
        rps = [statistics.median(r["rps"] for r in rows if r["concurrency"] == c) for c in concurrencies]
        ax.plot(concurrencies, rps, marker="o", label=target)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("concurrency")
    ax.set_ylabel("requests per second (JSON)")
    ax.legend(fontsize=7)
    links.append(save_plot(fig, "overhead_throughput", "requests per second by concurrency"))
    return "\n".join(links)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200, help="requests per target, setting and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--placements", nargs="+", default=["in_process", "deployment"])
    parser.add_argument("--serve-modes", nargs="+", default=list(SERVE_MODES), choices=list(SERVE_MODES))
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM (no venv is made)")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 40 requests, 1 round")
    parser.add_argument("--child", choices=list(SERVE_MODES), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--fake-url", help=argparse.SUPPRESS)
    parser.add_argument("--litellm-url", help=argparse.SUPPRESS)
    parser.add_argument("--litellm-model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.requests, args.rounds = 40, 1
    os.chdir(ROOT)
    if args.child:
        return child(args)

    fake, fake_url = start_process("openai")
    litellm_proc = None
    try:
        litellm = None
        if not args.no_litellm:
            litellm_proc, litellm_url, litellm_model = litellm_proxy.start_litellm(fake_url, args.port + 100)
            litellm = (litellm_url, litellm_model)
        results = []
        for mode in args.serve_modes:
            for r in run_mode(mode, args, fake_url, litellm):
                results.append(r | {"run": mode})
    finally:
        if litellm_proc is not None:
            litellm_proxy.stop(litellm_proc)
        fake.terminate()
    write_section("router_overhead", "Router overhead", report(results, args.concurrency, args))


if __name__ == "__main__":
    main()
