"""``python -m deployments.serve_status``: ``serve status``'s YAML without Ray's dashboard (which
the local profile does not start). Only the formatting is tested here: no Ray cluster."""

from __future__ import annotations

import pytest
import yaml
from ray.serve._private.common import DeploymentStatus, DeploymentStatusTrigger, ReplicaState
from ray.serve.schema import (
    ApplicationStatus,
    ApplicationStatusOverview,
    DeploymentStatusOverview,
    ServeStatus,
)

from deployments.serve_status import status_yaml

FAILED = (
    "Deploying app 'router' failed with exception:\ninvalid router config (1 problem)\n"
    "  router.yaml: cost_rules.daily_budgets.total: Input should be greater than 0 (got -50.0)"
)


def status() -> ServeStatus:
    ingress = DeploymentStatusOverview(
        status=DeploymentStatus.HEALTHY,
        status_trigger=DeploymentStatusTrigger.CONFIG_UPDATE_COMPLETED,
        replica_states={ReplicaState.RUNNING: 1},
        message="",
    )
    app = ApplicationStatusOverview(
        status=ApplicationStatus.DEPLOY_FAILED,
        message=FAILED,
        last_deployed_time_s=0.0,
        deployments={"RouterIngress": ingress},
    )
    return ServeStatus(applications={"router": app}, target_capacity=None)


def test_status_yaml_is_serve_status_output():
    data = yaml.safe_load(status_yaml(status()))
    router = data["applications"]["router"]
    assert router["status"] == "DEPLOY_FAILED"
    assert router["message"] == FAILED  # a failed deploy's config problems, line by line
    assert router["deployments"]["RouterIngress"]["replica_states"] == {"RUNNING": 1}


def test_status_yaml_of_one_application():
    assert yaml.safe_load(status_yaml(status(), "router"))["status"] == "DEPLOY_FAILED"
    with pytest.raises(KeyError, match="'other' does not exist"):
        status_yaml(status(), "other")
