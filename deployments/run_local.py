"""`make run`: the router on a Ray cluster of its own, and everything it started gone on Ctrl-C.

    python -m deployments.run_local [--serve-config deployments/configs/local.yaml]

Own cluster (the default). A one-node Ray is started by this process (``ray.init(address="local")``)
with a temp dir of its own and random ports, except the metrics port (``$METRICS_PORT``, 8080);
it is not registered as the machine's default cluster, so ``ray.init()`` / ``ray status``
elsewhere never find it, and a cluster already running on the machine (``ray start``, another
``make run``, the tests) is never joined, stopped or otherwise touched. On Ctrl-C, SIGTERM or
SIGHUP: Serve is shut down (which stops its HAProxy), then the Ray processes, then whatever of the
processes started under this one is still alive, by pid; the temp dir is removed. A second Ctrl-C
cuts the graceful part short. (Killed outright, with SIGKILL, this process cannot clean up: the
kernel still stops the Ray processes it started, its children, but Serve's HAProxy may stay.)

Joined cluster (``$RAY_ADDRESS`` set, e.g. ``127.0.0.1:6379``): the router app is deployed there
(refused if an app of that name already runs), and on exit only that app is deleted, plus Serve
itself if this process started it and no other app is left. The cluster stays up. Serve then
runs in whatever mode that cluster was started with, and cloud keys must be in its environment.

The router's structured log (one JSON object per line: ``route_decision`` for every request,
``fallback``, ``budget_alert``, the demo-model warning...) is ``$ROUTER_LOG_DIR/router.jsonl``,
by default ``~/.cache/hybrid-router/logs/router.jsonl``; this terminal shows it as it grows.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from typing import IO, Any

import yaml

from app.observability.logs import LOG_DIR_ENV, log_file
from deployments.configs.profiles import local_env

PROJECT = Path(__file__).resolve().parent.parent
SERVE_CONFIG = PROJECT / "deployments/configs/local.yaml"
GRACEFUL_SERVE_SHUTDOWN_S = 8.0
HAPROXY_PORTS = {"RAY_SERVE_HAPROXY_STATS_PORT": 8404, "RAY_SERVE_HAPROXY_METRICS_PORT": 9101}
HAPROXY_FILES = "/tmp/haproxy-serve"  # noqa: S108 - Serve's default: RAY_SERVE_HAPROXY_CONFIG_FILE_LOC's folder


def say(message: str) -> None:
    print(f"hybrid-router: {message}", file=sys.stderr, flush=True)


def default_log_dir() -> Path:
    root = os.environ.get("HYBRID_ROUTER_CACHE_DIR") or "~/.cache/hybrid-router"
    return Path(root).expanduser() / "logs"


def private_cluster_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """Token authentication for a cluster of our own, with a token of its own held in the
    environment of its processes only. (A local ``ray.init`` otherwise turns token auth on with a
    token it writes to ``~/.ray/auth_token``, which every later ``ray start`` on the machine would
    then pick up.) An ``RAY_AUTH_MODE`` set by the user is left as it is."""
    env = os.environ if env is None else env
    if env.get("RAY_AUTH_MODE") or env.get("RAY_AUTH_TOKEN") or env.get("RAY_AUTH_TOKEN_PATH"):
        return {}
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}


def use_private_auth() -> None:
    """Applies ``private_cluster_env()`` to this process (whose children, the cluster's processes,
    inherit it), and makes Ray in this process see it: as ``ray.init`` does when it turns token
    auth on, Ray's config is re-read and its token cache dropped, in case anything read them before."""
    env = private_cluster_env()
    if not env:
        return
    os.environ.update(env)
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def descendants(exclude: set[int] | None = None) -> list[Any]:
    """This process's descendants (psutil processes), less the pids of ``exclude``."""
    import psutil
    import ray  # noqa: F401 - puts Ray's own psutil (ray/thirdparty_files) on sys.path

    return [p for p in psutil.Process().children(recursive=True) if p.pid not in (exclude or set())]


def kill_leftovers(processes: list[Any], node_id: str | None) -> list[Any]:
    """Kills what is still alive of ``processes`` (psutil checks that each is still the process
    that was seen, not a reused pid) and any HAProxy that Serve started for the node ``node_id``
    (found by its config file, ``/tmp/haproxy-serve/<node id>/``; one whose manager died first is
    no longer a descendant). Removes that node's HAProxy files. Returns what it killed."""
    import psutil
    import ray  # noqa: F401 - puts Ray's own psutil on sys.path

    mine = [p for p in processes if p.is_running()]
    if node_id:
        marker = f"{HAPROXY_FILES}/{node_id}/"
        for proc in psutil.process_iter(["name", "cmdline"]):
            args = proc.info["cmdline"] or []
            named = "haproxy" in (proc.info["name"] or "") or (
                args and os.path.basename(args[0]) == "haproxy"
            )
            if named and any(marker in a for a in args):
                mine.append(proc)
    for proc in mine:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(mine, timeout=3)
    if node_id:
        shutil.rmtree(f"{HAPROXY_FILES}/{node_id}", ignore_errors=True)
    return mine


