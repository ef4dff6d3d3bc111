"""Ingress memory: the resident memory of the router's ingress replica over many requests.

One Ray cluster and one Serve application (cloud adapters in the ingress, ``in_process``) bound
to the fast local OpenAI-compatible fake. After a warm-up, ``--requests`` chat completions go
through Serve's HTTP ingress, in the mode the router ships with (``deployments/configs/serve.env``:
HAProxy, throughput-optimized), at ``--concurrency``; the ingress replica's RSS and USS (psutil, on
the replica's OS process: the one titled ``ray::ServeReplica:<app>:RouterIngress`` under this
cluster's raylet) are sampled every ``--every`` requests served, and once idle after the warm-up
and after the last request.

The requests are a seeded mix, so per-request state would show up as growth: half streamed
(some with ``include_usage``), half JSON; explicit model and ``auto`` routing; one to three
messages of varying length; a unique ``x-request-id``, ``user`` and prompt text per request. The
response cache is on (memory backend, its default 10,000 entries): a quarter of the requests
are deterministic (``temperature: 0``) questions from a pool of 50, so after the warm-up they
are mostly cache hits, JSON and replayed streams alike; the rest (``temperature: 0.7``) cannot be
cached and go to the fake. The pool keeps the cache itself (bounded by design) from filling
during the run, so what remains is the router's own per-request memory. The budget ledger is a
throw-away SQLite file.

Verdict ``steady``: RSS grew less than ``GROWTH_LIMIT_PCT`` from the idle sample after the
warm-up to the idle sample at the end, and the linear fit over the second half of the run, at its
slope, would add less than ``SLOPE_LIMIT_PCT`` of the warm-up RSS over the whole run; else
``growing``.

A second run, in a fresh cluster, leaves ``MALLOC_ARENA_MAX`` at glibc's default (one arena per
thread, up to eight per core) to show why ``serve.env`` sets it to 2 (``--no-compare`` skips it).

Run: .venv/bin/python benchmarks/ingress_memory.py [--requests 20000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil
import yaml
from _results import figure, save_plot, table, write_section
from router_overhead import router_config, start_fake

ROOT = Path(__file__).resolve().parents[1]
APP = "ingress-memory"
INGRESS_ACTOR = f"ServeReplica:{APP}:RouterIngress"
MB = 1024 * 1024
ARENAS = "MALLOC_ARENA_MAX"  # serve.env sets it; the comparison run leaves glibc's default
GROWTH_LIMIT_PCT = 5.0  # warm-up -> end
SLOPE_LIMIT_PCT = 2.0  # what the second half's slope adds over the whole run
SETTLE_S = 2.0  # idle time before an idle sample

VOCAB = (
    "kubernetes",
    "pod",
    "node",
    "cluster",
    "latency",
    "budget",
    "token",
    "router",
    "model",
    "stream",
    "cache",
    "replica",
    "deploy",
    "scale",
    "memory",
    "network",
    "request",
    "response",
    "python",
    "ray",
    "serve",
    "gpu",
    "cpu",
    "queue",
    "retry",
    "timeout",
    "health",
    "metric",
    "trace",
    "log",
    "error",
    "fallback",
    "provider",
    "prompt",
    "answer",
    "summary",
    "code",
    "review",
    "design",
    "test",
)
FAQ = [f"In one sentence, what is {a} {b}?" for a in VOCAB[:10] for b in VOCAB[10:15]]  # 50 questions


@dataclass
class Sample:
    served: int  # requests served so far, warm-up included
    rss_mb: float
    uss_mb: float
    idle: bool = False


@dataclass
class Load:
    served: int = 0
    errors: int = 0
    cache_hits: int = 0
    streams: int = 0
    elapsed: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    first_error: str | None = None


# --- the router -------------------------------------------------------------------------


def bench_config(fake_url: str, state_dir: Path) -> dict:
    config = router_config(fake_url, "in_process")
    config["ledger"] = {"path": str(state_dir / "ledger.db")}
    config["cache"] = {"enabled": True, "backend": "memory", "max_entries": 10_000}  # the defaults, stated
    return config


def start_router(config: dict, port: int, state_dir: Path, env: dict[str, str]) -> str:
    """A fresh Ray cluster started with ``env`` (the Ray processes inherit this one's environment)."""
    os.environ.pop(ARENAS, None)
    os.environ.update(env)
    import ray
    from ray import serve

    from deployments.builder import build_app

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    path = state_dir / "router.yaml"
    path.write_text(yaml.safe_dump(config))
    serve.run(build_app({"config_path": str(path)}), name=APP, route_prefix="/")
    return f"http://127.0.0.1:{port}"


def stop_router() -> None:
    import ray
    from ray import serve

    if ray.is_initialized():
        serve.shutdown()
        ray.shutdown()


def ingress_process() -> psutil.Process:
    """The ingress replica's OS process: titled ``ray::ServeReplica:<app>:RouterIngress``, a child of
    this cluster's raylet (Ray's state API needs the dashboard, which this cluster runs without)."""
    import ray

    cluster = f"--gcs-address={ray.get_runtime_context().gcs_address}"
    found = []
    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            title = (process.info["cmdline"] or [""])[0]
            if title == f"ray::{INGRESS_ACTOR}" and cluster in process.parent().cmdline():
                found.append(process)
    if len(found) != 1:
        pids = [p.pid for p in found]
        raise RuntimeError(f"expected one {INGRESS_ACTOR} in this cluster, found pids {pids}")
    return found[0]


def memory_sample(process: psutil.Process, served: int, idle: bool = False) -> Sample:
    info = process.memory_full_info()  # USS reads /proc/<pid>/smaps: a few ms
    return Sample(served, info.rss / MB, info.uss / MB, idle)


# --- the load ---------------------------------------------------------------------------


def words(rng: random.Random) -> str:
    return " ".join(rng.choices(VOCAB, k=rng.randint(5, 300)))


def chat_request(i: int, rng: random.Random) -> dict:
    """Request ``i`` of the seeded mix (see the module docstring)."""
    stream = rng.random() < 0.5
    if rng.random() < 0.25:  # deterministic: cacheable
        messages = [{"role": "user", "content": rng.choice(FAQ)}]
        body: dict = {"model": "gpt", "messages": messages, "temperature": 0}
    else:
        turns = rng.randint(0, 2)
        history = [{"role": ("user", "assistant")[t % 2], "content": words(rng)} for t in range(turns)]
        messages = [*history, {"role": "user", "content": f"Request {i}: {words(rng)}"}]
        model = rng.choice(["gpt", "auto"])
        body = {"model": model, "messages": messages, "temperature": 0.7, "user": f"user-{i}"}
    body.update(stream=stream, max_tokens=rng.choice([4, 64, 256]))
    if stream and rng.random() < 0.5:
        body["stream_options"] = {"include_usage": True}
    return body


async def one(session: aiohttp.ClientSession, url: str, body: dict, load: Load) -> None:
    headers = {"x-request-id": f"mem-{uuid.uuid4().hex}"}
    async with session.post(f"{url}/v1/chat/completions", json=body, headers=headers) as response:
        payload = await response.read()
        ok = response.status == 200 and b'"error":' not in payload
        if body["stream"]:
            ok = ok and payload.rstrip().endswith(b"data: [DONE]")
        if not ok:
            load.errors += 1
            load.first_error = load.first_error or f"{response.status}: {payload[:200]!r}"
        load.cache_hits += response.headers.get("x-router-cache") == "hit"
        load.streams += bool(body["stream"])


async def send(
    url: str, first: int, count: int, load: Load, process: psutil.Process, args: argparse.Namespace
) -> None:
    """Requests ``first`` .. ``first + count - 1``; a memory sample every ``args.every`` served."""
    rng = random.Random(first)
    bodies = (chat_request(i, rng) for i in range(first, first + count))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.concurrency)) as session:

        async def worker() -> None:
            for body in bodies:
                try:
                    await one(session, url, body, load)
                except aiohttp.ClientError as exc:
                    load.errors += 1
                    load.first_error = load.first_error or repr(exc)
                load.served += 1
                if load.served % args.every == 0:
                    show(load.samples, memory_sample(process, load.served))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        load.elapsed += time.perf_counter() - start


