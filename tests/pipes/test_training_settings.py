"""GEO_ASSETS_TRAINING chooses where trained_model trains; every remote setting is bounded and
refused with one message naming its variable."""

import json
import re
import subprocess
import sys

import pytest

from geo_assets.assets.placement import gpu_pool, op_tags
from resources.profiles import resource_defs
from resources.training import EcsTraining, InProcessTraining, VertexTraining

VERTEX = {
    "GEO_ASSETS_TRAINING": "vertex",
    "GOOGLE_CLOUD_PROJECT": "geo-assets-prod",
    "GEO_ASSETS_PIPES_BUCKET": "geo-assets-pipes",
    "GEO_ASSETS_VERTEX_IMAGE": "europe-west4-docker.pkg.dev/geo-assets-prod/geo-assets/geo-assets-gpu:0123abc",
}
ECS = {
    "GEO_ASSETS_TRAINING": "ecs",
    "GEO_ASSETS_ECS_CLUSTER": "geo-assets",
    "GEO_ASSETS_PIPES_BUCKET": "geo-assets-pipes",
    "GEO_ASSETS_ECS_SUBNETS": "subnet-0a1, subnet-0b2",
    "AWS_REGION": "eu-west-1",
}
GCP = {"GEO_ASSETS_PROFILE": "gcp", "GEO_ASSETS_STORAGE_ROOT": "gs://geo-assets-data/prod"}
AWS = {"GEO_ASSETS_PROFILE": "aws", "GEO_ASSETS_STORAGE_ROOT": "s3://geo-assets-data/prod"}


@pytest.fixture
def env(monkeypatch):
    for name in (
        "GEO_ASSETS_TRAINING",
        "STORAGE_EMULATOR_HOST",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_DEFAULT_REGION",
    ):
        monkeypatch.delenv(name, raising=False)

    def set_env(*settings: dict) -> None:
        for values in settings:
            for name, value in values.items():
                monkeypatch.setenv(name, value)

    return set_env


@pytest.mark.parametrize("profile", ["local", "aws", "gcp"])
def test_training_is_in_process_unless_chosen(env, profile):
    env({"local": {}, "aws": AWS, "gcp": GCP}[profile])
    assert isinstance(resource_defs()["training"], InProcessTraining)


def test_vertex_settings_from_the_environment(env):
    env(
        GCP,
        VERTEX,
        {
            "GEO_ASSETS_VERTEX_REGION": "europe-west4",
            "GEO_ASSETS_VERTEX_MACHINE_TYPE": "a2-highgpu-2g",
            "GEO_ASSETS_VERTEX_ACCELERATOR_TYPE": "NVIDIA_TESLA_A100",
            "GEO_ASSETS_VERTEX_ACCELERATOR_COUNT": "2",
            "GEO_ASSETS_VERTEX_SERVICE_ACCOUNT": "geo-assets-training@geo-assets-prod.iam.gserviceaccount.com",
            "GEO_ASSETS_TRAINING_MAX_HOURS": "6",
        },
    )
    training = resource_defs()["training"]
    assert isinstance(training, VertexTraining)
    assert (
        training.project,
        training.region,
        training.machine_type,
        training.accelerator_type,
        training.accelerator_count,
        training.service_account,
        training.pipes_bucket,
        training.max_run_hours,
        training.image,
    ) == (
        "geo-assets-prod",
        "europe-west4",
        "a2-highgpu-2g",
        "NVIDIA_TESLA_A100",
        2,
        "geo-assets-training@geo-assets-prod.iam.gserviceaccount.com",
        "geo-assets-pipes",
        6.0,
        VERTEX["GEO_ASSETS_VERTEX_IMAGE"],
    )


def test_ecs_settings_from_the_environment(env):
    env(
        AWS,
        ECS,
        {
            "GEO_ASSETS_ECS_LAUNCH_TYPE": "EC2",
            "GEO_ASSETS_ECS_GPUS": "1",
            "GEO_ASSETS_ECS_CPU": "8192",
            "GEO_ASSETS_ECS_MEMORY": "30720",
            "GEO_ASSETS_ECS_SECURITY_GROUPS": "sg-0c3",
        },
    )
    training = resource_defs()["training"]
    assert isinstance(training, EcsTraining)
    assert (
        training.cluster,
        training.region,
        training.launch_type,
        training.gpus,
        training.cpu,
        training.memory,
        training.subnets,
        training.security_groups,
        training.task_definition,
        training.container,
    ) == (
        "geo-assets",
        "eu-west-1",
        "EC2",
        1,
        8192,
        30720,
        ["subnet-0a1", "subnet-0b2"],
        ["sg-0c3"],
        "geo-assets-training",
        "training",
    )


