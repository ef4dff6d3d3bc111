"""A LiteLLM proxy in front of the local OpenAI fake, as the yardstick for the router-overhead benchmark.

Why: the router's added latency means little alone; the benchmark also sends the same requests
through the LiteLLM proxy, pointed at the same fake in the same run, and reports ours/LiteLLM.

How: LiteLLM lives in its own virtual environment (``benchmarks/.venv-litellm``) so its many pins
never touch the project's. ``ensure_venv()`` builds it once per pinned version. ``start_litellm()``
writes a one-model config, starts ``litellm`` in its own process group with LiteLLM's documented
production settings, and waits for ``/health/liveliness``. There is no database and no master key,
and everything that would reach the internet is turned off, so nothing waits on the network.

Settings, from LiteLLM's "Best Practices for Production" page and the proxy CLI's source:

- ``--num_workers 2``: the page says to match uvicorn workers to the CPU count (``$(nproc)``).
  That is 2 here, and it is also what our router gets on this box: a Serve HTTP proxy process
  plus one ingress replica process, 2 processes.
- ``LITELLM_LOG=ERROR`` ("turn off FastAPI's default info logs"; it also sets uvicorn's level to
  error, so no access log line per request) and ``set_verbose: False``. From the config LiteLLM's
  own benchmarks page uses: ``callbacks: []`` and ``num_retries: 0`` (the fake never fails, so
  no retry would happen anyway; this only drops the retry bookkeeping). ``json_logs`` is left off:
  it only formats logs, and it swaps in a uvicorn log config with its own levels.
- ``LITELLM_MODE=PRODUCTION``: no ``load_dotenv()``.
- No network: ``LITELLM_LOCAL_MODEL_COST_MAP`` (else the cost map is fetched from GitHub at
  import), ``LITELLM_LOCAL_BLOG_POSTS``, ``LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS``, and
  ``LITELLM_TELEMETRY_DISABLED`` (the telemetry veto; it is opt-in anyway).
- uvicorn with uvloop, LiteLLM's default server; the default ``simple-shuffle`` routing.
- No master key: the router runs with auth off in the benchmark, so LiteLLM does too. LiteLLM
  1.108 refuses to boot keyless unless ``general_settings.dangerously_permit_weak_or_unset_master_key``
  is set, so the config sets it.
- Redis, spend logs, alerting and the rest of the page need a database or are off by default.

Pinned version: the newest release whose ``litellm[proxy]`` installs. 1.108.8 to 1.110.2 pin
proxy packages (``litellm-proxy``, ``litellm-proxy-extras`` and ``litellm-enterprise`` post
releases) that the registry does not have.

Run alone as a sanity check (nothing is written to RESULTS.md):
    .venv/bin/python benchmarks/litellm_proxy.py [--requests 200] [--concurrency 1 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

LITELLM_VERSION = "1.108.7"
WORKERS = 2
MODEL_NAME = "fake"

BENCH = Path(__file__).resolve().parent
VENV = BENCH / ".venv-litellm"
MARKER = VENV / ".litellm-version"

LITELLM_ENV = {
    "LITELLM_LOG": "ERROR",
    "LITELLM_MODE": "PRODUCTION",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_TELEMETRY_DISABLED": "True",
}
# Variables that would give LiteLLM a database, a master key or another upstream.
DROPPED_ENV = (
    "DATABASE_URL",
    "LITELLM_MASTER_KEY",
    "LITELLM_SALT_KEY",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_API_BASE",
    "REDIS_HOST",
    "REDIS_URL",
)


def describe() -> str:
    """One line for RESULTS.md: what ran."""
    return f"litellm[proxy] {LITELLM_VERSION}, {WORKERS} uvicorn workers, no database, logging at ERROR"


def log(message: str) -> None:
    print(f"[litellm] {message}", file=sys.stderr, flush=True)


# --- the virtual environment ----------------------------------------------------------------------


def ensure_venv() -> Path:
    """Creates benchmarks/.venv-litellm with litellm[proxy]==LITELLM_VERSION once; returns its python."""
    python = VENV / "bin" / "python"
    if python.exists() and MARKER.exists() and MARKER.read_text().strip() == LITELLM_VERSION:
        return python
    start = time.perf_counter()
    if not python.exists():
        log(f"creating {VENV}")
        subprocess.run(["python3.11", "-m", "venv", str(VENV)], check=True)
    log(f"installing litellm[proxy]=={LITELLM_VERSION} (about a minute)")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"litellm[proxy]=={LITELLM_VERSION}"],
        check=True,
        stdout=sys.stderr,
    )
    MARKER.write_text(LITELLM_VERSION + "\n")
    log(f"installed in {time.perf_counter() - start:.0f} s")
    return python


# --- the proxy ------------------------------------------------------------------------------------


def write_config(fake_url: str) -> Path:
    config = {
        "model_list": [
            {
                "model_name": MODEL_NAME,
                "litellm_params": {"model": "openai/fake", "api_base": f"{fake_url}/v1", "api_key": "none"},
            }
        ],
        # set_verbose: the production page; callbacks and num_retries: LiteLLM's own benchmark config.
        "litellm_settings": {"set_verbose": False, "callbacks": [], "num_retries": 0},
        # No master key, like the router's benchmark setup (auth off); this LiteLLM refuses to boot
        # keyless unless told so.
        "general_settings": {"dangerously_permit_weak_or_unset_master_key": True},
    }
    path = Path(tempfile.mkdtemp(prefix="litellm-")) / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def proxy_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    env.update(LITELLM_ENV)
    return env


def start_litellm(
    fake_url: str, port: int, workers: int = WORKERS, timeout_s: float = 120.0
) -> tuple[subprocess.Popen, str, str]:
    """Starts the LiteLLM proxy on 127.0.0.1:port in front of the fake; returns (process, base URL, model)."""
    python = ensure_venv()
    if port_taken(port):  # else the readiness probe could be answered by whatever holds it
        raise RuntimeError(f"port {port} is already in use; pick another for LiteLLM")
    config = write_config(fake_url)
    output = config.with_name("proxy.log").open("w+b")
    proc = subprocess.Popen(
        [
            str(python.with_name("litellm")),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            str(workers),
        ],
        cwd=config.parent,
        env=proxy_env(),
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so stop() reaches the uvicorn workers too
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, base_url, timeout_s)
    except (RuntimeError, TimeoutError) as error:
        stop(proc)
        output.seek(0)
        tail = output.read().decode(errors="replace")[-4000:]
        raise RuntimeError(
            f"LiteLLM proxy did not become ready on {base_url} ({error}); its output:\n{tail}"
        ) from None
    except BaseException:  # Ctrl-C while waiting: leave no proxy behind
        stop(proc)
        raise
    log(f"LiteLLM {LITELLM_VERSION} ready on {base_url} with {workers} workers")
    return proc, base_url, MODEL_NAME


def port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_ready(proc: subprocess.Popen, base_url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{base_url}/health/liveliness", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"no answer in {timeout_s:.0f} s")


def stop(proc: subprocess.Popen, timeout_s: float = 15.0) -> None:
    """SIGTERM to the proxy's process group, SIGKILL if it is still there after timeout_s."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


