"""A real Prometheus scraping the running app: every dashboard query and every alert's signal
evaluates and returns series, from traffic sent through the router."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import httpx
import pytest
import yaml

from tests.monitoring.queries import alert_signals, dashboard_queries

pytestmark = [
    pytest.mark.ray,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus package"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def prometheus(metrics_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prometheus")
    target = metrics_url.removeprefix("http://")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "ray", "static_configs": [{"targets": [target]}]}],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=10)


def query(prometheus: str, expr: str) -> list[dict]:
    body = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


def send_traffic(cloud_url: str) -> None:
    ask = [{"role": "user", "content": "Say hello."}]
    with httpx.Client(base_url=cloud_url, timeout=60) as client:
        for model in ("gpt", "claude-haiku", "gemini-flash", "mistral-7b-instruct"):
            client.post("/v1/chat/completions", json={"model": model, "messages": ask, "max_tokens": 8})
        client.post(
            "/v1/chat/completions", json={"model": "auto", "messages": ask, "max_tokens": 8, "stream": True}
        )
        client.post("/v1/chat/completions", json={"model": "gpt", "messages": ask, "temperature": 0})
        client.post(
            "/v1/chat/completions", json={"model": "gpt", "messages": ask, "temperature": 0}
        )  # a cache hit
        doc = "Revenue grew in every region this quarter. " * 15000 + "[[fault@fake-gemini:503]] Summarize."
        client.post(
            "/v1/chat/completions", json={"model": "auto", "messages": [{"role": "user", "content": doc}]}
        )
        contract = "The tenant pays the rent on the first day of each month. " * 700  # a cacheable prefix
        for question in ("Who pays the rent?", "When is it due?"):  # a cache write, then a read
            messages = [{"role": "system", "content": contract}, {"role": "user", "content": question}]
            client.post("/v1/chat/completions", json={"model": "claude-haiku", "messages": messages})
        client.post("/v1/chat/completions", json={"model": "no-such-model", "messages": ask})
        client.get("/v1/budget")
        client.get("/health")


def test_every_dashboard_query_and_alert_signal_returns_series(cloud_url, prometheus):
    send_traffic(cloud_url)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not query(prometheus, "ray_router_fallbacks_total"):
        time.sleep(1)
    time.sleep(4)  # a few more scrapes, so rate() windows hold two samples
    send_traffic(cloud_url)
    time.sleep(4)
    empty = [expr for expr in dashboard_queries() if not query(prometheus, expr)]
    assert empty == [], f"dashboard queries without series: {empty}"
    silent = {name: expr for name, expr in alert_signals().items() if not query(prometheus, expr)}
    assert silent == {}, f"alert signals without series: {silent}"
