"""Whether this app's own deployments (the self-hosted engines) have running replicas.

A daemon thread asks Serve's controller every few seconds and keeps the answer; routing reads
it without waiting. Until the first answer arrives, nothing is reported down. The thread only
swaps in a new dict of answers (one reference assignment): it never touches the router's own
state, whose breakers and gauges live on the event loop (``RouterService``'s housekeeping).
"""

from __future__ import annotations

import threading

from app.observability.logs import log_event

POLL_INTERVAL_S = 3.0


class DeploymentHealth:
    def __init__(
        self,
        deployments: list[str],
        interval_s: float = POLL_INTERVAL_S,
    ) -> None:
        self.deployments = deployments
        self.interval_s = interval_s
        self._reasons: dict[str, str | None] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def reason(self, deployment: str) -> str | None:
        return self._reasons.get(deployment)

    def start(self) -> None:
        if self.deployments and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="deployment-health", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._poll()
            except Exception as exc:  # noqa: BLE001 - a failed poll keeps the last answer
                log_event("health_poll_failed", error_type=type(exc).__name__)
            self._stop.wait(self.interval_s)

    def _poll(self) -> None:
        from ray import serve

        app_name = serve.get_replica_context().app_name
        app = serve.status().applications.get(app_name)
        reasons: dict[str, str | None] = {}
        for name in self.deployments:
            deployment = app.deployments.get(name) if app else None
            running = deployment.replica_states.get("RUNNING", 0) if deployment else 0
            reasons[name] = None if running else f"deployment {name} has no running replica"
        if reasons != self._reasons:
            log_event("deployment_health", **{k: v or "up" for k, v in reasons.items()})
            self._reasons = reasons