# --- checks ---------------------------------------------------------------------------------------


async def check(base_url: str, model: str) -> None:
    """One JSON and one streamed chat completion through base_url must answer 200 with content."""
    import aiohttp

    body = {"model": model, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 64}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base_url}/v1/chat/completions", json=body) as response:
            text = await response.text()
            content = json.loads(text)["choices"][0]["message"]["content"] if response.status == 200 else ""
            if not content:
                raise RuntimeError(
                    f"JSON completion through {base_url} failed: {response.status} {text[:500]}"
                )
        async with session.post(f"{base_url}/v1/chat/completions", json={**body, "stream": True}) as response:
            text = await response.text()
            events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
            chunks = [json.loads(e) for e in events if e != "[DONE]"]
            content = "".join(
                (c["choices"][0]["delta"].get("content") or "") for c in chunks if c.get("choices")
            )
            if response.status != 200 or not content or events[-1:] != ["[DONE]"]:
                raise RuntimeError(
                    f"streamed completion through {base_url} failed: {response.status} {text[:500]}"
                )


async def warm_up(base_url: str, model: str, requests: int = 100, concurrency: int = 4) -> None:
    """LiteLLM imports much of itself on first use, in each worker: send some of each kind first."""
    import aiohttp

    body = {"model": model, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 64}
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> None:
            async with session.post(
                f"{base_url}/v1/chat/completions", json={**body, "stream": i % 2 == 1}
            ) as r:
                await r.read()

        for start in range(0, requests, concurrency):
            await asyncio.gather(*(one(i) for i in range(start, min(requests, start + concurrency))))


# --- sanity run -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--workers", type=int, default=WORKERS)
    parser.add_argument("--port", type=int, default=4123)
    args = parser.parse_args()
    sys.path.insert(0, str(BENCH))
    from router_overhead import pct, run, start_fake  # the benchmark's own load generator

    fake, fake_url = start_fake()
    proxy = None
    try:
        proxy, url, model = start_litellm(fake_url, args.port, args.workers)
        asyncio.run(check(url, model))
        log("JSON and streamed completions through LiteLLM: ok")
        asyncio.run(warm_up(url, model))
        asyncio.run(warm_up(fake_url, "fake"))
        targets = {"direct": (fake_url, "fake"), "litellm": (url, model)}
        print(f"{'mode':6} {'c':>3} {'target':8} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>7} {'errors':>6}")
        for stream in (False, True):
            for concurrency in args.concurrency:
                for name, (target, target_model) in targets.items():
                    s = asyncio.run(run(target, target_model, stream, concurrency, args.requests))
                    print(
                        f"{'stream' if stream else 'json':6} {concurrency:>3} {name:8} "
                        f"{pct(s.latencies, 0.5):8.2f} {pct(s.latencies, 0.99):8.2f} "
                        f"{len(s.latencies) / s.elapsed:7.0f} {s.errors:>6}",
                        flush=True,
                    )
    finally:
        if proxy is not None:
            stop(proxy)
        fake.terminate()
        fake.wait()


if __name__ == "__main__":
    main()