def busy_ports(ports: list[int]) -> list[int]:
    """The ports of ``ports`` that something on this machine already listens on."""
    busy = []
    for port in ports:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("0.0.0.0", port))  # noqa: S104 - a test bind where the servers will bind; closed at once
            except OSError:
                busy.append(port)
    return busy


class Tail(threading.Thread):
    """Copies the whole lines appended to ``path`` (from its size at start) to ``out``."""

    def __init__(self, path: Path, out: IO[str], interval_s: float = 0.25) -> None:
        super().__init__(name="log-tail", daemon=True)
        self.path, self.out, self.interval_s = path, out, interval_s
        self.offset = path.stat().st_size if path.exists() else 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.drain()
            self._halt.wait(self.interval_s)
        self.drain()

    def drain(self) -> None:
        try:
            size = self.path.stat().st_size
            if size < self.offset:  # truncated or replaced: start again from its beginning
                self.offset = 0
            if size == self.offset:
                return
            with self.path.open("rb") as file:
                file.seek(self.offset)
                data = file.read(size - self.offset)
            end = data.rfind(b"\n") + 1  # whole lines only; the rest on the next pass
            if end:
                self.out.write(data[:end].decode("utf-8", "replace"))
                self.out.flush()
                self.offset += end
        except FileNotFoundError:
            return
        except (BrokenPipeError, ValueError):  # the reader went away: keep serving, stop copying
            self._halt.set()

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout=2)


def load_serve_config(path: Path) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(path.read_text())
    if os.environ.get("ROUTER_PORT"):
        config.setdefault("http_options", {})["port"] = int(os.environ["ROUTER_PORT"])
    return config


