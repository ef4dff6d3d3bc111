"""A request's latency need, and the hysteresis that keeps spill-over from flapping.

The need: a request's own ``max_latency_ms`` (or its metadata's ``latency_ms``) bounds what it
waits for: its first token when it streams, else its whole answer, and the whole answer too when
it asks for a long one (``load.long_answer_tokens``). A need implied by urgent words ("quick")
bounds the first token, as does the strategy's default for a request that states none
(``load.spill.<strategy>.first_token_ms``): the first token is what queueing delays.
``self_hosted_only`` never spills, nor does an explicitly named model.

Hysteresis, per self-hosted model: it enters the spilling state when a request's estimate
misses the need. While spilling, it takes a request only where the estimate is under
``(1 - band)`` of the need, so that requests near the boundary do not flip back and forth; it
leaves the state once estimates have stayed that low for ``cool_down_s``. The state therefore
changes back at most once per cool-down, and the model keeps serving (up to the lowered
threshold) while spilling: only the excess goes elsewhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from app.config import LoadConfig

NEVER_SPILL = frozenset({"self_hosted_only", "explicit"})


@dataclass(frozen=True)
class LatencyNeed:
    seconds: float
    whole_answer: bool  # judged on the whole answer, else on the first token
    source: str  # "request" or "<strategy> default"

    @property
    def what(self) -> str:
        return "answer" if self.whole_answer else "first token"


def need_for(
    settings: LoadConfig,
    strategy: str,
    latency_ms: int | None,
    *,
    stated: bool,
    stream: bool,
    output_tokens: float,
) -> LatencyNeed | None:
    """The request's need, or None when it may not spill (its strategy's switch is off).
    ``stated``: ``latency_ms`` is the request's own number, not implied by its words."""
    if strategy in NEVER_SPILL:
        return None
    spill = settings.spill.get(strategy)
    if spill is not None and not spill.enabled:
        return None
    if latency_ms is not None:
        whole = stated and (not stream or output_tokens >= settings.long_answer_tokens)
        return LatencyNeed(latency_ms / 1000, whole_answer=whole, source="request")
    if spill is not None and spill.first_token_ms is not None:
        return LatencyNeed(spill.first_token_ms / 1000, whole_answer=False, source=f"{strategy} default")
    return None


@dataclass
class _Spilling:
    since: float
    calm_since: float | None = None


class SpillGuard:
    def __init__(self, band: float, cool_down_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.band, self.cool_down_s, self.clock = band, cool_down_s, clock
        self._spilling: dict[str, _Spilling] = {}
        self.transitions = 0  # state changes, both ways

    def spilling(self, model: str) -> bool:
        return model in self._spilling

    def limit(self, model: str, need_s: float) -> float:
        """The estimate above which ``model`` passes a request on, given its state."""
        return need_s * (1 - self.band) if model in self._spilling else need_s

    def misses(self, model: str, estimate_s: float, need_s: float, *, update: bool = True) -> bool:
        """Whether ``model`` should pass this request on; updates its state unless told not to
        (a dry run: ``/v1/route``)."""
        now, state = self.clock(), self._spilling.get(model)
        over = estimate_s > self.limit(model, need_s)
        if not update:
            return over
        if state is None:
            if over:
                self._spilling[model] = _Spilling(since=now)
                self.transitions += 1
            return over
        if over:
            state.calm_since = None
            return True
        if state.calm_since is None:
            state.calm_since = now
        if now - state.calm_since >= self.cool_down_s:
            del self._spilling[model]
            self.transitions += 1
        return False
