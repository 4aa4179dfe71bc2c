"""Where `trained_model` trains: in the step's own process, or as a remote job through Dagster Pipes.

    InProcessTraining   the step's process (the default; uses the `compute` resource to read tiles)
    VertexTraining      a Vertex AI custom job (GCP): machine type, accelerator type and count,
                        image, region and service account from settings; Pipes through GCS
    EcsTraining         an ECS task (AWS) through dagster-aws's PipesECSClient; Pipes through S3

Every kind calls `geo_assets.ml.versions.train_version` with the same request, so the version id,
the exported weights and the record are the same wherever training runs. The remote container
runs `python -m geo_assets.remote_training` from the code location's own image and reads the
training tiles from the store by URI; its credentials come from its own role or service account
(never from the step: no secret travels in the Pipes context).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import dagster as dg
from dagster._core.events import DagsterEventType
from pydantic import model_validator

from geo_assets.config import validated  # the settings' bounds are checked as run config is
from geo_assets.engine.batches import Mapper
from geo_assets.ml.versions import TrainedVersion, TrainingRequest, train_version
from geo_assets.settings import by_name
from resources.storage import StorageResource
from resources.vertex import PipesVertexClient, VertexJobs, vertex_labels

TRAINING = by_name("GEO_ASSETS_TRAINING")  # in-process (default), vertex or ecs: chosen in resources/profiles.py
TRAINING_ENV = TRAINING.name
ENTRYPOINT = ["python", "-m", "geo_assets.remote_training"]
MAX_ACCELERATORS = 8
# Vertex AI's NVIDIA accelerators (MachineSpec.acceleratorType); TPUs need TPU machine types and code.
VERTEX_ACCELERATORS = (
    "NVIDIA_TESLA_T4",
    "NVIDIA_TESLA_V100",
    "NVIDIA_TESLA_P100",
    "NVIDIA_TESLA_P4",
    "NVIDIA_TESLA_A100",
    "NVIDIA_A100_80GB",
    "NVIDIA_L4",
    "NVIDIA_H100_80GB",
    "NVIDIA_H100_MEGA_80GB",
    "NVIDIA_H200_141GB",
    "NVIDIA_B200",
)
FARGATE_CPU = (256, 512, 1024, 2048, 4096, 8192, 16384)  # task CPU units Fargate accepts
PIPES_CLOSED_WITH_EXCEPTION = "[pipes] external process pipes closed with exception"


def _within(low: float, high: float):
    return validated(
        lambda v: math.isfinite(v) and low <= v <= high, f"must be a number from {low} to {high}, got {{value}}"
    )


def _pattern(regex: str, what: str):
    return validated(lambda v: isinstance(v, str) and re.fullmatch(regex, v) is not None, f"{{value}} is not {what}")


PollSeconds = Annotated[float, _within(0.1, 600)]
MessageSeconds = Annotated[float, _within(0.5, 60)]
RunHours = Annotated[float, _within(0.01, 168)]  # at most a week
Image = Annotated[str, _pattern(r"[^\s]{1,1024}", "a container image reference")]


def remote_training_chosen() -> bool:
    """Whether this deployment trains in remote jobs: then trained_model's step only waits on one."""
    return TRAINING.get() != "in-process"


class TrainingResource(dg.ConfigurableResource):
    """The interface `trained_model` calls: train (or reuse) the version a request names."""

    def train(
        self,
        context: dg.AssetExecutionContext,
        storage: StorageResource,
        request: TrainingRequest,
        mapper: Mapper,
        before_record: Callable[[], None] = lambda: None,
    ) -> tuple[TrainedVersion, dict]:
        """The stored version and metadata saying where it was trained. `before_record` runs right before a
        new version's record is stored, in this process (it raises where the step may no longer publish);
        a remote job stores its record itself, and the step's manifest is checked when it is published."""
        raise NotImplementedError


class InProcessTraining(TrainingResource):
    """Train in the step's own process (CUDA when the run's node has a GPU and the config allows it)."""

    def train(self, context, storage, request, mapper, before_record=lambda: None):
        return train_version(storage.store(), request, mapper, context.log.info, before_record), {
            "training": "in-process"
        }


class RemoteTrainingError(RuntimeError):
    """A remote training job failed; the message says which job and why."""


