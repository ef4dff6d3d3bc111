"""``serve status`` without Ray's dashboard: the same YAML, read from the Serve controller.

    .venv/bin/python -m deployments.serve_status [APP]

``serve status`` asks the dashboard (http://localhost:8265), which ``make run`` does not start;
this connects to the local Ray cluster (``$RAY_ADDRESS``, else ``auto``) as a driver and asks the
controller itself. Applications and their deployments, each with its status, message (a failed
deploy's error: a config problem, say) and replica states. With APP, that application only.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from typing import Any

import yaml


def status_yaml(status: Any, app: str | None = None) -> str:
    """``serve status``'s YAML for a ``ray.serve.schema.ServeStatus``."""
    from ray.serve.scripts import ServeDeploySchemaDumper, process_dict_for_yaml_dump

    data = process_dict_for_yaml_dump(asdict(status))
    if app is not None:
        if app not in data["applications"]:
            raise KeyError(f"Application {app!r} does not exist; there are {sorted(data['applications'])}.")
        data = data["applications"][app]
    return yaml.dump(data, Dumper=ServeDeploySchemaDumper, default_flow_style=False, sort_keys=False)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    import ray
    from ray import serve

    ray.init(
        address=os.environ.get("RAY_ADDRESS", "auto"),
        namespace="serve",
        logging_level="ERROR",
        log_to_driver=False,
    )
    try:
        print(status_yaml(serve.status(), args[0] if args else None), end="")
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 1
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
