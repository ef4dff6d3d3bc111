"""Load-aware routing: live statistics, the in-flight board, estimates, the latency need,
hysteresis (all on an injected clock), and spill-over through the real service and app."""

from __future__ import annotations

import asyncio
from typing import Any

import prometheus_client
import pytest

from app.config import parse_config
from app.errors import InvalidRequestError, UpstreamUnavailableError
from app.load.board import LoadBoard
from app.load.estimate import Estimator
from app.load.monitor import LoadMonitor
from app.load.spill import LatencyNeed, SpillGuard, need_for
from app.load.stats import DecayingMean, LiveStats
from app.observability.metrics import Metrics
from tests.fakes.backends import ScriptedBackend
from tests.support.wiring import app_client, default_config, log_records, make_service, scripted_backends


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


LOCAL_POOLS = {"mistral-7b-instruct": "cpu", "mistral-7b-fast": "cpu", "codellama-13b": "cpu"}
# auto with a margin of 1: the cheapest model that fits, the self-hosted mistral when it can serve.
ASK = {"model": "auto:1", "messages": [{"role": "user", "content": "What is Kubernetes?"}]}


# --- live statistics ---------------------------------------------------------------------------


def test_a_decaying_mean_starts_at_its_prior_follows_samples_and_fades_back() -> None:
    mean = DecayingMean(prior=1.0, half_life_s=10)
    assert mean.value(0) == 1.0
    for t in range(10):
        mean.add(5.0, t * 0.1)
    assert mean.value(1) == pytest.approx(5.0, abs=0.5)  # ten samples outweigh the prior
    assert mean.value(1 + 200) == pytest.approx(1.0, abs=0.01)  # twenty half-lives later: the prior


def test_live_stats_start_from_the_catalog_figures() -> None:
    config = default_config()
    stats = LiveStats(config.models, 60, Clock())
    spec = config.models["mistral-7b-instruct"]
    assert stats.ttft_s("mistral-7b-instruct") == spec.typical_latency_ms / 1000
    assert stats.tokens_per_s("mistral-7b-instruct") == spec.typical_tokens_per_s


def test_a_streamed_answer_teaches_first_token_time_and_output_speed() -> None:
    stats = LiveStats(default_config().models, 60, Clock())
    for _ in range(20):
        stats.record_answer(
            "gemini-flash", total_s=2.1, completion_tokens=101, first_token_s=0.1, queued=False
        )
    assert stats.ttft_s("gemini-flash") == pytest.approx(0.1, abs=0.05)
    # 100 tokens in 2 s, twenty times, against the prior (200 tokens/s) weighing as one sample
    assert stats.tokens_per_s("gemini-flash") == pytest.approx((20 * 50 + 200) / 21)


def test_whole_answers_teach_first_token_time_and_speed_together() -> None:
    stats = LiveStats(default_config().models, 60, Clock())
    ttft, rate = stats.ttft_s("mistral-7b-instruct"), stats.tokens_per_s("mistral-7b-instruct")
    total = (ttft + 100 / rate) / 10  # ten times faster than the catalog says
    for _ in range(30):
        stats.record_answer(
            "mistral-7b-instruct", total_s=total, completion_tokens=100, first_token_s=None, queued=False
        )
    new_ttft, new_rate = stats.ttft_s("mistral-7b-instruct"), stats.tokens_per_s("mistral-7b-instruct")
    assert new_ttft + 100 / new_rate == pytest.approx(total, rel=0.15)
    assert new_ttft < ttft / 3 and new_rate > rate * 3


def test_a_queued_answer_does_not_count_its_queueing_as_first_token_time() -> None:
    stats = LiveStats(default_config().models, 60, Clock())
    before = stats.ttft_s("mistral-7b-instruct")
    stats.record_answer(
        "mistral-7b-instruct", total_s=30, completion_tokens=50, first_token_s=25, queued=True
    )
    assert stats.ttft_s("mistral-7b-instruct") == before


def test_errors_raise_the_error_rate_and_answers_lower_it() -> None:
    stats = LiveStats(default_config().models, 60, Clock())
    for _ in range(3):
        stats.record_error("claude-haiku")
    assert stats.snapshot("claude-haiku")["error_rate"] == pytest.approx(0.75)  # 3 of 3, and the prior 0


def test_answer_length_is_learned_per_kind_of_request() -> None:
    stats = LiveStats(default_config().models, 60, Clock())
    for _ in range(20):
        stats.record_answer_length("summarization", 1500)
    assert stats.answer_tokens("summarization") > 1000
    assert stats.answer_tokens("simple_qa") == 256  # unseen: the prior


# --- the board and the estimate -------------------------------------------------------------------


