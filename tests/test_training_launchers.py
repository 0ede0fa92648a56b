"""GPU dispatch: the ECS request is built, validated against AWS's own API model and handed
to Dagster's PipesECSClient, without anything being sent."""

import boto3
import botocore.session
import dagster as dg
import pytest
from botocore.stub import ANY, Stubber
from botocore.validate import validate_parameters

from dagster_defs.definitions import build_definitions
from dagster_defs.training_launchers import (
    ECSTraining,
    SubprocessTraining,
    TrainingLauncher,
    training_launcher_from_env,
)

ENV = {
    "OMNISAGE_TRAINING": "ecs",
    "OMNISAGE_ECS_CLUSTER": "omnisage-gpu",
    "OMNISAGE_ECS_TASK_DEFINITION": "omnisage-train:7",
    "OMNISAGE_ECS_SUBNETS": "subnet-0a,subnet-0b",
    "OMNISAGE_ECS_SECURITY_GROUPS": "sg-01",
    "AWS_REGION": "eu-west-1",
}
ARGS = ["-m", "omnisage_model.train", "--data", "/mnt/omnisage/assets/training_examples/2026-01-07"]


@pytest.fixture
def ecs_env(monkeypatch) -> dict[str, str]:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    return ENV


def _resolved(launcher: ECSTraining) -> ECSTraining:
    """The resource as a run sees it, its EnvVar fields read from the environment."""
    return launcher.process_config_and_initialize()


def test_the_ecs_request_is_a_valid_run_task_call_that_reserves_a_gpu(ecs_env):
    launcher = _resolved(training_launcher_from_env(ecs_env))
    params = launcher.run_task_params(ARGS)
    shape = botocore.session.get_session().get_service_model("ecs").operation_model("RunTask").input_shape
    validate_parameters(params, shape)  # raises ParamValidationError on anything AWS would refuse
    (override,) = params["overrides"]["containerOverrides"]
    assert override["command"] == ["python", *ARGS]
    assert override["resourceRequirements"] == [{"type": "GPU", "value": "1"}]
    assert params["launchType"] == "EC2" and params["cluster"] == "omnisage-gpu"
    assert params["networkConfiguration"]["awsvpcConfiguration"]["subnets"] == ["subnet-0a", "subnet-0b"]


def test_pipes_ecs_client_sends_that_request_with_its_session_environment(ecs_env, monkeypatch):
    """Dagster's own ECS Pipes client adds the Pipes bootstrap variables and run tags; the
    stubbed client checks the final request against the API model and stops there."""
    launcher = _resolved(training_launcher_from_env(ecs_env))
    ecs = boto3.client("ecs", region_name="eu-west-1", aws_access_key_id="test", aws_secret_access_key="test")
    stubber = Stubber(ecs)
    stubber.add_response(
        "describe_task_definition",
        {"taskDefinition": {"containerDefinitions": [{"name": "omnisage-train", "image": "omnisage:latest"}]}},
        {"taskDefinition": "omnisage-train:7"},
    )
    expected = launcher.run_task_params(ARGS)
    expected["overrides"]["containerOverrides"][0]["environment"] = ANY
    expected["tags"] = ANY
    stubber.add_client_error("run_task", "ClusterNotFoundException", "stubbed: nothing is sent", expected_params=expected)
    monkeypatch.setattr(ECSTraining, "ecs_client", lambda self: ecs)

    @dg.asset
    def trained(context: dg.AssetExecutionContext, training_launcher: TrainingLauncher) -> None:
        training_launcher.run(context, ARGS)

    with stubber:
        result = dg.materialize([trained], resources={"training_launcher": launcher}, raise_on_error=False)
    stubber.assert_no_pending_responses()  # both calls were made, and matched
    assert "stubbed: nothing is sent" in result.failure_data_for_node("trained").error.to_string()


def test_the_local_deployment_trains_in_a_subprocess_and_rejects_unknown_backends():
    assert isinstance(training_launcher_from_env({}), SubprocessTraining)
    with pytest.raises(ValueError, match="OMNISAGE_TRAINING='k8s'"):
        training_launcher_from_env({"OMNISAGE_TRAINING": "k8s"})


def test_the_aws_deployment_binds_ecs_training_limited_by_the_gpu_pool(ecs_env):
    defs = build_definitions()
    assert isinstance(defs.resources["training_launcher"], ECSTraining)
    assert defs.resolve_assets_def("omnisage_checkpoint").op.pool == "gpu"
