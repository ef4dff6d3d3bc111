"""`make run`'s launcher (deployments/run_local.py), without starting Ray: what it refuses before
starting anything, the environment of the cluster it starts, the log it shows, and how it finds
and stops only what it started."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deployments import run_local
from deployments.configs import profiles

ROOT = Path(__file__).parents[2]


def test_make_run_runs_the_launcher() -> None:
    script = (ROOT / "scripts/run-local.sh").read_text()
    assert 'exec "$BIN/python" -m deployments.run_local' in script
    for forbidden in ("ray stop", "pkill", "killall"):  # never stops what it did not start
        assert forbidden not in script
    assert "ray stop" not in (ROOT / "deployments/run_local.py").read_text()


def test_the_cluster_gets_the_serve_mode_and_a_short_ingress_drain(monkeypatch: pytest.MonkeyPatch) -> None:
    """serve.env's mode, plus the one-machine setting that keeps Ctrl-C short (GKE keeps Serve's 30 s)."""
    monkeypatch.setattr(profiles, "haproxy_binary", lambda: "/usr/sbin/haproxy")
    env = profiles.local_env()
    assert {k: env[k] for k in profiles.serve_env_file()} == profiles.serve_env_file()
    assert float(env["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"]) <= 2
    assert "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S" not in profiles.serve_env_file()


def test_a_cluster_of_its_own_gets_an_auth_token_of_its_own() -> None:
    env = run_local.private_cluster_env({})
    assert env["RAY_AUTH_MODE"] == "token" and len(env["RAY_AUTH_TOKEN"]) == 64
    assert run_local.private_cluster_env({})["RAY_AUTH_TOKEN"] != env["RAY_AUTH_TOKEN"]
    assert run_local.private_cluster_env({"RAY_AUTH_MODE": "disabled"}) == {}  # the user's choice stands
    assert run_local.private_cluster_env({"RAY_AUTH_TOKEN_PATH": "/x"}) == {}


def test_busy_ports_are_found() -> None:
    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        busy = listener.getsockname()[1]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        assert run_local.busy_ports([busy, free]) == [busy]


def test_a_busy_port_stops_it_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"})
    os.environ.update(ROUTER_LOG_DIR=str(tmp_path))
    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        os.environ["ROUTER_PORT"] = str(listener.getsockname()[1])
        assert run_local.main([]) == 1
    err = capsys.readouterr().err
    assert (
        f"port {os.environ['ROUTER_PORT']}" in err
        and "already in use" in err
        and "nothing was started" in err
    )
    import ray

    assert not ray.is_initialized()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_config_error_stops_it_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"})
    bad = tmp_path / "my-router.yaml"
    bad.write_text("providers: {}\nmodels: {}\nnot_a_field: 1\n")
    os.environ.update(
        ROUTER_LOG_DIR=str(tmp_path),
        ROUTER_CONFIG=str(bad),
        ROUTER_PORT=str(_free_port()),
        METRICS_PORT=str(_free_port()),
        RAY_SERVE_HAPROXY_STATS_PORT=str(_free_port()),
        RAY_SERVE_HAPROXY_METRICS_PORT=str(_free_port()),
    )
    assert run_local.main([]) == 1
    err = capsys.readouterr().err
    assert "could not build the app, nothing was started" in err and "my-router.yaml" in err
    import ray

    assert not ray.is_initialized()


def test_the_serve_config_is_local_yaml_with_router_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROUTER_PORT", raising=False)
    config = run_local.load_serve_config(run_local.SERVE_CONFIG)
    assert config["http_options"]["port"] == 8000 and [a["name"] for a in config["applications"]] == [
        "router"
    ]
    monkeypatch.setenv("ROUTER_PORT", "18000")
    assert run_local.load_serve_config(run_local.SERVE_CONFIG)["http_options"]["port"] == 18000


def test_the_log_is_shown_from_where_it_was_line_by_line(tmp_path: Path) -> None:
    path = tmp_path / "router.jsonl"
    path.write_text('{"event":"from_an_earlier_run"}\n')
    out = io.StringIO()
    tail = run_local.Tail(path, out, interval_s=0.01)
    with path.open("a") as file:
        file.write('{"event":"one"}\n{"event":"tw')
    tail.drain()
    assert out.getvalue() == '{"event":"one"}\n'  # a line still being written waits for its end
    with path.open("a") as file:
        file.write('o"}\n')
    tail.drain()
    assert out.getvalue() == '{"event":"one"}\n{"event":"two"}\n'
    path.write_text('{"event":"new"}\n')  # rotated or truncated: read again from the start
    tail.drain()
    assert out.getvalue().endswith('{"event":"new"}\n')


def test_the_log_tail_runs_until_stopped_and_shows_the_last_lines(tmp_path: Path) -> None:
    path = tmp_path / "router.jsonl"  # not there yet: the router creates it
    out = io.StringIO()
    tail = run_local.Tail(path, out, interval_s=0.05)
    tail.start()
    path.write_text('{"event":"router_started"}\n')
    deadline = time.monotonic() + 5
    while "router_started" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.02)
    with path.open("a") as file:
        file.write('{"event":"router_stopped"}\n')
    tail.stop()
    assert not tail.is_alive()
    assert out.getvalue() == '{"event":"router_started"}\n{"event":"router_stopped"}\n'


def _sleeper(argv0: str | None = None) -> subprocess.Popen[bytes]:
    command = f"exec -a {argv0} sleep 60" if argv0 else "exec sleep 60"
    return subprocess.Popen(["bash", "-c", command])


def test_only_the_processes_it_started_and_its_own_haproxy_are_killed(tmp_path: Path) -> None:
    """Leftovers are the processes seen under the launcher, and an HAProxy of its own node (by its
    config folder); an HAProxy of another node (another cluster) and any other process stay."""
    before = {p.pid for p in run_local.descendants()}
    started = _sleeper()
    ours = _sleeper(f"{run_local.HAPROXY_FILES}/node-ours/haproxy")
    theirs = _sleeper(f"{run_local.HAPROXY_FILES}/node-theirs/haproxy")
    other = _sleeper()
    try:
        time.sleep(0.3)  # exec done
        seen = [p for p in run_local.descendants(before) if p.pid == started.pid]
        killed = run_local.kill_leftovers(seen, "node-ours")
        assert sorted(p.pid for p in killed) == sorted([started.pid, ours.pid])
        assert all(not p.is_running() and p.returncode == -9 for p in killed)  # reaped by kill_leftovers
        assert theirs.poll() is None and other.poll() is None
    finally:
        for proc in (started, ours, theirs, other):
            proc.kill()
            proc.wait()


def test_a_pid_seen_earlier_and_already_gone_is_not_killed() -> None:
    proc = _sleeper()
    time.sleep(0.2)
    (seen,) = [p for p in run_local.descendants() if p.pid == proc.pid]
    proc.kill()
    proc.wait()
    assert run_local.kill_leftovers([seen], None) == []


def test_run_local_is_importable_without_starting_ray() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import deployments.run_local, sys; print('ray._raylet' in sys.modules)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