def test_the_board_takes_the_larger_of_its_own_count_and_a_fresh_engine_report() -> None:
    clock = Clock()
    board = LoadBoard(LOCAL_POOLS, {"cpu": 1}, stale_after_s=3, clock=clock)
    board.started("mistral-7b-instruct")
    board.started("mistral-7b-fast")  # the same engine: counted together
    assert board.in_flight("codellama-13b") == 2
    board.report("cpu", in_flight=7, capacity=2, replicas=2)  # other ingress replicas' requests too
    assert board.in_flight("mistral-7b-instruct") == 7
    assert board.capacity("mistral-7b-instruct") == 2
    clock.now += 4  # the report is stale: this replica's own count again, the configured capacity
    assert board.in_flight("mistral-7b-instruct") == 2
    assert board.capacity("mistral-7b-instruct") == 1


def test_the_estimate_adds_the_queue_to_a_self_hosted_model_only() -> None:
    config = default_config()
    clock = Clock()
    stats = LiveStats(config.models, 60, clock)
    board = LoadBoard(LOCAL_POOLS, {"cpu": 1}, stale_after_s=3, clock=clock)
    estimator = Estimator(stats, board)
    idle = estimator.estimate("mistral-7b-instruct", 100)
    assert idle.queued == 0 and idle.first_token_s == stats.ttft_s("mistral-7b-instruct")
    for _ in range(3):
        board.started("mistral-7b-instruct")
    busy = estimator.estimate("mistral-7b-instruct", 100)
    assert busy.queued == 3
    assert busy.first_token_s == pytest.approx(
        3 * stats.latency_s("mistral-7b-instruct") + idle.first_token_s
    )
    assert busy.total_s - busy.first_token_s == pytest.approx(100 / stats.tokens_per_s("mistral-7b-instruct"))
    cloud = estimator.estimate("gemini-flash", 100)
    assert cloud.in_flight is None and cloud.queued == 0


# --- the need and the hysteresis ---------------------------------------------------------------------


def test_the_need_a_request_states_bounds_what_it_waits_for() -> None:
    settings = default_config().load
    streamed = need_for(settings, "auto", 2000, stated=True, stream=True, output_tokens=100)
    whole = need_for(settings, "auto", 2000, stated=True, stream=False, output_tokens=100)
    long_stream = need_for(settings, "auto", 2000, stated=True, stream=True, output_tokens=4000)
    implied = need_for(settings, "auto", 400, stated=False, stream=False, output_tokens=100)
    assert streamed == LatencyNeed(2.0, whole_answer=False, source="request")
    assert whole is not None and whole.whole_answer
    assert long_stream is not None and long_stream.whole_answer  # a long answer: its whole time
    assert implied is not None and not implied.whole_answer  # "quick": the first token


def test_a_strategy_gives_its_default_need_and_can_switch_spill_over_off() -> None:
    settings = default_config().load
    default = need_for(settings, "auto", None, stated=False, stream=False, output_tokens=100)
    assert default == LatencyNeed(4.0, whole_answer=False, source="auto default")
    assert need_for(settings, "cost", 500, stated=True, stream=True, output_tokens=10) is None  # switched off
    assert need_for(settings, "self_hosted_only", 500, stated=True, stream=True, output_tokens=10) is None
    assert need_for(settings, "explicit", 500, stated=True, stream=True, output_tokens=10) is None
    assert need_for(settings, "long_context", None, stated=False, stream=True, output_tokens=10) is None


def test_hysteresis_spills_at_the_need_and_returns_below_the_band_after_the_cool_down() -> None:
    clock = Clock()
    guard = SpillGuard(band=0.2, cool_down_s=30, clock=clock)
    assert not guard.misses("m", 0.9, 1.0)
    assert guard.misses("m", 1.1, 1.0) and guard.spilling("m")
    assert guard.misses("m", 0.9, 1.0)  # spilling: 0.9 is above the lowered limit of 0.8
    assert not guard.misses("m", 0.7, 1.0)  # under the band: served here, still in the state
    clock.now += 29
    assert not guard.misses("m", 0.7, 1.0) and guard.spilling("m")
    clock.now += 1
    assert not guard.misses("m", 0.7, 1.0) and not guard.spilling("m")
    assert guard.transitions == 2


def test_hysteresis_never_leaves_the_spilling_state_faster_than_the_cool_down() -> None:
    clock = Clock()
    guard = SpillGuard(band=0.2, cool_down_s=10, clock=clock)
    changes: list[tuple[float, bool]] = []
    for step in range(2000):  # every 0.5 s; 6 s of estimates flapping around the need, then 14 s calm
        clock.now += 0.5
        flapping = step % 40 < 12
        was = guard.spilling("m")
        guard.misses("m", 1.05 if flapping and step % 2 else 0.75, 1.0)
        if guard.spilling("m") != was:
            changes.append((clock.now, guard.spilling("m")))
    entries = [t for t, spilling in changes if spilling]
    leaves = [t for t, spilling in changes if not spilling]
    assert len(leaves) >= 40  # it does return, once per calm spell
    assert all(left - entered >= 10 for entered, left in zip(entries, leaves, strict=False))


