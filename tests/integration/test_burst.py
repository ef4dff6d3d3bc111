"""A traffic burst against the running Serve app: the real CPU engine (one generation at a time,
so a few concurrent requests saturate it), every cloud provider on its fast local fake, streamed
through the official openai SDK with a latency need, as a user's client would send them.

What a user relies on: while the self-hosted engine is saturated, the excess spills to the cloud
and says why; no request is lost or fails; the engine keeps serving through the burst; and once
the burst has drained, traffic is back on the self-hosted models. Nothing here is timed: the burst
goes on until spill-over has been seen (or a generous cap), and the waits poll.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import openai
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

STRATEGY = "auto:rules"  # the keyword tree: a plain question goes to the default, self-hosted model
QUESTION = [{"role": "user", "content": "Tell me a story about a lighthouse."}]
NEED_MS = 2_000  # the requests' own max_latency_ms: a stream's first token within 2 s
MAX_TOKENS = 256  # a few tenths of a second of the demo model's decoding, per request
ARRIVAL_S = 0.1  # one request every 0.1 s, whatever is in flight: several times what one engine serves
MAX_REQUESTS = 300  # the burst's cap, should spill-over never show
SELF_HOSTED = "self_hosted"
POOL_MODEL = "mistral-7b-instruct"  # a model on the CPU engine; /v1/stats shows its pool's load
SPILL = re.compile(
    r"^spill: ~\d+ queued on (mistral-7b-instruct|mistral-7b-fast|codellama-13b), "
    r"est\. first token \d+\.\d s > \d+\.\d s; "
)


@dataclass
class Answer:
    sent: float  # when the client sent it (monotonic)
    done: float
    status: int
    model: str
    provider: str
    reason: str
    text: str


async def ask(sdk: openai.AsyncOpenAI) -> Answer:
    sent = time.monotonic()
    async with sdk.chat.completions.with_streaming_response.create(
        model=STRATEGY,
        messages=QUESTION,
        max_tokens=MAX_TOKENS,
        stream=True,
        extra_body={"max_latency_ms": NEED_MS},
    ) as response:
        text = ""
        async for chunk in await response.parse():
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
        headers = response.headers
        return Answer(
            sent,
            time.monotonic(),
            response.status_code,
            headers["x-router-model"],
            headers["x-router-provider"],
            headers["x-router-reason"],
            text,
        )


async def pool_load(url: str) -> dict:
    async with httpx.AsyncClient(timeout=10) as client:
        stats = (await client.get(f"{url}/v1/stats")).json()
    return stats["models"][POOL_MODEL]["load"]


def spilled(answers: list[Answer]) -> list[Answer]:
    return [a for a in answers if a.provider != SELF_HOSTED and a.reason.startswith("spill:")]


def served_while_spilling(answers: list[Answer]) -> list[Answer]:
    """Self-hosted answers to requests sent after a spilled answer had come back: the spilling
    decision was made before they were, and the engine still took them."""
    first = min((a.done for a in spilled(answers)), default=None)
    return [a for a in answers if first is not None and a.provider == SELF_HOSTED and a.sent > first]


async def burst(sdk: openai.AsyncOpenAI, url: str) -> tuple[list[Answer], list[dict]]:
    """Requests arriving every ``ARRIVAL_S`` until spill-over and the engine serving through it
    have both been seen (at least a few times), then drained; /v1/stats polled all along."""
    tasks: list[asyncio.Task[Answer]] = []
    loads: list[dict] = []

    def seen_enough() -> bool:
        done = [t.result() for t in tasks if t.done() and not t.exception()]
        return len(spilled(done)) >= 5 and len(served_while_spilling(done)) >= 2

    async def watch() -> None:
        while True:
            loads.append(await pool_load(url))
            await asyncio.sleep(0.2)

    watcher = asyncio.create_task(watch())
    try:
        while len(tasks) < MAX_REQUESTS and not seen_enough():
            tasks.append(asyncio.create_task(ask(sdk)))
            await asyncio.sleep(ARRIVAL_S)
        answers = await asyncio.gather(*tasks)  # an exception here is a lost or failed request
    finally:
        watcher.cancel()
    return answers, loads


async def wait_until(predicate: Callable[[], Awaitable[bool]], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {timeout:.0f} s: {what}")
        await asyncio.sleep(0.25)


async def test_a_burst_spills_the_excess_and_traffic_returns_afterwards(burst_url):
    sdk = openai.AsyncOpenAI(base_url=f"{burst_url}/v1", api_key="unused", max_retries=0, timeout=120)
    async with httpx.AsyncClient(timeout=30) as client:  # the premise: unloaded, it stays self-hosted
        body = {"model": STRATEGY, "messages": QUESTION, "stream": True, "max_latency_ms": NEED_MS}
        route = (await client.post(f"{burst_url}/v1/route", json=body)).json()
    assert route["model"] == POOL_MODEL, route

    answers, loads = await burst(sdk, burst_url)

    # No request lost or failed: every one answered 200, with content.
    assert [a.status for a in answers] == [200] * len(answers)
    assert all(a.text for a in answers)

    # Spill-over started: answers from the cloud, saying why.
    over = spilled(answers)
    assert len(over) >= 5, [(a.model, a.reason) for a in answers]
    for answer in over:
        assert answer.provider in {"vertex_ai", "anthropic", "openai"}
        assert SPILL.match(answer.reason), answer.reason

    # The engine kept serving during the burst: only the excess spilled.
    assert len(served_while_spilling(answers)) >= 2, [(a.model, a.reason) for a in answers]

    # The engine itself reported its load: requests in it, against its capacity of one.
    busy = [load for load in loads if load["reported"] and (load["in_flight_reported"] or 0) >= 1]
    assert busy, loads
    assert {(load["capacity"], load["replicas"]) for load in busy} == {(1, 1)}

    # After the burst: the load drains, as the engine reports it...
    async def drained() -> bool:
        load = await pool_load(burst_url)
        return load["reported"] and load["in_flight"] == 0

    await wait_until(drained, "the engine's in-flight count back to 0")

    # ...and traffic is back on the self-hosted models; the spilling state ends once calm has
    # held for the cool-down (2 s here), as requests find.
    after: list[Answer] = []

    async def back_to_self_hosted() -> bool:
        after.append(await ask(sdk))
        return not (await pool_load(burst_url))["spilling"]

    await wait_until(back_to_self_hosted, "the spilling state to end")
    assert [(a.status, a.provider) for a in after] == [(200, SELF_HOSTED)] * len(after)
    assert not any(a.reason.startswith("spill:") for a in after)
