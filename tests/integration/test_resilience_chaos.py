"""Chaos on the real Serve app: a backend deployment's replica is killed while streams run.

Every stream must end cleanly: completed (through a fallback when the failure came before any
content), or with an OpenAI error event and ``[DONE]``; none may hang, and the app keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

pytestmark = pytest.mark.ray

STREAMS = 8


def kill_replicas(app: str, deployment: str) -> int:
    import ray

    killed = 0
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["name"].startswith(f"SERVE_REPLICA::{app}#{deployment}#"):
            ray.kill(ray.get_actor(actor["name"], namespace=actor["namespace"]), no_restart=True)
            killed += 1
    return killed


async def one_stream(client: httpx.AsyncClient, url: str, started: asyncio.Event) -> dict:
    body = {
        "model": "auto:rules",
        "messages": [{"role": "user", "content": "Tell me a long story."}],
        "max_tokens": 400,
        "stream": True,
    }
    events: list[str] = []
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
                if len(events) == 3:
                    started.set()
    return {
        "status": response.status_code,
        "events": events,
        "fallbacks": response.headers.get("x-router-fallbacks"),
    }


async def test_killing_the_engine_replica_mid_stream_ends_every_stream_cleanly(cloud_url):
    # "Tell me a long story." routes to mistral-7b-instruct on the CPU engine, which generates one
    # request at a time: when its replica dies, the stream being generated ends with an error event,
    # and the streams still waiting for their first token fall back (to mistral-7b-fast, a kserve fake).
    started = asyncio.Event()
    async with httpx.AsyncClient(timeout=httpx.Timeout(90)) as client:
        tasks = [asyncio.create_task(one_stream(client, cloud_url, started)) for _ in range(STREAMS)]
        await asyncio.wait_for(started.wait(), timeout=60)
        assert kill_replicas("cloud", "CPUEngine") >= 1
        results = await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)  # none hangs
    broken = 0
    for result in results:
        assert result["events"][-1] == "[DONE]", result["events"][-3:]
        payloads = [json.loads(e) for e in result["events"][:-1]] if result["status"] == 200 else []
        errors = [p for p in payloads if "error" in p]
        if errors:
            broken += 1
            assert len(errors) == 1 and payloads[-1] is errors[0]
            assert errors[0]["error"]["type"] and errors[0]["error"]["message"]
    assert broken >= 1, "the kill should have cut at least one running stream"
    # The app keeps serving: auto routing answers at once (from a fallback while the engine is back up).
    answer = httpx.post(
        f"{cloud_url}/v1/chat/completions",
        timeout=60,
        json={"model": "auto", "messages": [{"role": "user", "content": "What is Kubernetes?"}]},
    )
    assert answer.status_code == 200, answer.text
    _wait_for_engine(cloud_url)


def _wait_for_engine(url: str, timeout: float = 120) -> None:
    """Serve replaces the killed replica; later tests get the engine back."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = httpx.get(f"{url}/health", timeout=10).json()
        if health["models"]["mistral-7b-instruct"]["available"]:
            response = httpx.post(
                f"{url}/v1/chat/completions",
                timeout=60,
                json={
                    "model": "mistral-7b-instruct",
                    "messages": [{"role": "user", "content": "hi"}],
                    "max_tokens": 2,
                },
            )
            if response.status_code == 200:
                return
        time.sleep(1)
    raise AssertionError("the engine deployment did not recover")