def test_a_dry_run_leaves_the_spill_state_alone() -> None:
    guard = SpillGuard(band=0.2, cool_down_s=10, clock=Clock())
    assert guard.misses("m", 2.0, 1.0, update=False)
    assert not guard.spilling("m")


# --- through the service --------------------------------------------------------------------------


class GatedBackend(ScriptedBackend):
    """Answers once its gate opens: requests pile up in flight meanwhile."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.gate = asyncio.Event()
        self.waiting = 0

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        self.waiting += 1
        await self.gate.wait()
        return await super().complete(request)

    async def holding(self, n: int) -> None:
        """Returns once ``n`` requests wait at the gate (planning and budgets come before)."""
        async with asyncio.timeout(10):
            while self.waiting < n:
                await asyncio.sleep(0.005)


def local_service(clock: Clock | None = None, **overrides: Any):
    raw = default_config().model_dump(mode="json")
    for key, value in overrides.items():
        raw[key] = value
    config = parse_config(raw)
    backends: dict[str, Any] = scripted_backends(config)
    backends["mistral-7b-instruct"] = GatedBackend("mistral-7b-instruct")
    metrics = Metrics(prometheus_client.CollectorRegistry())
    kwargs: dict[str, Any] = {"pools": LOCAL_POOLS, "metrics": metrics}
    if clock is not None:
        kwargs["clock"] = clock
    return make_service(config, backends, **kwargs), backends, metrics


async def test_requests_spill_to_the_cloud_while_the_self_hosted_engine_is_busy_and_return_after() -> None:
    clock = Clock()
    service, backends, metrics = local_service(clock)
    gated = backends["mistral-7b-instruct"]
    first = asyncio.create_task(service.complete(ASK, "r1"))
    await gated.holding(1)  # in flight on the engine now
    with log_records() as records:
        answer, outcome = await service.complete(ASK, "r2")
    assert answer["model"] == "gemini-flash"
    assert outcome.plan.primary.reason.startswith("spill: ~1 queued on mistral-7b-instruct, est. first token")
    assert outcome.plan.spilled == ("mistral-7b-instruct", "mistral-7b-fast")
    assert outcome.plan.targets[-1].model in outcome.plan.spilled  # the busy engine: a last fallback
    (decision,) = [r for r in records if r.get("event") == "route_decision"]
    assert decision["spilled"] == ["mistral-7b-instruct", "mistral-7b-fast"]
    assert (
        metrics.sample("router_spills_total", from_model="mistral-7b-instruct", to_model="gemini-flash") == 1
    )
    gated.gate.set()
    assert (await first)[0]["model"] == "mistral-7b-instruct"  # the first one was not lost
    assert service.load.guard.spilling("mistral-7b-instruct")
    clock.now += service.config.load.spill_cool_down_s + 1
    back, _ = await service.complete(ASK, "r3")  # idle again: home, whatever the state
    assert back["model"] == "mistral-7b-instruct"


async def test_explicit_models_self_hosted_only_and_switched_off_strategies_never_spill() -> None:
    service, backends, _ = local_service()
    gated = backends["mistral-7b-instruct"]
    first = asyncio.create_task(service.complete(ASK, "r1"))
    await gated.holding(1)
    explicit = asyncio.create_task(service.complete({**ASK, "model": "mistral-7b-instruct"}, "r2"))
    private = asyncio.create_task(service.complete({**ASK, "routing_strategy": "self_hosted_only"}, "r3"))
    cheap = await service.plan({**ASK, "routing_strategy": "cost"})
    await gated.holding(2)
    assert cheap.primary.model == "mistral-7b-instruct" and not cheap.spilled
    backends["mistral-7b-instruct"].gate.set()
    for task in (first, explicit, private):
        answer, outcome = await task
        assert answer["model"].startswith("mistral-7b") and not outcome.plan.spilled


async def test_a_request_spills_only_to_a_candidate_that_meets_its_need() -> None:
    service, backends, _ = local_service()
    first = asyncio.create_task(service.complete(ASK, "r1"))
    await backends["mistral-7b-instruct"].holding(1)
    # 600 ms for the whole answer: nobody can; the plan keeps its order (spilling would not help).
    plan = await service.plan({**ASK, "max_latency_ms": 600})
    assert plan.primary.model == "mistral-7b-instruct" and not plan.spilled
    backends["mistral-7b-instruct"].gate.set()
    await first


async def test_a_failed_spill_target_falls_back_to_the_busy_engine_and_loses_nothing() -> None:
    service, backends, _ = local_service()
    gated = backends["mistral-7b-instruct"]
    first = asyncio.create_task(service.complete(ASK, "r1"))
    await gated.holding(1)
    for name in ("gemini-flash", "claude-haiku"):
        backends[name].outcomes = [UpstreamUnavailableError("down")] * 4
    second = asyncio.create_task(service.complete(ASK, "r2"))
    await gated.holding(2)
    gated.gate.set()
    answer, outcome = await second
    assert answer["model"] == "mistral-7b-instruct"  # the queue, rather than an error
    assert [m for m, _ in outcome.failures][:2] == ["gemini-flash", "claude-haiku"]
    await first


async def test_live_statistics_reorder_the_fast_strategy_and_forget_in_time() -> None:
    clock = Clock()
    service, _, _ = local_service(clock)
    body = {**ASK, "routing_strategy": "fast", "stream": True}
    assert (await service.plan(body)).primary.model == "mistral-7b-fast"
    for _ in range(10):  # it has been answering its first token in 5 s
        service.load.stats.record_answer(
            "mistral-7b-fast", total_s=8, completion_tokens=40, first_token_s=5, queued=False
        )
    assert (await service.plan(body)).primary.model != "mistral-7b-fast"
    clock.now += 20 * service.config.load.stats_half_life_s
    assert (await service.plan(body)).primary.model == "mistral-7b-fast"


async def test_backend_failures_count_as_errors_and_client_errors_do_not() -> None:
    service, backends, _ = local_service()
    body = {**ASK, "model": "gemini-flash"}
    backends["gemini-flash"].outcomes = [UpstreamUnavailableError("down")] * 2  # both attempts
    with pytest.raises(UpstreamUnavailableError):
        await service.complete(body, "r1")
    assert service.load.stats.snapshot("gemini-flash")["error_rate"] == pytest.approx(2 / 3, abs=1e-3)
    backends["gemini-flash"].outcomes = [InvalidRequestError("bad")]
    with pytest.raises(InvalidRequestError):
        await service.complete(body, "r2")
    assert service.load.stats.snapshot("gemini-flash")["error_rate"] == pytest.approx(2 / 3, abs=1e-3)


async def test_streams_are_counted_in_flight_until_they_end_or_are_abandoned() -> None:
    service, _, _ = local_service()
    body = {**ASK, "model": "mistral-7b-fast", "stream": True}
    chunks, _ = await service.stream(body, "r1")
    assert service.load.board.in_flight("mistral-7b-fast") == 1
    await chunks.aclose()  # the client left
    assert service.load.board.in_flight("mistral-7b-fast") == 0
    chunks, _ = await service.stream(body, "r2")
    assert [c async for c in chunks]
    assert service.load.board.in_flight("mistral-7b-fast") == 0


async def test_the_engines_reports_reach_the_board_through_the_probe() -> None:
    async def probe() -> dict[str, list[dict[str, int]]]:
        return {"cpu": [{"in_flight": 3, "capacity": 1}, {"in_flight": 2, "capacity": 1}]}

    monitor = LoadMonitor(default_config(), LOCAL_POOLS)
    await monitor.poll(probe)
    snapshot = monitor.snapshot(100)["mistral-7b-instruct"]["load"]
    assert snapshot["in_flight"] == 5 and snapshot["capacity"] == 2 and snapshot["replicas"] == 2
    assert snapshot["reported"] is True


def test_stats_endpoint_and_gauges_show_what_routing_sees() -> None:
    async def probe() -> dict[str, list[dict[str, int]]]:
        return {"cpu": [{"in_flight": 4, "capacity": 1}]}

    config = default_config()
    metrics = Metrics(prometheus_client.CollectorRegistry())
    service = make_service(config, pools=LOCAL_POOLS, load_probe=probe, metrics=metrics)
    with app_client(service) as client:
        for _ in range(50):  # the poll runs on the app's event loop
            stats = client.get("/v1/stats", params={"output_tokens": 100}).json()
            if stats["models"]["mistral-7b-instruct"]["load"]["reported"]:
                break
        entry = stats["models"]["mistral-7b-instruct"]
        assert entry["load"]["in_flight"] == 4 and entry["load"]["queued"] == 4
        assert entry["estimate"]["first_token_s"] > entry["live"]["ttft_s"]
        assert "load" not in stats["models"]["gemini-flash"]
        routed = client.post("/v1/chat/completions", json=ASK)
        assert routed.headers["x-router-reason"].startswith("spill: ~4 queued on mistral-7b-instruct")
        service.refresh_gauges()
    assert metrics.sample("router_model_in_flight", model="mistral-7b-instruct") == 4
    assert metrics.sample("router_model_ttft_seconds", model="gemini-flash") == pytest.approx(0.8)
    assert client.get("/v1/stats", params={"output_tokens": 0}).status_code == 400
