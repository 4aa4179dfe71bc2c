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
from geo_assets.settings import by_name
from resources.arrivals import arrivals_from_env
from resources.compute import LocalPoolCompute, TileCompute
from resources.dask_compute import dask_compute_from_env
from resources.gate import gate_from_env
from resources.imagery import ImageryResource
from resources.storage import ManifestIOManager, StorageResource
from resources.training import TRAINING, InProcessTraining, TrainingResource, ecs_from_env, vertex_from_env

PROFILE = by_name("GEO_ASSETS_PROFILE")
RUNTIME = by_name("GEO_ASSETS_RUNTIME")
COMPUTE = by_name("GEO_ASSETS_COMPUTE")
STORAGE_ROOT = by_name("GEO_ASSETS_STORAGE_ROOT")
# Steps in pods or tasks of their own share nothing but the store, so those runtimes need a bucket.
RUNTIMES = {"local": ("process",), "gcp": ("process", "k8s"), "aws": ("process", "ecs", "k8s")}


def get_profile() -> str:
    return PROFILE.get()


def get_runtime(profile: str | None = None) -> str:
    """Where steps execute on this profile: GEO_ASSETS_RUNTIME, else `process` (no cluster needed)."""
    profile = profile or get_profile()
    runtime = RUNTIME.raw() or RUNTIME.default  # refused below unless this profile offers it
    if runtime not in RUNTIMES[profile]:
        raise ValueError(
            f"{RUNTIME.name}={runtime!r} is not available on profile {profile}; accepted: {', '.join(RUNTIMES[profile])}"
        )
    return runtime


def dagster_home() -> Path:
    return Path(os.environ.get("DAGSTER_HOME") or ".dagster_home").resolve()


def local_storage_root() -> str:
    """GEO_ASSETS_STORAGE_ROOT, else `storage/` inside the Dagster home, so one folder holds a laptop's state."""
    return STORAGE_ROOT.get() or local_root(dagster_home() / "storage")


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def _cloud_root(profile: str, scheme: str) -> str:
    root = STORAGE_ROOT.get()
    if not root or not root.startswith(scheme):
        raise ValueError(f"profile {profile} needs {STORAGE_ROOT.name}={scheme}bucket/prefix (got {root!r})")
    return root


def _imagery() -> ImageryResource:
    """STAC APIs and source buckets: the public ones unless overridden (e.g. by local stand-ins)."""
    overrides = {
        "earth_search_url": by_name("GEO_ASSETS_EARTH_SEARCH_URL").get(),
        "planetary_computer_url": by_name("GEO_ASSETS_PLANETARY_COMPUTER_URL").get(),
        "landsat_url": by_name("GEO_ASSETS_LANDSAT_URL").get(),
        "s3_endpoint_url": by_name("GEO_ASSETS_SOURCE_S3_ENDPOINT").get(),
    }
    if overrides["s3_endpoint_url"]:  # a stand-in S3 server checks signatures with the usual keys
        overrides.update(s3_no_sign=False, s3_region=_env("AWS_REGION") or "us-east-1")
    return ImageryResource(**{k: v for k, v in overrides.items() if v is not None})


def compute_from_env() -> TileCompute:
    """The `compute` resource: the thread pool (default), or Dask with GEO_ASSETS_COMPUTE=dask."""
    kind = COMPUTE.get()
    workers = by_name("GEO_ASSETS_WORKERS").get()
    per_batch = by_name("GEO_ASSETS_TILES_PER_BATCH").get()
    if kind == "dask":
        return dask_compute_from_env(workers, per_batch)
    return LocalPoolCompute(workers=workers, tiles_per_batch=per_batch)


REMOTE_TRAININGS = {"vertex": vertex_from_env, "ecs": ecs_from_env}  # jobs that read and write the store themselves
TRAININGS = {"in-process": lambda environ: InProcessTraining(), **REMOTE_TRAININGS}


def _training(root: str) -> TrainingResource:
    """Where trained_model trains: in the step's process (default), a Vertex AI job or an ECS task.
    A remote job reads and writes the store itself, so it needs the store of its cloud."""
    kind = TRAINING.get()
    if kind in REMOTE_TRAININGS:
        remote = REMOTE_TRAININGS[kind](os.environ)
        remote.check_root(root)
        return remote
    return TRAININGS[kind](os.environ)


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
