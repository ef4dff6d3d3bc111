"""A Redis server for tests that need one: ``$REDIS_URL`` if set, else a private, throwaway
``redis-server`` (no persistence) on a free loopback port for the test session; tests using it
are skipped when neither exists. Import the fixture into a test module to use it::

    from tests.unit.redis_fixture import redis_url  # noqa: F401

Each test should keep its data under its own key prefix (``unique_prefix()``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest


def unique_prefix(label: str = "test") -> str:
    return f"{label}-{uuid.uuid4().hex}"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if url := os.environ.get("REDIS_URL"):
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server binary on PATH and REDIS_URL is not set")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import redis

        client = redis.Redis(port=port)
        try:
            for _ in range(200):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.025)
            else:
                pytest.fail(f"redis-server did not start on port {port}")
        finally:
            client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
