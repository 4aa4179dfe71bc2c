"""trained_model as an ECS task through dagster-aws's PipesECSClient.

Against moto's ECS API in server mode (it validates and records the RunTask request), with the
training task definition of deploy/ecs/ registered; a local process stands in for the task's
container (tests/pipes/ecs_stand_in.py). The Pipes context and messages travel through a real S3
API (SeaweedFS), and the job reads and writes the data bucket itself.
"""

import json
import os
import signal
import string
import threading
import time
import uuid
from pathlib import Path

import boto3
import pytest
from dagster_pipes import decode_param
from ecs_stand_in import RUN_TASK, TaskRunner, moto_server, recorded
from pipes_support import MODEL, PIPES_BUCKET, job_env, train, train_twice_and_compare

from geo_assets.cli.demo import failure_message
from geo_assets.ml.versions import TrainingRequest
from resources.training import EcsTraining

ROOT = Path(__file__).resolve().parents[2]
CLUSTER, REGION = "geo-assets", "us-east-1"
VALUES = {
    "AWS_ACCOUNT_ID": "123456789012",
    "AWS_REGION": REGION,
    "IMAGE_REPOSITORY": "registry.invalid/geo-assets",
    "IMAGE_TAG": "0123abc",
}


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    with moto_server(tmp_path_factory.mktemp("moto")) as (url, recording):
        clients = {
            name: boto3.client(
                name, endpoint_url=url, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
            )
            for name in ("ecs", "ec2")
        }
        ec2 = clients["ec2"]
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(
            VpcId=vpc, EnableDnsHostnames={"Value": True}
        )  # as Fargate VPCs have it (moto needs it)
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName="training", Description="training tasks", VpcId=vpc)["GroupId"]
        clients["ecs"].create_cluster(clusterName=CLUSTER)
        definition = json.loads(string.Template((ROOT / "deploy/ecs/training.json").read_text()).substitute(VALUES))
        clients["ecs"].register_task_definition(**definition)
        yield {"url": url, "recording": recording, "ecs": clients["ecs"], "subnet": subnet, "group": group}


