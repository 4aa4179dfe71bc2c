"""Runs and steps as ECS tasks (GEO_ASSETS_RUNTIME=ecs), end to end against an ECS API.

moto's server (on 127.0.0.1) stands for ECS, EC2, Secrets Manager and CloudWatch Logs; SeaweedFS for
S3. The daemon's task (deploy/ecs/daemon.json) is started in moto's cluster, and `dagster dev` runs
with that task's environment and the instance deploy/ecs/dagster.yaml (its storage swapped for SQLite).
A run launched over GraphQL goes through the EcsRunLauncher (a task definition registered, RunTask);
a stand-in ECS agent (devtools/clusters.py) runs each started task's container as a local process
with only what the task definition, the overrides and its secrets give it, so the run worker's
ecs_executor starts each step as another task. Asserted: the task definition registered and every
RunTask's overrides (command, CPU, memory, GPU, tags, network), and a RunTask that the API refuses
fails its step with the API's cause in one message.
"""

from __future__ import annotations

import json
import os
import string
import subprocess

import boto3
import pytest
import yaml
from moto.server import ThreadedMotoServer

from devtools.clusters import EcsAgent
from devtools.dagster_dev import BIN, ROOT, dagster_dev, graphql, launch, wait
from devtools.emulators import free_port
from devtools.emulators.s3 import seaweedfs

PARTITION = "2024-06-01|synth-holdout"
REGION = "eu-west-1"
BUCKET = "geo-assets-data"
IMAGE = "registry.invalid/geo-assets:0123abc"
KEYS = ("AKIAGEOASSETSTEST", "geo-assets-test-secret")
EVENTS = """query Events($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events {
  __typename ... on MessageEvent { message stepKey } ... on RunFailureEvent { error { message } }
  ... on ExecutionStepFailureEvent { error { message cause { message } } } } } } }"""


def _render(name: str, values: dict) -> dict:
    return json.loads(string.Template((ROOT / "deploy/ecs" / name).read_text()).substitute(values))


def _failure(url: str, run_id: str) -> str:
    events = graphql(url, EVENTS, {"id": run_id})["logsForRun"]["events"]
    return "\n".join(
        json.dumps(e) for e in events if e["__typename"] in ("RunFailureEvent", "ExecutionStepFailureEvent")
    )


@pytest.fixture(scope="module")
def moto_fargate_tasks():
    """Two gaps in moto's RunTask (5.2.5) for Fargate tasks, which real ECS does not have: it sums each
    container's memory and fails (HTTP 500) when a container has none, which Fargate task definitions
    (and the EcsRunLauncher's) need not give; and the ENI it attaches to an awsvpc task lacks the
    private DNS name it reports. Count no memory as 0, and give the ENI its name (as EC2 derives it)."""
    import types

    from moto.ec2.models.elastic_network_interfaces import NetworkInterface
    from moto.ec2.utils import generate_dns_from_ip
    from moto.ecs.models import EC2ContainerServiceBackend

    original = EC2ContainerServiceBackend._calculate_task_resource_requirements

    def tolerant(task_definition):
        containers = [
            {**c, "memory": c.get("memory") or c.get("memoryReservation") or 0}
            for c in task_definition.container_definitions
        ]
        return original(types.SimpleNamespace(container_definitions=containers))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(EC2ContainerServiceBackend, "_calculate_task_resource_requirements", staticmethod(tolerant))
        # Set when EC2 creates an instance's ENI, missing when ECS creates a task's: derive it when missing.
        patch.setattr(
            NetworkInterface,
            "private_dns_name",
            property(
                lambda eni: eni.__dict__.get("_dns_name") or generate_dns_from_ip(eni.private_ip_address),
                lambda eni, value: eni.__dict__.__setitem__("_dns_name", value),
            ),
            raising=False,
        )
        yield


