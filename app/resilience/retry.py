"""Retry delays: exponential backoff with jitter, honouring ``Retry-After``.

``delay(attempt, retry_after)`` is the wait before retry number ``attempt`` (0-based): the
server's ``Retry-After`` when it gave one, else ``base * 2**attempt`` capped at ``max``, each
spread by +/- ``jitter`` so that replicas do not retry in step. None means "do not wait for
this target": its wait is longer than the policy allows, so the next target is better.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from app.config import RetryConfig


@dataclass
class RetryPolicy:
    settings: RetryConfig
    random: Callable[[], float] = field(default=random.random)

    @property
    def attempts(self) -> int:
        return self.settings.attempts

    def delay(
        self, attempt: int, retry_after: float | None = None, remaining: float | None = None
    ) -> float | None:
        s = self.settings
        if retry_after is not None:
            if retry_after > s.max_delay_s:
                return None
            wait = retry_after
        else:
            wait = min(s.max_delay_s, s.base_delay_s * 2**attempt)
            wait = min(s.max_delay_s, wait * (1 + s.jitter * (2 * self.random() - 1)))
        if remaining is not None and wait >= remaining:
            return None
        return max(0.0, wait)