def show(samples: list[Sample], sample: Sample) -> None:
    samples.append(sample)
    state = "idle" if sample.idle else "load"
    print(
        f"{sample.served:>6} served ({state}): RSS {sample.rss_mb:.1f} MB, USS {sample.uss_mb:.1f} MB",
        flush=True,
    )


async def idle_sample(process: psutil.Process, load: Load) -> None:
    await asyncio.sleep(SETTLE_S)
    show(load.samples, memory_sample(process, load.served, idle=True))


async def measure(url: str, process: psutil.Process, args: argparse.Namespace) -> tuple[int, Load]:
    """The warm-up's error count, and the measured run (its samples from the very start)."""
    load = Load()
    show(load.samples, memory_sample(process, 0, idle=True))
    await send(url, 0, args.warmup, load, process, args)
    warmup_errors = load.errors
    await idle_sample(process, load)
    load.errors = load.cache_hits = load.streams = 0
    load.elapsed = 0.0
    await send(url, args.warmup, args.requests, load, process, args)
    await idle_sample(process, load)
    return warmup_errors, load


# --- the verdict ------------------------------------------------------------------------


@dataclass
class Verdict:
    start_mb: float
    end_mb: float
    max_mb: float
    growth_mb: float
    growth_pct: float
    slope_kb: float  # per 1000 requests, second half
    intercept_mb: float  # of that fit, at 0 requests served
    projected_pct: float  # the slope over the whole run, in % of the warm-up RSS
    steady: bool