@pytest.fixture(scope="module")
def ecs_deployment(tmp_path_factory, moto_fargate_tasks):
    tmp = tmp_path_factory.mktemp("ecs")
    home = tmp / "home"
    home.mkdir()
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    moto.start()
    aws = f"http://127.0.0.1:{port}"
    try:
        with seaweedfs(tmp / "s3", [BUCKET], *KEYS) as s3:
            # What the image and the task role give every container: credentials and the endpoints.
            image_env = {
                "PATH": os.environ["PATH"],
                "HOME": str(tmp),
                "AWS_ACCESS_KEY_ID": KEYS[0],
                "AWS_SECRET_ACCESS_KEY": KEYS[1],
                "AWS_ENDPOINT_URL": aws,
                "AWS_ENDPOINT_URL_S3": s3.endpoint_url,
                "GEO_ASSETS_WORKERS": "1",
            }
            kw = {
                "endpoint_url": aws,
                "region_name": REGION,
                "aws_access_key_id": KEYS[0],
                "aws_secret_access_key": KEYS[1],
            }
            ec2, ecs, secrets = (
                boto3.client("ec2", **kw),
                boto3.client("ecs", **kw),
                boto3.client("secretsmanager", **kw),
            )
            vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
            subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
            group = ec2.create_security_group(GroupName="geo-assets-runs", Description="runs", VpcId=vpc)["GroupId"]
            secret = secrets.create_secret(Name="geo-assets-pg", SecretString="not-used-with-sqlite")["ARN"]
            cluster = ecs.create_cluster(clusterName="geo-assets")["cluster"]["clusterArn"]
            values = {
                "AWS_ACCOUNT_ID": "123456789012",
                "AWS_REGION": REGION,
                "BUCKET": BUCKET,
                "IMAGE_REPOSITORY": IMAGE.split(":")[0],
                "IMAGE_TAG": IMAGE.split(":")[1],
                "RDS_ENDPOINT": "db.invalid",
                "MAP_HOST": "map.invalid",
                "PG_PASSWORD_SECRET_ARN": secret,
            }
            daemon_td = _render("daemon.json", values)
            ecs.register_task_definition(**daemon_td)
            network = {
                "awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group], "assignPublicIp": "DISABLED"}
            }
            (daemon,) = ecs.run_task(
                cluster=cluster, taskDefinition=daemon_td["family"], launchType="FARGATE", networkConfiguration=network
            )["tasks"]

            instance = yaml.safe_load((ROOT / "deploy/ecs/dagster.yaml").read_text())
            instance["storage"] = {
                "sqlite": {"base_dir": str(home)}
            }  # PostgreSQL: tests/deploy/test_postgres_instance.py
            (home / "dagster.yaml").write_text(yaml.safe_dump(instance))

            with EcsAgent(aws, REGION, image_env, str(home), tmp) as agent:
                agent.skip.add(daemon["taskArn"])
                agent.remember(daemon)
                daemon_env = {e["name"]: e["value"] for e in daemon_td["containerDefinitions"][0]["environment"]}
                code_env = {
                    e["name"]: e["value"]
                    for e in _render("code-location.json", values)["containerDefinitions"][0]["environment"]
                }
                # `dagster dev` plays the daemon, the webserver and the code server, in the daemon's task.
                env = {
                    **image_env,
                    **code_env,
                    **daemon_env,
                    "DAGSTER_HOME": str(home),
                    "DAGSTER_PG_PASSWORD": "not-used-with-sqlite",
                    "ECS_CONTAINER_METADATA_URI_V4": agent.metadata_uri(daemon["taskArn"]),
                    "AWS_DEFAULT_REGION": REGION,
                }
                init = subprocess.run(
                    [BIN / "geo-assets", "init"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
                )
                assert init.returncode == 0, init.stderr[-3000:]
                with dagster_dev(env, tmp / "dev.log", timeout=240) as url:
                    yield {
                        "url": url,
                        "agent": agent,
                        "ecs": ecs,
                        "ec2": ec2,
                        "cluster": cluster,
                        "subnet": subnet,
                        "values": values,
                        "secret": secret,
                        "daemon": daemon,
                    }
    finally:
        moto.stop()


def _tasks(agent: EcsAgent, run_id: str) -> tuple[dict, dict[str, dict]]:
    """The run's task and its steps' tasks (by step key), as the ECS API describes them."""
    run_task, steps = None, {}
    for container in agent.tasks.values():
        task = container.spec["task"]
        tags = {t["key"]: t["value"] for t in task.get("tags", [])}
        if tags.get("dagster/run_id") != run_id:
            continue
        if "dagster/step-key" in tags:
            steps[tags["dagster/step-key"]] = task
        else:
            run_task = task
    return run_task, steps


def _override(task: dict) -> dict:
    (container,) = task["overrides"]["containerOverrides"]
    return container


def test_run_and_step_tasks(ecs_deployment):
    d = ecs_deployment
    url, agent, ecs = d["url"], d["agent"], d["ecs"]
    run_id = launch(url, "imagery_job", PARTITION, {"imagery_tiles": {"config": {"tile_size": 256}}})
    run = wait(url, run_id, timeout=600)
    assert run["status"] == "SUCCESS", _failure(url, run_id)
    run_task, steps = _tasks(agent, run_id)
    assert set(steps) == {"imagery_tiles"}

    # The task definition the EcsRunLauncher registered for runs (deploy/ecs/dagster.yaml).
    definition = ecs.describe_task_definition(taskDefinition=run_task["taskDefinitionArn"])["taskDefinition"]
    assert definition["family"].startswith("geo-assets-run_")
    assert definition["requiresCompatibilities"] == ["FARGATE"]
    assert definition["taskRoleArn"] == "arn:aws:iam::123456789012:role/geo-assets-run"
    assert definition["executionRoleArn"] == "arn:aws:iam::123456789012:role/geo-assets-ecs-execution"
    (container,) = definition["containerDefinitions"]
    assert container["name"] == "run" and container["image"] == IMAGE
    assert container["secrets"] == [{"name": "DAGSTER_PG_PASSWORD", "valueFrom": d["secret"]}]
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert env["GEO_ASSETS_RUNTIME"] == "ecs" and env["GEO_ASSETS_PROFILE"] == "aws"
    assert env["GEO_ASSETS_STORAGE_ROOT"] == f"s3://{BUCKET}/geo-assets"
    assert container["logConfiguration"]["options"]["awslogs-group"] == "/geo-assets/runs"

    # The run's RunTask: the run worker, at the run size, in the daemon's network.
    assert run_task["overrides"]["cpu"] == "4096" and run_task["overrides"]["memory"] == "16384"
    assert _override(run_task)["command"][:3] == ["dagster", "api", "execute_run"]
    assert run_task["launchType"] == "FARGATE"
    # The step's RunTask: the run's task definition, the step's size from its op tags, its command.
    step = steps["imagery_tiles"]
    assert step["taskDefinitionArn"] == run_task["taskDefinitionArn"]
    assert step["overrides"]["cpu"] == "2048" and step["overrides"]["memory"] == "8192"
    override = _override(step)
    assert override["name"] == "run" and override["command"][:3] == ["dagster", "api", "execute_step"]
    assert "resourceRequirements" not in override
    assert step["launchType"] == "FARGATE"
    subnets = [d_["value"] for a in step["attachments"] for d_ in a["details"] if d_["name"] == "subnetId"]
    assert subnets == [d["subnet"]]
    assert agent.tasks[step["taskArn"]].wait(timeout=120) == 0


def test_gpu_steps_refused_then_placed_on_a_gpu_instance(ecs_deployment):
    d = ecs_deployment
    url, agent, ecs, ec2 = d["url"], d["agent"], d["ecs"], d["ec2"]
    ops = {"predictions": {"config": {"model": "no-such-model"}}}
    # The GPU task definition is not registered yet: ECS refuses the predictions step's RunTask.
    refused = launch(url, "prediction_job", PARTITION, ops)
    assert wait(url, refused, timeout=600)["status"] == "FAILURE"
    events = graphql(url, EVENTS, {"id": refused})["logsForRun"]["events"]
    (step_failure,) = [e for e in events if e["__typename"] == "ExecutionStepFailureEvent"]
    assert step_failure["stepKey"] == "predictions"
    assert step_failure["error"]["message"] == (
        "EcsStepHandler could not start step predictions: An error occurred (ClientException) "
        "when calling the RunTask operation: Unable to describe task definition."
    )
    assert _tasks(agent, refused)[1] == {}

    # Registered, with a GPU instance in the cluster: the step runs there with one GPU.
    gpu_td = _render("gpu-step.json", d["values"])
    ecs.register_task_definition(**gpu_td)
    (instance,) = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="g5.xlarge")[
        "Instances"
    ]
    ecs.register_container_instance(
        cluster=d["cluster"], instanceIdentityDocument=json.dumps({"instanceId": instance["InstanceId"]})
    )
    placed = launch(url, "prediction_job", PARTITION, ops)
    assert wait(url, placed, timeout=600)["status"] == "FAILURE"  # no model trained here: the step itself fails
    assert "no-such-model" in _failure(url, placed)
    _, steps = _tasks(agent, placed)
    step = steps["predictions"]
    assert step["taskDefinitionArn"].split("/")[-1].startswith("geo-assets-gpu-step:")
    assert step["launchType"] == "EC2" and step["containerInstanceArn"]
    assert step["overrides"]["cpu"] == "4096" and step["overrides"]["memory"] == "16384"
    override = _override(step)
    assert override["resourceRequirements"] == [{"type": "GPU", "value": "1"}]
    assert override["command"][:3] == ["dagster", "api", "execute_step"]