@pytest.fixture
def ecs(moto, s3_storage, monkeypatch, tmp_path):
    """The ECS API for the step's client, and a runner for the tasks it starts."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECS", moto["url"])
    with TaskRunner(moto["url"], REGION, job_env(), tmp_path) as runner:
        yield {**moto, "runner": runner}


def _ecs(moto, **overrides) -> EcsTraining:
    settings = dict(
        cluster=CLUSTER,
        region=REGION,
        subnets=[moto["subnet"]],
        security_groups=[moto["group"]],
        pipes_bucket=PIPES_BUCKET,
        cpu=2048,
        memory=8192,
        poll_interval=1,
        message_interval=1.0,
    )
    return EcsTraining(**{**settings, **overrides})


def _run_tasks(moto) -> list[dict]:
    return recorded(moto["recording"], RUN_TASK)


def test_ecs_training_equals_in_process_training(s3_storage, instance, ecs):
    already = len(_run_tasks(ecs))
    remote, record, meta = train_twice_and_compare(s3_storage, _ecs(ecs), instance)
    assert meta["training"] == "ecs"
    (task,) = ecs["runner"].tasks
    assert meta["AWS ECS Task URL"] == (
        f"https://{REGION}.console.aws.amazon.com/ecs/v2/clusters/{CLUSTER}/tasks/{task.rsplit('/', 1)[-1]}"
    )

    # The exact RunTask request, as the ECS API received it.
    (run_task,) = _run_tasks(ecs)[already:]
    (container,) = run_task["overrides"]["containerOverrides"]
    env = {e["name"]: e["value"] for e in container.pop("environment")}
    uuid.UUID(run_task.pop("clientToken"))  # botocore's idempotency token
    run = instance.get_run_by_id(remote.run_id)
    assert run_task == {
        "cluster": CLUSTER,
        "taskDefinition": "geo-assets-training",
        "count": 1,
        "launchType": "FARGATE",
        "startedBy": "geo-assets",
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": [ecs["subnet"]],
                "securityGroups": [ecs["group"]],
                "assignPublicIp": "DISABLED",
            }
        },
        "overrides": {
            "cpu": "2048",
            "memory": "8192",
            "containerOverrides": [
                {
                    "name": "training",
                    "command": ["python", "-m", "geo_assets.remote_training", "--messages", "s3", "--interval", "1"],
                }
            ],
        },
        "tags": [
            {"key": "geo-assets/model", "value": MODEL},
            {"key": "dagster/run-id", "value": remote.run_id},
            {"key": "dagster/job", "value": run.job_name},
            {"key": "dagster/partition", "value": MODEL},
        ],
    }
    assert set(env) == {"DAGSTER_PIPES_CONTEXT", "DAGSTER_PIPES_MESSAGES"}
    context, messages = decode_param(env["DAGSTER_PIPES_CONTEXT"]), decode_param(env["DAGSTER_PIPES_MESSAGES"])
    assert context["bucket"] == PIPES_BUCKET and context["key"].endswith("/context.json")
    assert messages == {"bucket": PIPES_BUCKET, "key_prefix": messages["key_prefix"], "include_stdio_in_messages": True}

    # The task ran to its end; its messages came through the bucket and its log lines reached the step's log.
    assert ecs["ecs"].describe_tasks(cluster=CLUSTER, tasks=[task])["tasks"][0]["lastStatus"] == "STOPPED"
    s3 = boto3.client("s3")
    chunks = [
        o["Key"] for o in s3.list_objects_v2(Bucket=PIPES_BUCKET, Prefix=messages["key_prefix"]).get("Contents", [])
    ]
    assert chunks and all(k.endswith(".json") for k in chunks)
    logs = [e.message for e in instance.all_logs(remote.run_id) if e.message]
    assert any(m.startswith("epoch 2/2: loss") for m in logs)
    assert any(m.startswith(f"stored version {record['version']} of {MODEL}") for m in logs)


def test_a_failed_task_fails_the_step_with_the_training_exception(s3_storage, instance, ecs):
    store = s3_storage.store()
    item = store.read_json(f"manifests/training_set/{MODEL}.json")["items"][0]
    tile = store.read_json(item["imagery"])["tiles"][0]["path"]
    store.delete(tile)
    result = train(s3_storage, _ecs(ecs), instance)
    assert not result.success
    message = failure_message(result)
    assert message == (
        "resources.training.RemoteTrainingError: remote training on ECS failed: task of geo-assets-training on cluster "
        f"{CLUSTER}: ended without reporting a model version; the training raised geo_assets.geo.cog.CorruptRasterError: "
        f"cannot read raster /vsis3/{store.bucket}/{store.prefix}/{tile}: The specified key does not exist."
    ), message
    (container,) = ecs["runner"].tasks.values()
    assert container.wait(timeout=30) == 1
    assert not store.list("models")


def test_gpu_tasks_run_on_ec2_with_a_gpu_requirement():
    training = EcsTraining(
        cluster=CLUSTER, launch_type="EC2", gpus=2, cpu=8192, memory=61440, pipes_bucket=PIPES_BUCKET
    )
    request = TrainingRequest(MODEL, {}, {})
    assert training.run_task_params(request) == {
        "cluster": CLUSTER,
        "taskDefinition": "geo-assets-training",
        "count": 1,
        "launchType": "EC2",
        "startedBy": "geo-assets",
        "overrides": {
            "cpu": "8192",
            "memory": "61440",
            "containerOverrides": [
                {
                    "name": "training",
                    "command": ["python", "-m", "geo_assets.remote_training", "--messages", "s3", "--interval", "10"],
                    "environment": [],
                    "resourceRequirements": [{"type": "GPU", "value": "2"}],
                }
            ],
        },
        "tags": [{"key": "geo-assets/model", "value": MODEL}],
    }


def test_an_interrupted_step_stops_its_task(s3_storage, instance, ecs):
    runner = ecs["runner"]

    def interrupt_once_running():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if runner.tasks:
                os.kill(os.getpid(), signal.SIGINT)  # what `dagster` and the run launchers send a step
                return
            time.sleep(0.05)

    threading.Thread(target=interrupt_once_running, daemon=True).start()
    result = train(s3_storage, _ecs(ecs), instance)
    assert not result.success
    (task,) = runner.tasks
    stops = recorded(ecs["recording"], "AmazonEC2ContainerServiceV20141113.StopTask")
    assert {"cluster": CLUSTER, "task": task, "reason": "Dagster process was interrupted"} in stops
    assert (
        ecs["ecs"].describe_tasks(cluster=CLUSTER, tasks=[task])["tasks"][0]["stoppedReason"]
        == "Dagster process was interrupted"
    )
    assert not s3_storage.store().list("models")
