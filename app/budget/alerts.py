"""Budget alerts: a structured log event, a metric, and a webhook POST with retries.

The webhook URL comes from the environment (it often embeds a token) and never reaches a log
line. Posting runs in the background: a slow or dead webhook never delays a request.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from typing import Any

from app.config import WebhookConfig
from app.observability.logs import log_event, quiet_vendor_loggers
from app.observability.metrics import Metrics


class AlertSender:
    def __init__(
        self, webhook: WebhookConfig, metrics: Metrics, env: Mapping[str, str] | None = None
    ) -> None:
        self.webhook = webhook
        self.metrics = metrics
        env = os.environ if env is None else env
        self.url = env.get(webhook.url_env) if webhook.url_env else None
        # NOTE: httpx logs every request's full URL at INFO, and a webhook URL often holds a token.
        quiet_vendor_loggers()
        self._tasks: set[asyncio.Task[None]] = set()

    def fire(self, alert: dict[str, Any]) -> None:
        log_event("budget_alert", logging.WARNING, **alert)
        self.metrics.record("router_budget_alerts", provider=alert["budget"], alert=alert["alert"])
        if self.url:
            task = asyncio.get_running_loop().create_task(self._post(alert))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _post(self, alert: dict[str, Any]) -> None:
        import httpx

        body = {"event": "budget_alert", **alert}
        async with httpx.AsyncClient(timeout=self.webhook.timeout_s) as client:
            for attempt in range(self.webhook.retries + 1):
                try:
                    response = await client.post(self.url or "", json=body)
                    if response.status_code < 500 and response.status_code != 429:
                        log_event(
                            "budget_alert_sent",
                            alert=alert["alert"],
                            budget=alert["budget"],
                            status=response.status_code,
                        )
                        return
                except httpx.HTTPError as exc:
                    log_event(
                        "budget_alert_post_failed",
                        logging.WARNING,
                        attempt=attempt + 1,
                        error_type=type(exc).__name__,
                    )
                await asyncio.sleep(min(8.0, 0.5 * 2**attempt))
        log_event("budget_alert_undelivered", logging.ERROR, alert=alert["alert"], budget=alert["budget"])

    async def drain(self) -> None:
        """Waits for webhook posts still in flight (shutdown, tests)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