def test_unknown_training_is_refused(env):
    env({"GEO_ASSETS_TRAINING": "sagemaker"})
    with pytest.raises(
        ValueError, match=r"^unknown GEO_ASSETS_TRAINING='sagemaker'; accepted: in-process, vertex, ecs$"
    ):
        resource_defs()


@pytest.mark.parametrize(
    "profile, training, message",
    [
        (
            AWS,
            VERTEX,
            "Vertex AI training reads and writes the store from the job: it needs a gs://bucket/prefix storage root, "
            "got 's3://geo-assets-data/prod'",
        ),
        (
            GCP,
            ECS,
            "ECS training reads and writes the store from the job: it needs a s3://bucket/prefix storage root, "
            "got 'gs://geo-assets-data/prod'",
        ),
        (
            {},
            VERTEX,
            "Vertex AI training reads and writes the store from the job: it needs a gs://bucket/prefix storage root",
        ),
    ],
)
def test_a_remote_job_needs_its_cloud_store(env, profile, training, message):
    env(profile, training)
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        resource_defs()


@pytest.mark.parametrize(
    "settings, message",
    [
        (
            {"GEO_ASSETS_VERTEX_ACCELERATOR_COUNT": "9", "GEO_ASSETS_VERTEX_ACCELERATOR_TYPE": "NVIDIA_L4"},
            "GEO_ASSETS_VERTEX_ACCELERATOR_COUNT: must be a number from 0 to 8, got 9",
        ),
        (
            {"GEO_ASSETS_VERTEX_ACCELERATOR_COUNT": "-1"},
            "GEO_ASSETS_VERTEX_ACCELERATOR_COUNT: must be a number from 0 to 8, got -1",
        ),
        (
            {"GEO_ASSETS_VERTEX_ACCELERATOR_COUNT": "2"},
            "GEO_ASSETS_VERTEX_ACCELERATOR_COUNT=2 needs GEO_ASSETS_VERTEX_ACCELERATOR_TYPE too, one of NVIDIA_TESLA_T4,",
        ),
        (
            {"GEO_ASSETS_VERTEX_ACCELERATOR_TYPE": "NVIDIA_L4"},
            "GEO_ASSETS_VERTEX_ACCELERATOR_TYPE=NVIDIA_L4 needs GEO_ASSETS_VERTEX_ACCELERATOR_COUNT too, from 1 to 8",
        ),
        (
            {"GEO_ASSETS_VERTEX_ACCELERATOR_TYPE": "NVIDIA_TESLA_K80", "GEO_ASSETS_VERTEX_ACCELERATOR_COUNT": "1"},
            "GEO_ASSETS_VERTEX_ACCELERATOR_TYPE: unknown accelerator type 'NVIDIA_TESLA_K80'; accepted: NVIDIA_TESLA_T4,",
        ),
        (
            {"GEO_ASSETS_VERTEX_MACHINE_TYPE": "n1 standard 8"},
            "GEO_ASSETS_VERTEX_MACHINE_TYPE: 'n1 standard 8' is not a machine type such as n1-standard-8 or g2-standard-12",
        ),
        (
            {"GEO_ASSETS_VERTEX_REGION": "europe"},
            "GEO_ASSETS_VERTEX_REGION: 'europe' is not a Vertex AI region such as us-central1",
        ),
        (
            {"GEO_ASSETS_VERTEX_SERVICE_ACCOUNT": "me@example.com"},
            "GEO_ASSETS_VERTEX_SERVICE_ACCOUNT: 'me@example.com' is not a service account email",
        ),
        (
            {"GEO_ASSETS_TRAINING_MAX_HOURS": "nan"},
            "GEO_ASSETS_TRAINING_MAX_HOURS: must be a number from 0.01 to 168, got nan",
        ),
        (
            {"GEO_ASSETS_TRAINING_MAX_HOURS": "inf"},
            "GEO_ASSETS_TRAINING_MAX_HOURS: must be a number from 0.01 to 168, got inf",
        ),
        (
            {"GEO_ASSETS_TRAINING_MAX_HOURS": "200"},
            "GEO_ASSETS_TRAINING_MAX_HOURS: must be a number from 0.01 to 168, got 200.0",
        ),
        ({"GEO_ASSETS_VERTEX_IMAGE": ""}, "GEO_ASSETS_VERTEX_IMAGE: is required"),
        (
            {"GEO_ASSETS_VERTEX_ENDPOINT": "aiplatform.googleapis.com"},
            "GEO_ASSETS_VERTEX_ENDPOINT: 'aiplatform.googleapis.com' is not an http(s) URL",
        ),
        (
            {"GEO_ASSETS_PIPES_BUCKET": "Pipes_Bucket"},
            "GEO_ASSETS_PIPES_BUCKET: 'Pipes_Bucket' is not a GCS bucket name",
        ),
    ],
)
def test_vertex_settings_are_bounded(env, settings, message):
    env(GCP, VERTEX, settings)
    with pytest.raises(ValueError) as refused:
        resource_defs()
    assert str(refused.value).startswith("GEO_ASSETS_TRAINING=vertex: ")
    assert message in str(refused.value)


