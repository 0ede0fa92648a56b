"""Where training runs: a local subprocess, or a GPU task on Amazon ECS, both through Dagster
Pipes, so the asset gets the same logs, metrics and failure either way.

The trainer is ``python -m omnisage_model.train`` (plain PyTorch); a launcher only decides
which interpreter, on which machine, runs it. On ECS the task's container must see the
storage root at the same path as the Dagster run (an EFS volume mounted at
``$OMNISAGE_HOME``), because the trainer reads the day's bundle and writes the checkpoint
there.
"""

from __future__ import annotations

import abc
import sys
from typing import Any

import boto3
import dagster as dg
from dagster_aws.pipes import PipesCloudWatchMessageReader, PipesECSClient


class TrainingLauncher(dg.ConfigurableResource, abc.ABC):
    """Runs the trainer's arguments (``["-m", "omnisage_model.train", ...]``) through Pipes."""

    @abc.abstractmethod
    def run(self, context: dg.AssetExecutionContext, args: list[str]) -> dg.PipesClientCompletedInvocation: ...


class SubprocessTraining(TrainingLauncher):
    """The default: a child process of the run, with this environment's interpreter."""

    def run(self, context: dg.AssetExecutionContext, args: list[str]) -> dg.PipesClientCompletedInvocation:
        return dg.PipesSubprocessClient().run(context=context, command=[sys.executable, *args])


class ECSTraining(TrainingLauncher):
    """A GPU task on ECS (EC2 capacity with GPU instances): ``run_task`` with the task
    definition's trainer container, its command overridden and one or more GPUs reserved."""

    cluster: str
    task_definition: str
    container: str = "omnisage-train"
    gpus: int = 1
    python: str = "python"  # the interpreter inside the image
    subnets: list[str] = []  # awsvpc networking; empty for bridge/host task definitions
    security_groups: list[str] = []
    capacity_provider: str | None = None  # None: launch type EC2
    region_name: str | None = None

    def run_task_params(self, args: list[str]) -> dict[str, Any]:
        """The ``run_task`` request (Pipes adds its environment variables and tags to it)."""
        params: dict[str, Any] = {
            "cluster": self.cluster,
            "taskDefinition": self.task_definition,
            "count": 1,
            "overrides": {
                "containerOverrides": [
                    {
                        "name": self.container,
                        "command": [self.python, *args],
                        "resourceRequirements": [{"type": "GPU", "value": str(self.gpus)}],
                    }
                ]
            },
        }
        if self.capacity_provider:
            params["capacityProviderStrategy"] = [{"capacityProvider": self.capacity_provider, "weight": 1}]
        else:
            params["launchType"] = "EC2"  # Fargate has no GPUs
        if self.subnets:
            params["networkConfiguration"] = {
                "awsvpcConfiguration": {"subnets": self.subnets, "securityGroups": self.security_groups, "assignPublicIp": "DISABLED"}
            }
        return params

    def ecs_client(self) -> Any:
        return boto3.client("ecs", region_name=self.region_name)

    def run(self, context: dg.AssetExecutionContext, args: list[str]) -> dg.PipesClientCompletedInvocation:
        # Pipes messages come back through the container's CloudWatch log stream (awslogs driver).
        logs = PipesCloudWatchMessageReader(client=boto3.client("logs", region_name=self.region_name))
        return PipesECSClient(client=self.ecs_client(), message_reader=logs).run(
            context=context, run_task_params=self.run_task_params(args), pipes_container_name=self.container
        )


def training_launcher_from_env(environ: dict[str, str]) -> TrainingLauncher:
    """``OMNISAGE_TRAINING=ecs`` selects ECS, configured by ``OMNISAGE_ECS_*`` variables
    (read by Dagster when the run starts, never stored in code); otherwise a subprocess."""
    backend = environ.get("OMNISAGE_TRAINING", "subprocess")
    if backend == "subprocess":
        return SubprocessTraining()
    if backend != "ecs":
        raise ValueError(f"OMNISAGE_TRAINING={backend!r}: choose subprocess or ecs")

    def listed(name: str) -> list[str]:
        return [v for v in environ.get(name, "").split(",") if v]

    return ECSTraining(
        cluster=dg.EnvVar("OMNISAGE_ECS_CLUSTER"),
        task_definition=dg.EnvVar("OMNISAGE_ECS_TASK_DEFINITION"),
        container=environ.get("OMNISAGE_ECS_CONTAINER", "omnisage-train"),
        gpus=int(environ.get("OMNISAGE_ECS_GPUS", "1")),
        subnets=listed("OMNISAGE_ECS_SUBNETS"),
        security_groups=listed("OMNISAGE_ECS_SECURITY_GROUPS"),
        capacity_provider=environ.get("OMNISAGE_ECS_CAPACITY_PROVIDER") or None,
        region_name=environ.get("AWS_REGION") or None,
    )