def warmed(samples: list[Sample], warmup: int) -> Sample:
    """The idle sample right after the warm-up: the baseline."""
    return next(s for s in samples if s.idle and s.served == warmup)


def verdict(samples: list[Sample], warmup: int, requests: int) -> Verdict:
    start = warmed(samples, warmup)
    end = samples[-1]
    measured = [s for s in samples if s.served >= warmup]
    half = [s for s in measured if not s.idle and s.served >= warmup + requests / 2]  # all under load
    fit = statistics.linear_regression([s.served for s in half], [s.rss_mb for s in half])
    slope_kb = fit.slope * 1000 * 1024  # MB per request -> KB per 1000 requests
    projected_pct = fit.slope * requests / start.rss_mb * 100
    growth = end.rss_mb - start.rss_mb
    growth_pct = growth / start.rss_mb * 100
    steady = growth_pct < GROWTH_LIMIT_PCT and projected_pct < SLOPE_LIMIT_PCT
    return Verdict(
        start.rss_mb,
        end.rss_mb,
        max(s.rss_mb for s in measured),
        growth,
        growth_pct,
        slope_kb,
        fit.intercept,
        projected_pct,
        steady,
    )


# --- the report -------------------------------------------------------------------------


def plot(samples: list[Sample], warmup: int, requests: int, result: Verdict, glibc: Load | None) -> str:
    fig, ax = figure()
    xs = [s.served for s in samples]
    ax.plot(xs, [s.rss_mb for s in samples], marker=".", label=f"RSS ({ARENAS}=2, shipped)")
    ax.plot(xs, [s.uss_mb for s in samples], marker=".", alpha=0.6, label=f"USS ({ARENAS}=2, shipped)")
    if glibc is not None:
        other = [s.served for s in glibc.samples]
        ax.plot(
            other,
            [s.rss_mb for s in glibc.samples],
            linestyle="--",
            alpha=0.8,
            label="RSS (glibc default arenas)",
        )
    ax.axvline(warmup, color="grey", linestyle="--", linewidth=1, label="end of warm-up")
    fit_x = [warmup + requests / 2, warmup + requests]
    fit_y = [result.intercept_mb + result.slope_kb / 1024 / 1000 * x for x in fit_x]
    label = f"second-half fit: {result.slope_kb:+.0f} KB / 1000 requests"
    ax.plot(fit_x, fit_y, color="black", linewidth=1.5, label=label)
    ax.set_xlabel("requests served (warm-up included)")
    ax.set_ylabel("MB")
    ax.set_title("Ingress replica memory")
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower right")
    return save_plot(fig, "ingress_memory", "Ingress replica RSS and USS (MB) vs requests served")


def allocators(shipped: Verdict, glibc: Verdict) -> str:
    """The same run with glibc's default malloc arenas (one per thread, up to 8 per core)."""
    rows = [
        [
            name,
            f"{v.growth_mb:+.1f} MB ({v.growth_pct:+.2f}%)",
            f"{v.slope_kb:+.0f} KB",
            "steady" if v.steady else "growing",
        ]
        for name, v in ((f"`{ARENAS}=2` (shipped, `serve.env`)", shipped), ("glibc's default arenas", glibc))
    ]
    return table(["allocator", "growth, warm-up to end", "slope per 1000 requests", "verdict"], rows)