class _RemoteTraining(TrainingResource):
    """What the remote kinds share: the Pipes extras, the store check and reading the job's answer."""

    pipes_bucket: str  # the bucket that carries the Pipes context and messages (not the data's)
    message_interval: MessageSeconds = 10.0  # how often the job uploads messages and the step reads them
    max_run_hours: RunHours = 24.0

    SCHEME: ClassVar[str] = ""  # the store the job reads and writes: gs:// for Vertex AI, s3:// for ECS
    WHERE: ClassVar[str] = ""
    KIND: ClassVar[str] = ""  # its GEO_ASSETS_TRAINING value

    def check_root(self, root: str) -> str:
        if not root.startswith(self.SCHEME):
            raise ValueError(
                f"{self.WHERE} training reads and writes the store from the job: it needs a "
                f"{self.SCHEME}bucket/prefix storage root, got {root!r}"
            )
        return root

    def _extras(self, storage: StorageResource, request: TrainingRequest) -> dict:
        # Where the store is, never its keys: the job authenticates as its own role or service account.
        location = {name: storage.resolved(name) for name in ("root", "endpoint_url", "region", "project")}
        location = {k: v for k, v in location.items() if v is not None}
        if storage.anonymous:
            location["anonymous"] = True
        self.check_root(location["root"])
        return {"request": request.to_json(), "storage": location}

    def _check_device(self, request: TrainingRequest, accelerators: int, setting: str) -> None:
        """Refuse, before launching anything, a CUDA device the job's machine will not have."""
        device = request.settings["device"]
        index = int(device.split(":")[1]) if device.startswith("cuda:") else 0
        if device.startswith("cuda") and index >= accelerators:
            raise ValueError(
                f"trained_model config asks for device {device!r}, but {self.WHERE} training has "
                f"{accelerators} GPU(s) ({setting}); use device 'auto' or 'cpu', or give the job GPUs"
            )

    def _command(self, messages: str) -> list[str]:
        return [*ENTRYPOINT, "--messages", messages, "--interval", f"{self.message_interval:g}"]

    def _answer(self, context, invocation, job: str, job_error: str | None) -> TrainedVersion:
        """The version the job reported, or one error naming the job, its state and the training's exception."""
        answers = (
            [m for m in invocation.get_custom_messages() if isinstance(m, dict) and "record" in m] if invocation else []
        )
        if answers and job_error is None:
            return TrainedVersion(answers[-1]["record"], reused=bool(answers[-1]["reused"]))
        cause = _remote_exception(context)
        reason = job_error or "ended without reporting a model version"
        raise RemoteTrainingError(
            f"remote training on {self.WHERE} failed: {job}: {reason}"
            + (f"; the training raised {cause}" if cause else "; see the job's logs")
        )


def _remote_exception(context) -> str | None:
    """The exception the job's training raised, as its Pipes session reported it to this step."""
    step = context.get_step_execution_context().step.key
    for entry in reversed(context.instance.all_logs(context.run.run_id, of_type=DagsterEventType.ENGINE_EVENT)):
        event = entry.dagster_event
        if event and event.step_key == step and event.message == PIPES_CLOSED_WITH_EXCEPTION:
            error = event.engine_event_data.error
            return error.message.strip() if error else None
    return None


