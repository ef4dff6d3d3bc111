"""The fixtures a test module of a provider's fake server needs: one server for the module, reset
before each test.

    server, fake = fake_server_fixtures(lambda: FakeAnthropic(api_key=KEY))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest


def fake_server_fixtures(make: Callable[[], Any]) -> tuple[Any, Any]:
    @pytest.fixture(scope="module")
    def server() -> Iterator[Any]:
        started = make()
        started.start()
        yield started
        started.stop()

    @pytest.fixture
    def fake(server: Any) -> Any:
        server.reset()
        return server

    return server, fake
