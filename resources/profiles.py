"""Profiles: one dict of resources per deployment target, chosen by one environment variable.

    GEO_ASSETS_PROFILE=local (default)  SQLite instance, files under the Dagster home, a thread pool
    GEO_ASSETS_PROFILE=aws              assets in S3; credentials from the AWS standard chain
    GEO_ASSETS_PROFILE=gcp              assets in GCS; credentials from Application Default Credentials

and, for each profile, where a run's steps may execute (GEO_ASSETS_RUNTIME, geo_assets/executors.py):
`process` everywhere (the default), `k8s` on gcp (GKE) and aws (EKS), `ecs` on aws.

Tile work inside a step runs on the local thread pool on every profile unless GEO_ASSETS_COMPUTE=dask
(then on a Dask cluster: resources/dask_compute.py). This module is the only place that knows which
cloud and which compute are in use.
"""

import os
from pathlib import Path

from geo_assets.geo.store import local_root
from resources.arrivals import arrivals_from_env
from resources.compute import MAX_TILES_PER_BATCH, LocalPoolCompute
from resources.dask_compute import dask_compute_from_env, env_number
from resources.gate import gate_from_env
from resources.imagery import ImageryResource
from resources.storage import ManifestIOManager, StorageResource
from resources.training import TRAINING_ENV, InProcessTraining, TrainingResource, ecs_from_env, vertex_from_env

PROFILE_ENV = "GEO_ASSETS_PROFILE"
PROFILES = ("local", "aws", "gcp")
RUNTIME_ENV = "GEO_ASSETS_RUNTIME"
# Steps in pods or tasks of their own share nothing but the store, so those runtimes need a bucket.
RUNTIMES = {"local": ("process",), "gcp": ("process", "k8s"), "aws": ("process", "ecs", "k8s")}
COMPUTE_ENV = "GEO_ASSETS_COMPUTE"
COMPUTES = ("threads", "dask")


def get_profile() -> str:
    profile = os.environ.get(PROFILE_ENV, "local")
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {PROFILE_ENV}={profile!r}; accepted: {', '.join(PROFILES)}")
    return profile


def get_runtime(profile: str | None = None) -> str:
    """Where steps execute on this profile: GEO_ASSETS_RUNTIME, else `process` (no cluster needed)."""
    profile = profile or get_profile()
    runtime = os.environ.get(RUNTIME_ENV) or "process"
    if runtime not in RUNTIMES[profile]:
        raise ValueError(
            f"{RUNTIME_ENV}={runtime!r} is not available on profile {profile}; accepted: {', '.join(RUNTIMES[profile])}"
        )
    return runtime


def dagster_home() -> Path:
    return Path(os.environ.get("DAGSTER_HOME") or ".dagster_home").resolve()


def local_storage_root() -> str:
    """GEO_ASSETS_STORAGE_ROOT, else `storage/` inside the Dagster home, so one folder holds a laptop's state."""
    return os.environ.get("GEO_ASSETS_STORAGE_ROOT") or local_root(dagster_home() / "storage")


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def _cloud_root(profile: str, scheme: str) -> str:
    root = _env("GEO_ASSETS_STORAGE_ROOT")
    if not root or not root.startswith(scheme):
        raise ValueError(f"profile {profile} needs GEO_ASSETS_STORAGE_ROOT={scheme}bucket/prefix (got {root!r})")
    return root


def _imagery() -> ImageryResource:
    """STAC APIs and source buckets: the public ones unless overridden (e.g. by local stand-ins)."""
    overrides = {
        "earth_search_url": _env("GEO_ASSETS_EARTH_SEARCH_URL"),
        "planetary_computer_url": _env("GEO_ASSETS_PLANETARY_COMPUTER_URL"),
        "landsat_url": _env("GEO_ASSETS_LANDSAT_URL"),
        "s3_endpoint_url": _env("GEO_ASSETS_SOURCE_S3_ENDPOINT"),
    }
    if _env("GEO_ASSETS_SOURCE_S3_ENDPOINT"):  # a stand-in S3 server checks signatures with the usual keys
        overrides.update(s3_no_sign=False, s3_region=_env("AWS_REGION") or "us-east-1")
    return ImageryResource(**{k: v for k, v in overrides.items() if v is not None})


def compute_from_env() -> LocalPoolCompute:
    """The `compute` resource: the thread pool (default), or Dask with GEO_ASSETS_COMPUTE=dask."""
    kind = os.environ.get(COMPUTE_ENV) or "threads"
    if kind not in COMPUTES:
        raise ValueError(f"unknown compute {COMPUTE_ENV}={kind!r}; accepted: {', '.join(COMPUTES)}")
    workers = env_number("GEO_ASSETS_WORKERS", 0, int, 0, 1024)
    per_batch = env_number("GEO_ASSETS_TILES_PER_BATCH", 0, int, 0, MAX_TILES_PER_BATCH)
    if kind == "dask":
        return dask_compute_from_env(workers, per_batch)
    return LocalPoolCompute(workers=workers, tiles_per_batch=per_batch)


TRAININGS = {"in-process": lambda environ: InProcessTraining(), "vertex": vertex_from_env, "ecs": ecs_from_env}


def _training(root: str) -> TrainingResource:
    """Where trained_model trains: in the step's process (default), a Vertex AI job or an ECS task.
    A remote job reads and writes the store itself, so it needs the store of its cloud."""
    kind = os.environ.get(TRAINING_ENV) or "in-process"
    if kind not in TRAININGS:
        raise ValueError(f"unknown {TRAINING_ENV}={kind!r}; accepted: {', '.join(TRAININGS)}")
    training = TRAININGS[kind](os.environ)
    if kind != "in-process":
        training.check_root(root)
    return training


def _resources(storage: StorageResource) -> dict:
    return {
        "storage": storage,
        "compute": compute_from_env(),
        "io_manager": ManifestIOManager(storage=storage),
        "imagery": _imagery(),
        "gate": gate_from_env(),
        "arrivals": arrivals_from_env(),
        "training": _training(storage.root),
    }


def _local() -> dict:
    return _resources(StorageResource(root=local_storage_root()))


def _aws() -> dict:
    # Keys are not passed: s3fs/boto3 and GDAL each read the standard chain (env, config files, roles).
    return _resources(
        StorageResource(
            root=_cloud_root("aws", "s3://"),
            endpoint_url=_env("AWS_ENDPOINT_URL_S3") or _env("AWS_ENDPOINT_URL"),
            region=_env("AWS_REGION") or _env("AWS_DEFAULT_REGION"),
        )
    )


def _gcp() -> dict:
    emulator = _env("STORAGE_EMULATOR_HOST")  # the same variable google-cloud-storage honours
    return _resources(
        StorageResource(
            root=_cloud_root("gcp", "gs://"),
            endpoint_url=emulator,
            anonymous=bool(emulator),
            project=_env("GOOGLE_CLOUD_PROJECT"),
        )
    )


def resource_defs(profile: str | None = None) -> dict:
    return {"local": _local, "aws": _aws, "gcp": _gcp}[profile or get_profile()]()