VertexRegion = Annotated[str, _pattern(r"[a-z]+-[a-z]+[0-9]{1,2}", "a Vertex AI region such as us-central1")]
MachineType = Annotated[
    str, _pattern(r"[a-z][a-z0-9]*-[a-z0-9]+(-[a-z0-9]+)*", "a machine type such as n1-standard-8 or g2-standard-12")
]
Accelerator = Annotated[
    str,
    validated(
        lambda v: v in VERTEX_ACCELERATORS,
        f"unknown accelerator type {{value}}; accepted: {', '.join(VERTEX_ACCELERATORS)}",
    ),
]
GcpProject = Annotated[str, _pattern(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", "a Google Cloud project id")]
ServiceAccount = Annotated[
    str,
    _pattern(
        r"[a-z0-9._-]+@[a-z0-9.-]+\.gserviceaccount\.com",
        "a service account email (NAME@PROJECT.iam.gserviceaccount.com)",
    ),
]
GcsBucket = Annotated[str, _pattern(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]", "a GCS bucket name")]


class VertexTraining(_RemoteTraining):
    """Train as a Vertex AI custom job: one worker pool of one replica running the code location's image."""

    project: GcpProject
    region: VertexRegion = "us-central1"
    image: Image  # the code location's image (deploy/Dockerfile.gpu for accelerators), in Artifact Registry
    machine_type: MachineType = "n1-standard-8"
    accelerator_type: Accelerator | None = None
    accelerator_count: Annotated[int, _within(0, MAX_ACCELERATORS)] = 0
    service_account: ServiceAccount | None = None  # None: Vertex AI's default service agent
    pipes_bucket: GcsBucket
    poll_interval: PollSeconds = 15.0  # seconds between GetCustomJob calls
    api_endpoint: Annotated[str, _pattern(r"https?://[^\s/]+(/\S*)?", "an http(s) URL")] | None = (
        None  # default https://REGION-aiplatform.googleapis.com
    )
    anonymous: bool = False  # no credentials: only for a local stand-in of the API

    SCHEME: ClassVar[str] = "gs://"
    WHERE: ClassVar[str] = "Vertex AI"
    KIND: ClassVar[str] = "vertex"

    @model_validator(mode="after")
    def _accelerators(self):
        if self.accelerator_count and not self.accelerator_type:
            raise ValueError(
                f"accelerator_count={self.accelerator_count} needs accelerator_type too, one of {', '.join(VERTEX_ACCELERATORS)}"
            )
        if self.accelerator_type and not self.accelerator_count:
            raise ValueError(
                f"accelerator_type={self.accelerator_type} needs accelerator_count too, from 1 to {MAX_ACCELERATORS}"
            )
        return self

    def custom_job(self, context, request: TrainingRequest) -> dict:
        """The CustomJob body (before the Pipes client adds its bootstrap env and the run's labels)."""
        machine: dict[str, Any] = {"machineType": self.machine_type}
        if self.accelerator_count:
            machine.update(acceleratorType=self.accelerator_type, acceleratorCount=self.accelerator_count)
        spec = {
            "workerPoolSpecs": [
                {
                    "machineSpec": machine,
                    "replicaCount": "1",  # int64 in the API: a JSON string
                    "containerSpec": {"imageUri": self.image, "command": self._command("gcs"), "args": []},
                }
            ],
            "scheduling": {"timeout": f"{round(self.max_run_hours * 3600)}s"},
        }
        if self.service_account:
            spec["serviceAccount"] = self.service_account
        return {
            "displayName": f"geo-assets-train-{request.model}-{context.run.run_id[:8]}"[:128],
            "labels": vertex_labels({"geo-assets-model": request.model}),
            "jobSpec": spec,
        }

    def train(self, context, storage, request, mapper, before_record=lambda: None):
        from dagster_gcp.pipes import PipesGCSContextInjector, PipesGCSMessageReader
        from google.cloud import storage as gcs

        self._check_device(request, self.accelerator_count, "accelerator_count")
        extras = self._extras(storage, request)
        bucket_client = gcs.Client(project=self.project)  # ADC; a local GCS server when STORAGE_EMULATOR_HOST is set
        client = PipesVertexClient(
            VertexJobs(self.project, self.region, self.api_endpoint, self.anonymous),
            context_injector=PipesGCSContextInjector(bucket=self.pipes_bucket, client=bucket_client),
            message_reader=PipesGCSMessageReader(
                bucket=self.pipes_bucket,
                client=bucket_client,
                interval=self.message_interval,
                include_stdio_in_messages=True,
            ),
            poll_interval=self.poll_interval,
        )
        invocation, job = client.run(context=context, custom_job=self.custom_job(context, request), extras=extras)
        state = job.get("state")
        job_error = None
        if state != "JOB_STATE_SUCCEEDED":
            message = (job.get("error") or {}).get("message")
            job_error = f"ended {state}" + (f": {message}" if message else "")
        trained = self._answer(context, invocation, f"custom job {job['name']}", job_error)
        return trained, {
            "training": "vertex",
            "vertex_job": job["name"],
            "machine_type": self.machine_type,
            "accelerators": f"{self.accelerator_count} x {self.accelerator_type}" if self.accelerator_count else "none",
        }


EcsName = Annotated[str, _pattern(r"[A-Za-z0-9:/_.-]{1,255}", "an ECS name or ARN")]
S3Bucket = Annotated[str, _pattern(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", "an S3 bucket name")]


class EcsTraining(_RemoteTraining):
    """Train as an ECS task of the training task definition (deploy/ecs/training.json), through PipesECSClient.

    AWS endpoints and credentials come from the standard chain (AWS_REGION, AWS_ENDPOINT_URL_ECS,
    AWS_ENDPOINT_URL_S3, roles).
    """

    cluster: EcsName
    region: Annotated[str, _pattern(r"[a-z]{2}(-[a-z]+)+-[0-9]", "an AWS region such as eu-west-1")] | None = (
        None  # default: AWS_REGION / AWS_DEFAULT_REGION
    )
    task_definition: EcsName = "geo-assets-training"  # family, family:revision or ARN
    container: EcsName = "training"  # the container that trains (its command and env are overridden)
    launch_type: Literal["FARGATE", "EC2"] = "FARGATE"
    subnets: Annotated[
        list[str], validated(lambda v: len(v) <= 16, "at most 16 subnets, got {value}")
    ] = []  # awsvpc (required on Fargate)
    security_groups: Annotated[
        list[str], validated(lambda v: len(v) <= 5, "at most 5 security groups, got {value}")
    ] = []
    assign_public_ip: bool = False
    cpu: Annotated[int, _within(128, 196608)] = 4096  # task CPU units (1024 = 1 vCPU)
    memory: Annotated[int, _within(512, 1048576)] = 16384  # task memory, MiB
    gpus: Annotated[int, _within(0, MAX_ACCELERATORS)] = 0  # GPUs for the container (EC2 launch type only)
    pipes_bucket: S3Bucket
    poll_interval: Annotated[int, _within(1, 600)] = 6  # seconds between DescribeTasks calls

    SCHEME: ClassVar[str] = "s3://"
    WHERE: ClassVar[str] = "ECS"
    KIND: ClassVar[str] = "ecs"

    @model_validator(mode="after")
    def _placement(self):
        if self.launch_type == "FARGATE":
            if self.gpus:
                raise ValueError(
                    f"gpus={self.gpus}: Fargate has no GPUs; set launch_type=EC2 (GPU container instances)"
                )
            if self.cpu not in FARGATE_CPU:
                raise ValueError(f"cpu={self.cpu}: Fargate accepts task CPU units {', '.join(map(str, FARGATE_CPU))}")
            if not self.subnets:
                raise ValueError("Fargate tasks use awsvpc networking: subnets must name at least one subnet")
        return self

    def run_task_params(self, request: TrainingRequest) -> dict:
        """The RunTask request (before PipesECSClient adds its bootstrap env and the run's tags)."""
        container: dict[str, Any] = {"name": self.container, "command": self._command("s3"), "environment": []}
        if self.gpus:
            container["resourceRequirements"] = [{"type": "GPU", "value": str(self.gpus)}]
        params = {
            "cluster": self.cluster,
            "taskDefinition": self.task_definition,
            "count": 1,
            "launchType": self.launch_type,
            "startedBy": "geo-assets",
            "overrides": {"cpu": str(self.cpu), "memory": str(self.memory), "containerOverrides": [container]},
            "tags": [{"key": "geo-assets/model", "value": request.model}],
        }
        if self.subnets:
            params["networkConfiguration"] = {
                "awsvpcConfiguration": {
                    "subnets": list(self.subnets),
                    "securityGroups": list(self.security_groups),
                    "assignPublicIp": "ENABLED" if self.assign_public_ip else "DISABLED",
                }
            }
        return params

    def train(self, context, storage, request, mapper, before_record=lambda: None):
        import boto3
        from dagster_aws.pipes import PipesECSClient, PipesS3ContextInjector, PipesS3MessageReader

        self._check_device(request, self.gpus, "gpus")
        extras = self._extras(storage, request)
        s3 = boto3.client("s3", region_name=self.region)
        client = PipesECSClient(
            client=boto3.client("ecs", region_name=self.region),
            context_injector=PipesS3ContextInjector(bucket=self.pipes_bucket, client=s3),
            message_reader=PipesS3MessageReader(
                bucket=self.pipes_bucket, client=s3, interval=self.message_interval, include_stdio_in_messages=True
            ),
        )
        attempts = max(1, math.ceil(self.max_run_hours * 3600 / self.poll_interval))
        job_error, invocation = None, None
        try:
            invocation = client.run(
                context=context,
                run_task_params=self.run_task_params(request),
                extras=extras,
                waiter_config={"Delay": self.poll_interval, "MaxAttempts": attempts},
            )
        except RuntimeError as exc:  # a task that failed to start, or a container that exited non-zero
            job_error = str(exc)
        trained = self._answer(
            context, invocation, f"task of {self.task_definition} on cluster {self.cluster}", job_error
        )
        return trained, {"training": "ecs", **(invocation.metadata if invocation else {})}


# Deployment settings: GEO_ASSETS_TRAINING picks the kind (resources/profiles.py); these configure it.
VERTEX_ENV = {
    "project": "GEO_ASSETS_VERTEX_PROJECT",  # default: GOOGLE_CLOUD_PROJECT
    "region": "GEO_ASSETS_VERTEX_REGION",
    "image": "GEO_ASSETS_VERTEX_IMAGE",
    "machine_type": "GEO_ASSETS_VERTEX_MACHINE_TYPE",
    "accelerator_type": "GEO_ASSETS_VERTEX_ACCELERATOR_TYPE",
    "accelerator_count": "GEO_ASSETS_VERTEX_ACCELERATOR_COUNT",
    "service_account": "GEO_ASSETS_VERTEX_SERVICE_ACCOUNT",
    "api_endpoint": "GEO_ASSETS_VERTEX_ENDPOINT",
    "pipes_bucket": "GEO_ASSETS_PIPES_BUCKET",
    "max_run_hours": "GEO_ASSETS_TRAINING_MAX_HOURS",
}
ECS_ENV = {
    "region": "AWS_REGION",  # default: AWS_DEFAULT_REGION
    "cluster": "GEO_ASSETS_ECS_CLUSTER",
    "task_definition": "GEO_ASSETS_ECS_TASK_DEFINITION",
    "container": "GEO_ASSETS_ECS_CONTAINER",
    "launch_type": "GEO_ASSETS_ECS_LAUNCH_TYPE",
    "subnets": "GEO_ASSETS_ECS_SUBNETS",  # comma-separated
    "security_groups": "GEO_ASSETS_ECS_SECURITY_GROUPS",  # comma-separated
    "cpu": "GEO_ASSETS_ECS_CPU",
    "memory": "GEO_ASSETS_ECS_MEMORY",
    "gpus": "GEO_ASSETS_ECS_GPUS",
    "pipes_bucket": "GEO_ASSETS_PIPES_BUCKET",
    "max_run_hours": "GEO_ASSETS_TRAINING_MAX_HOURS",
}
LISTS = {"subnets", "security_groups"}


_Remote = TypeVar("_Remote", bound="_RemoteTraining")


def _from_env(cls: type[_Remote], names: dict[str, str], environ, defaults: dict | None = None) -> _Remote:
    """The resource from its variables; an error names each variable that is missing or refused."""
    from pydantic import ValidationError

    values = {**(defaults or {})}
    for field, var in names.items():
        setting = by_name(var) if var.startswith("GEO_ASSETS_") else None  # else AWS_REGION, the SDK's own
        raw = setting.raw(environ) if setting else (environ.get(var) or "").strip()
        if raw:  # checked below by the resource, naming the variable
            values[field] = setting.parse(raw) if setting and field in LISTS else raw
    try:
        return cls(**values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = str(error["loc"][0]) if error["loc"] else ""
            named = names.get(loc)
            missing = (
                error["type"] == "missing" or error.get("input", "") is None
            )  # dagster passes None for unset fields
            what = "is required" if missing else error["msg"].removeprefix("Value error, ")
            if not named:  # a rule across settings: name them by their variables
                for name, env in names.items():
                    what = re.sub(rf"\b{name}\b", env, what)
            problems.append(f"{named}: {what}" if named else what)
        raise ValueError(f"{TRAINING_ENV}={cls.KIND}: " + "; ".join(problems)) from None


def vertex_from_env(environ) -> VertexTraining:
    project = (environ.get("GOOGLE_CLOUD_PROJECT") or "").strip()
    return _from_env(VertexTraining, VERTEX_ENV, environ, {"project": project} if project else None)


def ecs_from_env(environ) -> EcsTraining:
    region = (environ.get("AWS_DEFAULT_REGION") or "").strip()
    return _from_env(EcsTraining, ECS_ENV, environ, {"region": region} if region else None)
