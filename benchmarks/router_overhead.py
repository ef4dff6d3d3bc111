"""Router overhead: the same chat requests sent to a fast local OpenAI-compatible fake directly and
through the router, in alternating rounds of one run.

Each router setup is its own Serve application in one Ray cluster: cloud adapters in the ingress
(``in_process``) and as their own deployment (``deployment``). Reported per setup, concurrency and
mode (JSON, stream): latency p50/p99, the p50 the router adds over the direct call, requests per
second, and for streams the time to first token.

Run: .venv/bin/python benchmarks/router_overhead.py [--requests 200] [--concurrency 1 16 64]
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
import yaml
from _results import table, write_section

ROOT = Path(__file__).resolve().parents[1]
MESSAGES = [{"role": "user", "content": "What is Kubernetes? Answer in one sentence."}]


def start_fake() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.serve", "openai", "--no-auth"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("READY "):
        raise RuntimeError(f"the fake did not start: {line!r}")
    return proc, line.split()[1]


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
        "routing": {"auto": {k: ["gpt"] for k in (
            "long_context", "medium_context", "code_generation", "high_complexity", "low_latency", "default")}},
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
        urls[f"router ({placement})"] = f"http://127.0.0.1:{port}/{placement}"
    return urls


@dataclass
class Sample:
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    errors: int = 0


async def one(session: aiohttp.ClientSession, url: str, model: str, stream: bool, sample: Sample) -> None:
    body = {"model": model, "messages": MESSAGES, "max_tokens": 64, "stream": stream}
    start = time.perf_counter()
    async with session.post(f"{url}/v1/chat/completions", json=body) as response:
        if response.status != 200:
            sample.errors += 1
            await response.read()
            return
        if stream:
            first = None
            async for line in response.content:
                if first is None and line.startswith(b"data: {") and b'"content":"' in line and b'"content":""' not in line:
                    first = time.perf_counter() - start
            sample.ttfts.append(first if first is not None else time.perf_counter() - start)
        else:
            json.loads(await response.read())
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


async def measure(targets: dict[str, tuple[str, str]], concurrencies: list[int], requests: int, rounds: int) -> list[list]:
    rows = []
    for stream in (False, True):
        for concurrency in concurrencies:
            samples: dict[str, Sample] = {name: Sample() for name in targets}
            for _ in range(rounds):  # alternate targets round by round, so drift hits all alike
                for name, (url, model) in targets.items():
                    got = await run(url, model, stream, concurrency, requests)
                    samples[name].latencies += got.latencies
                    samples[name].ttfts += got.ttfts
                    samples[name].elapsed += got.elapsed
                    samples[name].errors += got.errors
            base = statistics.median(samples["direct"].latencies) * 1000
            for name, s in samples.items():
                p50 = statistics.median(s.latencies) * 1000
                rows.append([
                    "stream" if stream else "json", concurrency, name, f"{p50:.1f}", f"{pct(s.latencies, 0.99):.1f}",
                    "-" if name == "direct" else f"{p50 - base:+.1f}",
                    f"{len(s.latencies) / s.elapsed:.0f}", f"{pct(s.ttfts, 0.5):.1f}" if stream else "-", s.errors,
                ])
                print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200, help="requests per target, setting and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--placements", nargs="+", default=["in_process", "deployment"])
    parser.add_argument("--port", type=int, default=8123)
    args = parser.parse_args()
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    fake, fake_url = start_fake()
    try:
        urls = start_router(fake_url, args.placements, args.port)
        targets = {"direct": (fake_url, "fake"), **{name: (url, "gpt") for name, url in urls.items()}}
        rows = asyncio.run(measure(targets, args.concurrency, args.requests, args.rounds))
    finally:
        fake.terminate()
    body = table(
        ["mode", "concurrency", "target", "p50 ms", "p99 ms", "added p50 ms", "req/s", "TTFT p50 ms", "errors"], rows
    )
    body += (
        f"\n\n{args.requests} requests per target, setting and round, {args.rounds} rounds alternating targets. "
        "The fake answers at once, so the numbers are the router's own cost plus the loopback hop."
    )
    write_section("router_overhead", "Router overhead", body)


if __name__ == "__main__":
    main()