def report(
    warmup_errors: int, load: Load, args: argparse.Namespace, runtime_s: float, glibc: Load | None
) -> str:
    result = verdict(load.samples, args.warmup, args.requests)
    start = warmed(load.samples, args.warmup)
    rows = [
        ["RSS after warm-up (idle)", f"{result.start_mb:.1f} MB"],
        ["RSS at the end (idle)", f"{result.end_mb:.1f} MB"],
        ["RSS max (measured run)", f"{result.max_mb:.1f} MB"],
        ["growth, warm-up to end", f"{result.growth_mb:+.1f} MB ({result.growth_pct:+.2f}%)"],
        ["slope, second half (linear fit)", f"{result.slope_kb:+.0f} KB per 1000 requests"],
        ["USS after warm-up / at the end", f"{start.uss_mb:.1f} / {load.samples[-1].uss_mb:.1f} MB"],
        ["verdict", "**steady**" if result.steady else "**growing**"],
        ["requests (measured) / errors", f"{args.requests:,} / {load.errors}"],
        ["streamed / cache hits", f"{load.streams:,} / {load.cache_hits:,}"],
        ["request rate", f"{args.requests / load.elapsed:.0f} req/s at concurrency {args.concurrency}"],
    ]
    body = table(["measure", "value"], rows)
    if glibc is not None:
        body += "\n\nThe same run, in a fresh cluster, with the allocator's default instead:\n\n"
        body += allocators(result, verdict(glibc.samples, args.warmup, args.requests))
    body += "\n\n" + plot(load.samples, args.warmup, args.requests, result, glibc)
    body += (
        f"\n\nThe ingress replica's memory (psutil, by its OS pid) sampled every {args.every} requests "
        f"under load, and idle ({SETTLE_S:g} s) before the run and at its end, after a warm-up of "
        f"{args.warmup:,} requests ({warmup_errors} errors). Requests: a seeded mix of JSON and streamed "
        "chat completions through Serve (HAProxy mode, `serve.env`) to the fast local fake, explicit model "
        "and `auto`, 1-3 messages of 5-300 words, a unique request id, user and prompt each; a quarter are "
        "deterministic questions from a pool of 50, answered from the response cache (on, memory "
        "backend) after their first time, the rest uncacheable. "
        f"The verdict is `steady` when RSS grew under {GROWTH_LIMIT_PCT:g}% of the warm-up RSS and the "
        f"second half's slope would add under {SLOPE_LIMIT_PCT:g}% of it over the whole run "
        f"(here {result.growth_pct:+.2f}% and {result.projected_pct:+.2f}%), else `growing`. "
        f"Runtime {runtime_s:.0f} s, cluster start included."
    )
    return body


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20_000, help="measured requests, after the warm-up")
    parser.add_argument("--warmup", type=int, default=5_000)
    parser.add_argument("--every", type=int, default=500, help="requests between memory samples")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--port", type=int, default=8124)
    parser.add_argument("--no-compare", action="store_true", help="skip the run with glibc's default arenas")
    args = parser.parse_args()
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    from deployments.configs.profiles import serve_env

    started = time.perf_counter()
    fake, fake_url = start_fake()
    try:
        warmup_errors, load = run_once(fake_url, args, serve_env())  # as the router ships
        glibc = None
        if not args.no_compare:
            glibc_errors, glibc = run_once(
                fake_url, args, {k: v for k, v in serve_env().items() if k != ARENAS}
            )
            warmup_errors += glibc_errors
            load.errors += glibc.errors
    finally:
        fake.terminate()
        fake.wait(timeout=10)
    body = report(warmup_errors, load, args, time.perf_counter() - started, glibc)
    print(body, flush=True)
    write_section("ingress_memory", "Ingress memory", body)
    if warmup_errors or load.errors:
        raise SystemExit(f"{warmup_errors + load.errors} requests failed; the first: {load.first_error}")


def run_once(fake_url: str, args: argparse.Namespace, env: dict[str, str]) -> tuple[int, Load]:
    state_dir = Path(tempfile.mkdtemp(prefix="ingress-memory-"))
    try:
        url = start_router(bench_config(fake_url, state_dir), args.port, state_dir, env)
        return asyncio.run(measure(url, ingress_process(), args))
    finally:
        stop_router()


if __name__ == "__main__":
    main()
