"""Every GEO_ASSETS_* deployment setting, declared once: its name, type, default, bounds and doc.

Settings are environment variables read where they are used (so a daemon, a run and the CLI agree on
the value in force), through `Setting.get()`: an empty value means the default, and a value
of the wrong type or outside its bounds fails with one message naming the variable and what it
accepts. Settings whose values are checked further where they are used (Dask, remote training, arrivals,
the map server) are read with `Setting.raw()` or `get()` and checked there, naming the variable too.

The settings tables of the docs are made from these declarations, one table per group:

    python -m geo_assets.settings --markdown [GROUP]    print them
    python -m devtools.settings_docs                    write them into docs/ between their markers

This module imports nothing of the package: pure code and resources read it alike.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["GROUPS", "SETTINGS", "Setting", "SettingError", "by_name", "markdown"]

TRUE, FALSE = ("1", "true", "yes"), ("0", "false", "no")


class SettingError(ValueError):
    """A setting's value is not of its type or lies outside its bounds; the message names the variable."""


@dataclass(frozen=True)
class Setting:
    name: str
    group: str  # the docs' table it is listed in (GROUPS)
    doc: str  # one line: what it sets
    type: type = str  # str, int, float, bool or list (comma-separated strings)
    default: Any = None  # None: unset (the code says what that means, the doc says it too)
    low: float | None = None  # bounds of a number, both included
    high: float | None = None
    choices: tuple[str, ...] = ()  # the accepted values of a str setting
    shown_default: str | None = None  # the default as the docs say it, where the value alone says too little

    def raw(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The value as set, stripped; None when unset or empty."""
        value = (os.environ if environ is None else environ).get(self.name, "").strip()
        return value or None

    def get(self, environ: Mapping[str, str] | None = None) -> Any:
        """The typed value, or the default when unset; a value of the wrong type or out of bounds is refused."""
        raw = self.raw(environ)
        if raw is None:
            return list(self.default) if isinstance(self.default, list) else self.default  # a copy to change
        return self.parse(raw)

    def parse(self, raw: str) -> Any:
        if self.type is bool:
            if raw.lower() not in TRUE + FALSE:
                raise SettingError(f"{self.name}={raw!r}: must be true or false")
            return raw.lower() in TRUE
        if self.type is list:
            return [part.strip() for part in raw.split(",") if part.strip()]
        if self.type in (int, float):
            return self._number(raw)
        if self.choices and raw not in self.choices:
            raise SettingError(f"unknown {self.name}={raw!r}; accepted: {', '.join(self.choices)}")
        return raw

    def _number(self, raw: str) -> int | float:
        try:
            value = self.type(raw)  # int("1.5"), int("1e3") and int("inf") fail: whole numbers are written whole
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and self.low <= value <= self.high):
            raise SettingError(f"{self.name}={raw!r}: must be {self.accepted()}")
        return value

    def accepted(self) -> str:
        """What the setting accepts, in words."""
        if self.type is int:
            return f"a whole number from {self.low:,.0f} to {self.high:,.0f}"
        if self.type is float:
            return f"a number from {self.low:,g} to {self.high:,g}"
        if self.type is bool:
            return "true or false"
        if self.type is list:
            return "comma-separated"
        return ", ".join(f"`{c}`" for c in self.choices) if self.choices else "text"

    def default_text(self) -> str:
        if self.shown_default is not None:
            return self.shown_default
        if self.default is None:
            return "(none)"
        if isinstance(self.default, bool):
            return str(self.default).lower()
        return f"`{self.default:g}`" if isinstance(self.default, float) else f"`{self.default}`"


GROUPS = {  # group -> what its table lists
    "profile": "profile, storage, imagery sources, gate and inference",
    "map": "the map server",
    "runtime": "where steps run",
    "compute": "where tile work runs: threads or Dask",
    "training": "where training runs: in-process, Vertex AI or ECS",
    "arrivals": "the scene_arrivals sensor",
    "limits": "deployment limits",
}

_LIMIT = 10_000_000  # no limit goes beyond this: it would only defer the failure to memory
_DASK_WORKERS = 1024

SETTINGS: tuple[Setting, ...] = (
    # profile: resources/profiles.py
    Setting("GEO_ASSETS_PROFILE", "profile", "the dict of resources: storage and credentials", default="local", choices=("local", "aws", "gcp")),
    Setting("GEO_ASSETS_STORAGE_ROOT", "profile", "root URI of every output; `s3://bucket/prefix` on aws, `gs://bucket/prefix` on gcp (required there)", shown_default="`file://$DAGSTER_HOME/storage` (local)"),
    Setting("GEO_ASSETS_WORKERS", "profile", "threads for tile work inside a step (0: one per core)", int, 0, 0, 1024),
    Setting("GEO_ASSETS_MIN_MIOU", "profile", "the quality gate: held-out mIoU a version needs to serve", float, 0.9, 0, 1),
    Setting("GEO_ASSETS_INFERENCE_RUNTIME", "profile", "inference runtime of `predictions` when its config names none (see [Prediction speed](../architecture/prediction.md#prediction-speed))", default="auto", choices=("auto", "torch", "onnxruntime")),
    Setting("GEO_ASSETS_CACHE_DIR", "profile", "where measured inference layouts are cached (`layouts.json`)", shown_default="`~/.cache/geo-assets`"),
    Setting("GEO_ASSETS_EARTH_SEARCH_URL", "profile", "the STAC API of the earth-search source", shown_default="the public one"),
    Setting("GEO_ASSETS_PLANETARY_COMPUTER_URL", "profile", "the STAC API of the planetary-computer source", shown_default="the public one"),
    Setting("GEO_ASSETS_LANDSAT_URL", "profile", "the STAC API of the landsat-c2 source", shown_default="the public one"),
    Setting("GEO_ASSETS_SOURCE_S3_ENDPOINT", "profile", "an S3-compatible endpoint for the imagery providers' buckets, read with signed requests", shown_default="AWS, unsigned"),
    # map: geo_assets/map/
    Setting("GEO_ASSETS_MAP_URL", "map", "the map server's public address, that materialisations' **map** links, `geo-assets map` and the map's TileJSON point to (the Helm values set `https://MAP_HOST`)", default="http://127.0.0.1:3100"),
    Setting("GEO_ASSETS_MAP_RATE", "map", "requests per second one client may make to the map server, a burst of twice that", float, 100.0, 1, 100_000),
    Setting("GEO_ASSETS_MAP_TRUSTED_PROXIES", "map", "the sign-in proxy's addresses or networks, comma-separated (`*`: every peer, where the network admits only the proxy): from them, the `X-Forwarded-User` that oauth2-proxy sets names the client of the map's rate; unset: the header is ignored and a client is its address"),
    Setting("GEO_ASSETS_MAP_BASEMAP_URL", "map", "an XYZ template (`http(s)://.../{z}/{x}/{y}.png`) of a base map under the map's imagery"),
    # runtime: resources/profiles.py, geo_assets/executors.py, geo_assets/assets/placement.py
    Setting("GEO_ASSETS_RUNTIME", "runtime", "where each step runs: `process` on every profile, `k8s` on gcp and aws, `ecs` on aws (above)", default="process", choices=("process", "k8s", "ecs")),
    Setting("GEO_ASSETS_GPU_IMAGE", "runtime", "k8s: the image of GPU steps' pods (the CUDA image)", shown_default="the run's image"),
    Setting("GEO_ASSETS_ECS_GPU_TASK_DEFINITION", "runtime", "ecs: the task definition of GPU steps (`deploy/ecs/gpu-step.json`), started with launch type EC2 and one GPU on the cluster's GPU instances; unset: GPU steps run on Fargate, without a GPU"),
    # compute: resources/profiles.py, resources/dask_compute.py
    Setting("GEO_ASSETS_COMPUTE", "compute", "where tile work runs", default="threads", choices=("threads", "dask")),
    Setting("GEO_ASSETS_TILES_PER_BATCH", "compute", "tiles per batch (0: sized from measurements, see below)", int, 0, 0, 100_000),
    Setting("GEO_ASSETS_DASK_ADDRESS", "compute", "an existing scheduler, e.g. `tcp://dask-scheduler:8786`; else a cluster is created for each step that fans out, and closed after it (also when it fails)"),
    Setting("GEO_ASSETS_DASK_CLUSTER", "compute", "the kind of that cluster: `local` (a `LocalCluster` of worker processes), `kubernetes` (dask-kubernetes `KubeCluster`, GKE or EKS), `gcp` (dask-cloudprovider `GCPCluster`), `fargate` (`FargateCluster`), `ec2` (`EC2Cluster`)", shown_default="`local`", choices=("local", "kubernetes", "gcp", "fargate", "ec2")),
    Setting("GEO_ASSETS_DASK_WORKERS", "compute", "workers of a fixed-size cluster", int, 2, 1, _DASK_WORKERS),
    Setting("GEO_ASSETS_DASK_MIN_WORKERS", "compute", "adaptive scaling from this many workers (the cluster starts here)", int, 0, 0, _DASK_WORKERS),
    Setting("GEO_ASSETS_DASK_MAX_WORKERS", "compute", "adaptive scaling up to this many workers (> 0 turns it on)", int, 0, 0, _DASK_WORKERS),
    Setting("GEO_ASSETS_DASK_THREADS", "compute", "threads per worker (1: parallelism by processes, one torch intra-op thread each)", int, 1, 1, 256),
    Setting("GEO_ASSETS_DASK_IMAGE", "compute", "the workers' image for the cloud kinds (required there): the code location's image, so workers run the same code"),
    Setting("GEO_ASSETS_DASK_CLUSTER_OPTIONS", "compute", 'a JSON object of further arguments of the cluster class, e.g. `{"projectid": "P", "zone": "europe-west1-b", "machine_type": "n2-standard-8"}` (gcp), `{"region_name": "eu-west-1", "worker_mem": 8192}` (fargate), `{"region": "eu-west-1", "instance_type": "m6i.2xlarge"}` (ec2), `{"namespace": "dask"}` (kubernetes); the settings above may not be repeated here'),
    Setting("GEO_ASSETS_DASK_CONNECT_TIMEOUT", "compute", "seconds to reach the scheduler", float, 10.0, 0.1, 600),
    Setting("GEO_ASSETS_DASK_WORKER_TIMEOUT", "compute", "seconds a step waits while the cluster has no worker (a cloud node starting)", float, 300.0, 1, 3600),
    # training: resources/training.py (values checked by the training resource, naming the variable)
    Setting("GEO_ASSETS_TRAINING", "training", "where `trained_model` trains", default="in-process", choices=("in-process", "vertex", "ecs")),
    Setting("GEO_ASSETS_PIPES_BUCKET", "training", "the bucket for Pipes context and messages (required for `vertex`, `ecs`; a GCS or S3 bucket name)"),
    Setting("GEO_ASSETS_TRAINING_MAX_HOURS", "training", "a job's time limit in hours: Vertex's `scheduling.timeout`, the ECS waiter's limit", float, 24.0, 0.01, 168),
    Setting("GEO_ASSETS_VERTEX_PROJECT", "training", "the project of the Vertex AI jobs", shown_default="`GOOGLE_CLOUD_PROJECT`"),
    Setting("GEO_ASSETS_VERTEX_REGION", "training", "a Vertex AI region", default="us-central1"),
    Setting("GEO_ASSETS_VERTEX_IMAGE", "training", "the code location's image in Artifact Registry (required for `vertex`; the GPU image for accelerators)"),
    Setting("GEO_ASSETS_VERTEX_MACHINE_TYPE", "training", "the job's machine, e.g. `g2-standard-12`, `a2-highgpu-1g`", default="n1-standard-8"),
    Setting("GEO_ASSETS_VERTEX_ACCELERATOR_TYPE", "training", "e.g. `NVIDIA_L4`; needs an accelerator count"),
    Setting("GEO_ASSETS_VERTEX_ACCELERATOR_COUNT", "training", "accelerators of the job (0: none; a count needs a type)", int, 0, 0, 8),
    Setting("GEO_ASSETS_VERTEX_SERVICE_ACCOUNT", "training", "the service account the job runs as", shown_default="Vertex's default service agent"),
    Setting("GEO_ASSETS_VERTEX_ENDPOINT", "training", "the Vertex AI API endpoint", shown_default="`https://REGION-aiplatform.googleapis.com`"),
    Setting("GEO_ASSETS_ECS_CLUSTER", "training", "the cluster the training task runs on (required for `ecs`)"),
    Setting("GEO_ASSETS_ECS_TASK_DEFINITION", "training", "the training task definition: family, family:revision or ARN", default="geo-assets-training"),
    Setting("GEO_ASSETS_ECS_CONTAINER", "training", "the task definition's container that trains", default="training"),
    Setting("GEO_ASSETS_ECS_LAUNCH_TYPE", "training", "the training task's launch type (`EC2` for GPUs)", default="FARGATE", choices=("FARGATE", "EC2")),
    Setting("GEO_ASSETS_ECS_SUBNETS", "training", "awsvpc subnets (Fargate needs one)", list),
    Setting("GEO_ASSETS_ECS_SECURITY_GROUPS", "training", "awsvpc security groups, at most 5", list),
    Setting("GEO_ASSETS_ECS_CPU", "training", "the training task's CPU units (1024 = 1 vCPU; Fargate takes 256 to 16384 in its steps)", int, 4096, 128, 196_608),
    Setting("GEO_ASSETS_ECS_MEMORY", "training", "the training task's memory in MiB", int, 16384, 512, 1_048_576),
    Setting("GEO_ASSETS_ECS_GPUS", "training", "GPUs for the training container (`EC2` launch type only)", int, 0, 0, 8),
    # arrivals: resources/arrivals.py, geo_assets/triggers/arrivals.py
    Setting("GEO_ASSETS_ARRIVALS_LAYOUT", "arrivals", "partition folders: literal folders, then `{region}` and `{date}` in either order (`landing/{date}/{region}` lists one root for all regions)", default="incoming/{region}/{date}"),
    Setting("GEO_ASSETS_ARRIVALS_INTERVAL", "arrivals", "seconds between ticks (the daemon checks sensors every 5 s at most)", int, 30, 1, 86_400),
    Setting("GEO_ASSETS_ARRIVALS_LOOKBACK_DAYS", "arrivals", "recent dates, found at the next tick", int, 7, 0, 366),
    Setting("GEO_ASSETS_ARRIVALS_SETTLE_SECONDS", "arrivals", "age before a version is taken; longer than the slowest upload plus clock skew", float, 300.0, 0, 86_400),
    Setting("GEO_ASSETS_ARRIVALS_SWEEP_SECONDS", "arrivals", "listing time per tick for older dates, one page of 1000 keys at least", float, 0.25, 0, 30),
    Setting("GEO_ASSETS_ARRIVALS_MAX_REQUESTS", "arrivals", "listing requests per tick for recent dates; the pass goes on at the next tick", int, 25, 1, 1000),
    Setting("GEO_ASSETS_ARRIVALS_MAX_ARRIVALS", "arrivals", "item versions per tick; the rest at the next", int, 1000, 1, 10_000),
    Setting("GEO_ASSETS_ARRIVALS_REGISTER_REGIONS", "arrivals", "add unknown regions from their first item's footprint", bool, False),
    Setting("GEO_ASSETS_ARRIVALS_SINCE", "arrivals", "ISO time: watch versions that arrived from then on (earlier objects are not arrivals)", shown_default="the first tick"),
    # limits: geo_assets/limits.py, geo_assets/triggers/schedules.py, geo_assets/cli/graphql.py
    Setting("GEO_ASSETS_MAX_TILES", "limits", "tiles per region x date partition (imagery, labels, predictions)", int, 10_000, 1, _LIMIT),
    Setting("GEO_ASSETS_MAX_BACKFILL_PARTITIONS", "limits", "partitions per `geo-assets backfill`, regions per scheduled tick", int, 400, 1, _LIMIT),
    Setting("GEO_ASSETS_CODE_SERVER_WAIT_S", "limits", "seconds `geo-assets launch`, `backfill` and `train` wait for a code server that does not answer (a restart) before they give up", int, 30, 0, 3600),
    Setting("GEO_ASSETS_LEASE_WAIT_S", "limits", "seconds a step waits for a partition another run is writing", int, 1800, 1, 86_400),
    Setting("GEO_ASSETS_SCHEDULED_REGIONS", "limits", "regions `monthly_predictions` predicts", list, [], shown_default="(none)"),
)  # fmt: skip

_BY_NAME = {s.name: s for s in SETTINGS}
assert len(_BY_NAME) == len(SETTINGS), "a setting is declared twice"
assert {s.group for s in SETTINGS} == set(GROUPS), "every group has settings, every setting a group"


def by_name(name: str) -> Setting:
    """The declared setting, for the module that reads it (`MAX_TILES = by_name("GEO_ASSETS_MAX_TILES")` at
    its top, so an undeclared name fails on import, and the name stays greppable)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"{name} is not a declared setting (geo_assets/settings.py)") from None


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(group: str) -> str:
    """The docs' table of one group: variable, default, accepted values and meaning."""
    if group not in GROUPS:
        raise ValueError(f"unknown settings group {group!r}; accepted: {', '.join(GROUPS)}")
    rows = ["| variable | default | accepts | meaning |", "| --- | --- | --- | --- |"]
    for s in (s for s in SETTINGS if s.group == group):
        rows.append(f"| `{s.name}` | {_cell(s.default_text())} | {_cell(s.accepted())} | {_cell(s.doc)} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "--markdown" or len(args) > 2:
        print("usage: python -m geo_assets.settings --markdown [GROUP]", file=sys.stderr)
        print(f"groups: {', '.join(GROUPS)}", file=sys.stderr)
        return 2
    unknown = [g for g in args[1:] if g not in GROUPS]
    if unknown:
        print(f"unknown settings group {unknown[0]!r}; accepted: {', '.join(GROUPS)}", file=sys.stderr)
        return 2
    for group in args[1:] or list(GROUPS):
        print(markdown(group))
    return 0


if __name__ == "__main__":
    sys.exit(main())
