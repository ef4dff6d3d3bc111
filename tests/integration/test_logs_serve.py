"""The router's JSON log in the real Serve app, in the shipped Serve mode (HAProxy, throughput-
optimized: Serve's own log lines are buffered and kept off stderr there): every answered request's
``route_decision`` record reaches ``$ROUTER_LOG_DIR/router.jsonl`` as one JSON object per line
within seconds, and so does the CPU engine's demo-model warning. No prompt text.

Uses the session's ``router`` app (tests/integration/conftest.py), whose replicas get
``ROUTER_LOG_DIR`` from the cluster's runtime environment.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import CLUSTER

pytestmark = pytest.mark.ray

WITHIN_S = 10.0


def records(path: Path) -> list[dict[str, Any]]:
    """Every line of the file, each parsed on its own (a line that is not one JSON object fails)."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_answer_leaves_its_route_decision_line_in_the_file_within_seconds(router_url):
    path: Path = CLUSTER["log_file"]
    secret_prompt = f"prompt-text-{uuid.uuid4().hex}"
    sent = []
    for i in range(4):
        request_id = f"req-logs-{uuid.uuid4().hex[:12]}"
        response = httpx.post(
            f"{router_url}/v1/chat/completions",
            json={
                "model": "auto",
                "messages": [{"role": "user", "content": f"{secret_prompt} {i}"}],
                "max_tokens": 4,
                "stream": i % 2 == 1,
            },
            headers={"x-request-id": request_id},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        sent.append(request_id)
    answered = time.monotonic()

    logged: dict[str, dict[str, Any]] = {}
    while time.monotonic() - answered < WITHIN_S:
        if path.exists():
            logged = {r.get("request_id"): r for r in records(path) if r.get("event") == "route_decision"}
            if set(sent) <= set(logged):
                break
        time.sleep(0.2)
    assert set(sent) <= set(logged), f"not in {path} within {WITHIN_S} s: {sorted(set(sent) - set(logged))}"
    for request_id in sent:
        line = logged[request_id]
        assert line["model"] == "mistral-7b-instruct" and line["strategy"] == "auto" and "cost_usd" in line
    assert secret_prompt not in path.read_text()  # logging.log_prompts is off


def test_the_demo_model_warning_is_in_the_file(router_url):
    events = [r for r in records(CLUSTER["log_file"]) if r.get("event") == "demo_model"]
    assert events and events[0]["level"] == "warning"
    assert (
        "DEMO" in events[0]["message"]
        and events[0]["model"] == "hybrid-router-tests/model-that-is-not-cached"
    )
