"""Checks router configs offline, the way start-up would, and lists every problem at once.

    python -m app.check_config [FILE ...]

Each FILE is a router config (``deployments/configs/router.yaml``), a Serve config whose
applications run ``deployments.builder:build_app`` (``local.yaml``, ``gke.yaml``: the config
inline in ``args.config``, or the file of ``args.config_path``, else ``$ROUTER_CONFIG``, else
the default), or a RayService manifest (``kuberay/rayservice.yaml``: its ``serveConfigV2``).
Without FILE: the router config ``make run`` would use (``$ROUTER_CONFIG``, else the default).
The client keys in the environment (``auth.keys_env``, ``auth.admin_keys_env``) are checked
too, where they are set.

Prints ``FILE: ok`` per good config; otherwise every problem on its own line, as
``FILE: field.path: what is wrong``, on stderr. Exit status: 0 when every config is good, 1 when
any has a problem, 2 for a wrong command line. Needs neither Ray nor a network, so CI and a
GKE pipeline can run it before deploying.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from app.config import ConfigError, RouterConfig, load_config, parse_config, resolve_config_path
from app.security.auth import key_problems

BUILDER = "deployments.builder:build_app"


def configs_in(path: Path) -> Iterator[tuple[str, Any]]:
    """(source, raw router config or a path to one) for each router config ``path`` holds."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, yaml.YAMLError):
        yield str(path), path  # load_config says what is wrong with it
        return
    where: list[str] = []
    if isinstance(raw, dict) and raw.get("kind") == "RayService":
        text = (raw.get("spec") or {}).get("serveConfigV2")
        if not isinstance(text, str):
            raise ConfigError(str(path), [("spec.serveConfigV2", "a RayService needs its serve config here")])
        try:
            raw, where = yaml.safe_load(text), ["serveConfigV2"]
        except yaml.YAMLError as exc:
            raise ConfigError(str(path), [("spec.serveConfigV2", f"not valid YAML: {exc}")]) from None
    if isinstance(raw, dict) and "applications" in raw and "models" not in raw:
        yield from _applications(path, where, raw["applications"])
        return
    yield str(path), raw


def _applications(path: Path, where: list[str], apps: Any) -> Iterator[tuple[str, Any]]:
    if not isinstance(apps, list):
        raise ConfigError(str(path), [("applications", "expected a list of applications")])
    for i, app in enumerate(apps):
        if not isinstance(app, dict) or app.get("import_path") != BUILDER:
            continue  # not the router
        name = app.get("name", i)
        args = app.get("args") or {}
        if not isinstance(args, dict):
            raise ConfigError(str(path), [(f"applications.{i}.args", "expected a mapping")])
        if args.get("config") is not None:
            yield f"{path} ({', '.join([*where, f'application {name!r}', 'args.config'])})", args["config"]
        else:
            yield (
                str(resolve_config_path(args.get("config_path"))),
                resolve_config_path(args.get("config_path")),
            )


def check(paths: Sequence[Path]) -> tuple[list[str], list[ConfigError]]:
    """(good configs, as 'source: ok ...' lines; the errors of the others), each error once."""
    good: list[str] = []
    errors: list[ConfigError] = []
    key_checks: dict[tuple[str, str], None] = {}
    for path in paths:
        try:
            found = list(configs_in(path))
        except ConfigError as exc:
            errors.append(exc)
            continue
        if not found:
            errors.append(ConfigError(str(path), [("applications", f"no application runs {BUILDER}")]))
        for source, raw in found:
            try:
                config: RouterConfig = (
                    load_config(raw) if isinstance(raw, Path) else parse_config(raw, source=source)
                )
            except ConfigError as exc:
                errors.append(exc)
                continue
            good.append(f"{source}: ok ({len(config.models)} models, {len(config.providers)} providers)")
            key_checks.update(dict.fromkeys(key_problems(config.auth)))
    if key_checks:
        errors.append(ConfigError("environment", list(key_checks), title="invalid client keys"))
    return good, errors


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app.check_config",
        description="Check router configs (or Serve configs and RayService manifests that carry one) "
        "without starting anything; list every problem with its field path.",
    )
    parser.add_argument(
        "files",
        nargs="*",
        type=Path,
        metavar="FILE",
        help="router config, Serve config or RayService manifest (default: $ROUTER_CONFIG, else "
        "deployments/configs/router.yaml)",
    )
    args = parser.parse_args(argv)
    good, errors = check(args.files or [resolve_config_path(None)])
    for line in good:
        print(line)
    for error in errors:
        print(error, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