@pytest.mark.parametrize(
    "settings, message",
    [
        (
            {"GEO_ASSETS_ECS_GPUS": "1"},
            "GEO_ASSETS_ECS_GPUS=1: Fargate has no GPUs; set GEO_ASSETS_ECS_LAUNCH_TYPE=EC2",
        ),
        (
            {"GEO_ASSETS_ECS_LAUNCH_TYPE": "EC2", "GEO_ASSETS_ECS_GPUS": "9"},
            "GEO_ASSETS_ECS_GPUS: must be a number from 0 to 8, got 9",
        ),
        (
            {"GEO_ASSETS_ECS_CPU": "3000"},
            "GEO_ASSETS_ECS_CPU=3000: Fargate accepts task CPU units 256, 512, 1024, 2048, 4096, 8192, 16384",
        ),
        ({"GEO_ASSETS_ECS_MEMORY": "100"}, "GEO_ASSETS_ECS_MEMORY: must be a number from 512 to 1048576, got 100"),
        (
            {"GEO_ASSETS_ECS_SUBNETS": " , "},
            "Fargate tasks use awsvpc networking: GEO_ASSETS_ECS_SUBNETS must name at least one subnet",
        ),
        ({"GEO_ASSETS_ECS_LAUNCH_TYPE": "SPOT"}, "GEO_ASSETS_ECS_LAUNCH_TYPE: Input should be 'FARGATE' or 'EC2'"),
        ({"GEO_ASSETS_ECS_CLUSTER": ""}, "GEO_ASSETS_ECS_CLUSTER: is required"),
        (
            {"GEO_ASSETS_ECS_SECURITY_GROUPS": "sg-1,sg-2,sg-3,sg-4,sg-5,sg-6"},
            "GEO_ASSETS_ECS_SECURITY_GROUPS: at most 5 security groups, got ['sg-1', 'sg-2', 'sg-3', 'sg-4', 'sg-5', 'sg-6']",
        ),
        ({"AWS_REGION": "Ireland"}, "AWS_REGION: 'Ireland' is not an AWS region such as eu-west-1"),
    ],
)
def test_ecs_settings_are_bounded(env, settings, message):
    env(AWS, ECS, settings)
    with pytest.raises(ValueError) as refused:
        resource_defs()
    assert str(refused.value).startswith("GEO_ASSETS_TRAINING=ecs: ")
    assert message in str(refused.value)


def test_resources_built_in_code_are_checked_too():
    with pytest.raises(ValueError, match="accelerator_count\n  Value error, must be a number from 0 to 8, got 9"):
        VertexTraining(
            project="geo-assets-prod",
            image="img:1",
            pipes_bucket="geo-assets-pipes",
            accelerator_type="NVIDIA_L4",
            accelerator_count=9,
        )
    with pytest.raises(ValueError, match="poll_interval\n  Value error, must be a number from 0.1 to 600, got 0.0"):
        VertexTraining(project="geo-assets-prod", image="img:1", pipes_bucket="geo-assets-pipes", poll_interval=0)


def test_a_step_waiting_on_a_remote_job_asks_for_no_gpu(env):
    assert gpu_pool("trained_model") == "gpu" and "nvidia.com/gpu" in op_tags("trained_model")["dagster-k8s/config"]
    env({"GEO_ASSETS_TRAINING": "vertex"})
    assert gpu_pool("trained_model") is None
    tags = op_tags("trained_model")
    k8s = json.loads(tags["dagster-k8s/config"])
    assert k8s == {
        "container_config": {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}},
        "pod_spec_config": {"node_selector": {"geo-assets/pool": "cpu"}},
    }
    assert (tags["ecs/cpu"], tags["ecs/memory"]) == ("512", "1024") and "ecs/container_overrides" not in tags
    assert gpu_pool("predictions") == gpu_pool("model_evaluation") == "gpu"  # the GPU steps that stay on our nodes


def test_definitions_with_remote_training_hold_no_gpu_slot_for_it(env):
    env(GCP, VERTEX)
    show = (
        "import json; from geo_assets.definitions import defs; g = defs.resolve_asset_graph(); "
        "print(json.dumps({k.to_user_string(): sorted(g.get(k).pools) for k in g.get_all_asset_keys()}))"
    )
    pools = json.loads(subprocess.run([sys.executable, "-c", show], capture_output=True, text=True, check=True).stdout)
    assert pools["trained_model"] == [] and pools["predictions"] == ["gpu"] and pools["model_evaluation"] == ["gpu"]
