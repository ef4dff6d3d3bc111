"""Every test run keeps its state (the budget ledger) in a fresh folder, never the user's."""

from __future__ import annotations

import os
import tempfile

STATE_DIR_ENV = "HYBRID_ROUTER_STATE_DIR"


def pytest_configure(config: object) -> None:
    os.environ[STATE_DIR_ENV] = tempfile.mkdtemp(prefix="hybrid-router-tests-")