def build_applications(config: dict[str, Any]) -> list[tuple[dict[str, Any], Any]]:
    """Each application of the serve config, built here (a config error stops us before Ray starts)."""
    built = []
    for spec in config["applications"]:
        module, _, attr = spec["import_path"].partition(":")
        builder = getattr(importlib.import_module(module), attr)
        built.append((spec, builder(dict(spec.get("args") or {}))))
    return built


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def on_stop_signals() -> None:
    """SIGTERM and SIGHUP (the terminal closed) stop the router as Ctrl-C does."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)


class Launcher:
    def __init__(self, serve_config: dict[str, Any], address: str | None, log_path: Path) -> None:
        self.serve_config = serve_config
        self.address = address  # None: a cluster of our own
        self.log_path = log_path
        self.temp_dir: str | None = None
        self.node_id: str | None = None
        self.deployed: list[str] = []
        self.started_serve = False
        self.failed = False
        self.before: set[int] = set()  # descendants that are not the cluster's
        self.timings: dict[str, float] = {}

    # --- start ------------------------------------------------------------------------------
    def start_ray(self) -> None:
        import ray

        if self.address is None:
            self.temp_dir = tempfile.mkdtemp(prefix="hr-ray-")  # short: Ray's socket paths live in it
            use_private_auth()
            self.before = {p.pid for p in descendants()}
            metrics_port = int(os.environ.get("METRICS_PORT", "8080"))
            ray.init(
                address="local",
                include_dashboard=False,
                log_to_driver=False,
                _temp_dir=self.temp_dir,
                _metrics_export_port=metrics_port,
                namespace="hybrid-router",
            )
            self.node_id = ray.get_runtime_context().get_node_id()
            say(
                f"started a Ray cluster of its own at {ray.get_runtime_context().gcs_address} "
                f"(temp dir {self.temp_dir})"
            )
            say(f"metrics at http://localhost:{metrics_port}/metrics (series ray_router_*)")
        else:
            env_vars = {
                k: os.environ[k]
                for k in (LOG_DIR_ENV, "LOG_LEVEL", "HYBRID_ROUTER_STATE_DIR")
                if os.environ.get(k)
            }
            ray.init(
                address=self.address,
                log_to_driver=False,
                runtime_env={"env_vars": env_vars},
                namespace="hybrid-router",
            )
            say(f"joined the Ray cluster at {self.address}; on exit only the router app is removed from it")

    def deploy(self, applications: list[tuple[dict[str, Any], Any]]) -> None:
        import ray
        from ray import serve

        controller_running = any(
            a["name"] == "SERVE_CONTROLLER_ACTOR" for a in ray.util.list_named_actors(all_namespaces=True)
        )
        if controller_running:
            existing = set(serve.status().applications)
            clash = [spec["name"] for spec, _ in applications if spec["name"] in existing]
            if clash:
                raise SystemExit(
                    f"hybrid-router: an application named {clash[0]!r} already runs on {self.address}"
                )
        self.started_serve = not controller_running
        logging.getLogger("ray.serve").setLevel(
            logging.WARNING
        )  # its "ready at 0.0.0.0" and such: we say it below
        serve.start(
            proxy_location=self.serve_config.get("proxy_location"),
            http_options=self.serve_config.get("http_options"),
        )
        for spec, app in applications:
            self.deployed.append(spec["name"])
            serve.run(app, name=spec["name"], route_prefix=spec.get("route_prefix", "/"))

    # --- stop -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stops what this process started, and nothing else. Each step runs even if one before it
        failed or was cut short by a second Ctrl-C."""
        import ray

        if not ray.is_initialized():
            return
        own = self.address is None
        children = descendants(self.before) if own else []
        clock = time.monotonic()
        try:
            from ray import serve

            if own or (self.started_serve and set(serve.status().applications) <= set(self.deployed)):
                self._shutdown_serve()
            else:
                for name in self.deployed:
                    serve.delete(name)
        except BaseException as exc:  # noqa: BLE001 - go on to the next step
            say(f"Serve did not shut down cleanly ({type(exc).__name__}); stopping its processes")
        self.timings["serve"], clock = time.monotonic() - clock, time.monotonic()
        if own:
            children = descendants(self.before) or children
        try:
            ray.shutdown()  # our own cluster: stops the processes ray.init started
        except BaseException:  # noqa: BLE001, S110 - shutting down: what is left is killed by pid below
            pass
        self.timings["ray"], clock = time.monotonic() - clock, time.monotonic()
        if own:
            try:
                killed = kill_leftovers(children, self.node_id)
            except KeyboardInterrupt:
                killed = kill_leftovers(children, self.node_id)
            if killed:
                say(
                    f"killed {len(killed)} leftover process(es): pids {', '.join(str(p.pid) for p in killed)}"
                )
            self.timings["leftovers"] = time.monotonic() - clock

    def _shutdown_serve(self) -> None:
        from ray.serve import context

        client = context._get_global_client(raise_if_no_controller_running=False)
        if client is not None:
            client.shutdown(timeout_s=GRACEFUL_SERVE_SHUTDOWN_S)

    def remove_files(self) -> None:
        if self.temp_dir:
            if self.failed:
                say(f"Ray's logs are kept in {self.temp_dir}")
            else:
                shutil.rmtree(self.temp_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--serve-config", type=Path, default=SERVE_CONFIG, help="a serve config (default: %(default)s)"
    )
    args = parser.parse_args(argv)

    address = os.environ.get("RAY_ADDRESS") or None
    if address == "local":
        address = None
    os.environ.setdefault(LOG_DIR_ENV, str(default_log_dir()))
    log_path = log_file()
    assert log_path is not None
    log_path.parent.mkdir(parents=True, exist_ok=True)
    serve_config = load_serve_config(args.serve_config)

    if address is None:
        # Serve's ingress mode (deployments/configs/serve.env, less HAProxy where no binary exists)
        # and the local shutdown setting: every Ray process started from here inherits them.
        os.environ.update(local_env())
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ports = [
            int(serve_config.get("http_options", {}).get("port", 8000)),
            int(os.environ.get("METRICS_PORT", "8080")),
        ]
        if os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1":
            ports += [int(os.environ.get(k, default)) for k, default in HAPROXY_PORTS.items()]
        busy = busy_ports(ports)
        if busy:
            say(
                f"{'ports' if len(busy) > 1 else 'port'} {', '.join(map(str, busy))} already in use "
                f"(is the router already running? `ss -ltnp | grep -E ':({'|'.join(map(str, busy))}) '`); "
                "nothing was started"
            )
            return 1

    try:
        applications = build_applications(serve_config)  # validates the router config before Ray starts
    except Exception as exc:  # noqa: BLE001 - a config error names the file and the field
        say(f"could not build the app, nothing was started: {type(exc).__name__}: {exc}")
        return 1
    launcher = Launcher(serve_config, address, log_path)
    tail = Tail(log_path, sys.stdout)
    code = 0
    try:
        on_stop_signals()
        say(f"log: {log_path} (one JSON object per line; shown here as it grows)")
        tail.start()
        launcher.start_ray()
        on_stop_signals()  # again: ray.init installs a SIGTERM handler of its own
        launcher.deploy(applications)
        port = serve_config.get("http_options", {}).get("port", 8000)
        say(f"serving on http://localhost:{port}; Ctrl-C stops it")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        say("stopping...")
    except SystemExit as exc:
        launcher.failed, code = True, 1
        if exc.code not in (None, 0):
            print(exc.code, file=sys.stderr)
    except Exception as exc:  # noqa: BLE001 - reported, then everything started is stopped
        launcher.failed, code = True, 1
        say(f"could not start: {type(exc).__name__}: {exc}")
    started = time.monotonic()
    signal.signal(signal.SIGINT, _interrupt)  # a second Ctrl-C cuts the current step short
    try:
        launcher.stop()
    finally:
        tail.stop()
        launcher.remove_files()
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in launcher.timings.items())
    say(f"stopped in {time.monotonic() - started:.1f} s" + (f" ({steps})" if steps else ""))
    return code


if __name__ == "__main__":
    sys.exit(main())
