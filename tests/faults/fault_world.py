"""What the fault tests share: a region of many small tiles, the S3 storage settings, one
`imagery_tiles` step run through dagster.materialize as tests/cloud runs steps on S3, a `predictions`
step in a process of its own on a tiny model, and the comparison of two outputs object by object."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass

import dagster as dg

from geo_assets.assets.imagery import imagery_tiles
from geo_assets.cli.commands import register
from geo_assets.geo.regions import Region, load_catalogue, save_catalogue
from geo_assets.geo.store import Store
from geo_assets.partitions import region_date_key, region_date_partitions
from resources.compute import LocalPoolCompute
from resources.gate import ModelGate
from resources.imagery import ImageryResource
from resources.storage import ManifestIOManager, StorageResource
from tests.tiny_world import DATE as TINY_DATE
from tests.tiny_world import MODEL, TINY_HOLDOUT, add_tiny_regions, resources_for, train_tiny

BUCKET = "geo-assets-faults"
ACCESS_KEY = "geo-assets-faults-key"
SECRET = "sEcReT-" + secrets.token_hex(12)
REGION_S3 = "us-east-1"
TILE = 64  # px at 10 m: 8 x 8 = 64 tiles, two objects each (imagery and cloud mask)
FIELD = Region(
    "fault-field", (400000.0, 5120000.0, 405120.0, 5125120.0), "EPSG:32631", "synthetic", "synthetic", ("2024-06-01",)
)
DATE = "2024-06-01"
PARTITION = region_date_key(FIELD.name, DATE)
RETRIED = re.compile(r"requests retried in this step \(store and raster reads\): (\d+) \(")


def storage(endpoint_url: str, prefix: str) -> StorageResource:
    return StorageResource(
        root=f"s3://{BUCKET}/{prefix}",
        endpoint_url=endpoint_url,
        region=REGION_S3,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET,
    )


def prepare(store: Store, instance: dg.DagsterInstance) -> None:
    """The region in the store's catalogue and among the instance's partitions."""
    catalogue = load_catalogue(store)
    catalogue.add(FIELD)
    save_catalogue(store, catalogue)
    register(instance, regions=[FIELD.name])


@dataclass
class StepRun:
    result: dg.ExecuteInJobResult
    seconds: float
    messages: list[str]  # the run's log, in order

    @property
    def retried(self) -> int:
        """Retries the step's log reports (the IO manager's one line per output)."""
        return sum(int(m.group(1)) for m in map(RETRIED.search, self.messages) if m)

    def failure(self) -> str:
        return failure(self.result)


def cut_imagery(storage: StorageResource, instance: dg.DagsterInstance) -> StepRun:
    """One imagery_tiles step of FIELD on `storage`; a failure is returned, not raised."""
    resources = {
        "storage": storage,
        "compute": LocalPoolCompute(workers=4),
        "io_manager": ManifestIOManager(storage=storage),
        "imagery": ImageryResource(),
        "gate": ModelGate(min_miou=0.0),
    }
    begin = time.monotonic()
    result = dg.materialize(
        [imagery_tiles],
        partition_key=PARTITION,
        resources=resources,
        instance=instance,
        run_config={"ops": {"imagery_tiles": {"config": {"tile_size": TILE}}}},
        raise_on_error=False,
    )
    seconds = time.monotonic() - begin
    return StepRun(result, seconds, [r.message or "" for r in instance.all_logs(result.run_id)])


def outputs(store: Store) -> dict[str, bytes]:
    """Every object the step wrote (tiles, manifest), with its bytes."""
    return {k: store.read_bytes(k) for top in ("imagery", "manifests") for k in store.list(top)}


def _imagery_job(store: StorageResource) -> dg.JobDefinition:
    resources = {
        "storage": store,
        "compute": LocalPoolCompute(workers=4, tiles_per_batch=4),
        "io_manager": ManifestIOManager(storage=store),
        "imagery": ImageryResource(),
        "gate": ModelGate(min_miou=0.0),
    }
    job = dg.define_asset_job("cut", selection=["imagery_tiles"], executor_def=dg.in_process_executor)
    return dg.Definitions(assets=[imagery_tiles], resources=resources, jobs=[job]).resolve_job_def("cut")


def _env_store(api: str) -> StorageResource:
    """The store at GEO_ASSETS_FAULTS_ROOT of the server at GEO_ASSETS_FAULTS_ENDPOINT, its S3 secret in
    GEO_ASSETS_FAULTS_SECRET (SECRET of the test's process: a step process imports this module anew), all
    read when each run starts (dg.EnvVar), since Dagster keeps a reconstructed job for the process."""
    root, endpoint = dg.EnvVar("GEO_ASSETS_FAULTS_ROOT"), dg.EnvVar("GEO_ASSETS_FAULTS_ENDPOINT")
    if api == "gcs":
        return StorageResource(root=root, endpoint_url=endpoint, project="test", anonymous=True)
    secret = dg.EnvVar("GEO_ASSETS_FAULTS_SECRET")
    return StorageResource(
        root=root, endpoint_url=endpoint, region=REGION_S3, access_key_id=ACCESS_KEY, secret_access_key=secret
    )


def _prediction_job(store: StorageResource) -> dg.JobDefinition:
    """predictions alone, its step in a process of its own: GDAL reads tiles holding the GIL, so a fault proxy
    in the test's process would otherwise never get to answer them."""
    from geo_assets.assets.predictions import predictions

    resources = resources_for(store, LocalPoolCompute(workers=2))
    job = dg.define_asset_job("predict", selection=["predictions"], executor_def=dg.multiprocess_executor)
    return dg.Definitions(assets=[imagery_tiles, predictions], resources=resources, jobs=[job]).resolve_job_def(
        "predict"
    )


# Reconstructable jobs (re-execution from failure needs them): imagery_tiles alone, in process, in batches of 4
# tiles (a re-execution then has many to reuse), and predictions alone, each on the store the environment names.


def local_imagery_job() -> dg.JobDefinition:
    """On the file:// root GEO_ASSETS_FAULTS_ROOT."""
    return _imagery_job(StorageResource(root=dg.EnvVar("GEO_ASSETS_FAULTS_ROOT")))


def s3_imagery_job() -> dg.JobDefinition:
    return _imagery_job(_env_store("s3"))


def gcs_imagery_job() -> dg.JobDefinition:
    return _imagery_job(_env_store("gcs"))


def s3_prediction_job() -> dg.JobDefinition:
    return _prediction_job(_env_store("s3"))


def gcs_prediction_job() -> dg.JobDefinition:
    return _prediction_job(_env_store("gcs"))


IMAGERY_CONFIG = {"ops": {"imagery_tiles": {"config": {"tile_size": TILE}}}}
PREDICTED_TILE = 32  # px: 16 tiles of tiny_world's holdout region
PREDICTED = region_date_key(TINY_HOLDOUT.name, TINY_DATE)


def prepare_predictions(direct: StorageResource, instance: dg.DagsterInstance) -> dict:
    """tiny_world's regions in the store, its model trained and the holdout's imagery cut there (around
    any proxy): the run config of a `predictions` step of PREDICTED."""
    add_tiny_regions(direct.store(), instance)
    version = train_tiny(instance, direct)
    cut = dg.materialize(
        [imagery_tiles],
        partition_key=PREDICTED,
        instance=instance,
        resources=resources_for(direct, LocalPoolCompute(workers=2)),
        run_config={"ops": {"imagery_tiles": {"config": {"tile_size": PREDICTED_TILE}}}},
        raise_on_error=False,
    )
    assert cut.success, failure(cut)
    return {"ops": {"predictions": {"config": {"model": MODEL, "version": version, "tile_size": PREDICTED_TILE}}}}


def predict(
    instance: dg.DagsterInstance, run_config: dict, after: str | None = None, api: str = "s3"
) -> dg.ExecutionResult:
    """predictions[PREDICTED] in a step process of its own, on the `api` store the environment names;
    `after`: re-execute that failed run from its failure instead."""
    from tests.faults import fault_world  # by a name the step's process imports from the checkout

    job = dg.reconstructable(getattr(fault_world, f"{api}_prediction_job"))
    tags = region_date_partitions.get_tags_for_partition_key(PREDICTED)
    if after:
        return dg.execute_job(
            job, instance, tags=tags, reexecution_options=dg.ReexecutionOptions.from_failure(after, instance)
        )
    return dg.execute_job(job, instance, run_config=run_config, tags=tags)


def step_errors(instance: dg.DagsterInstance, run_id: str) -> str:
    """The failed step's error and its causes, from the run's event log (the step ran in another process)."""
    lines = []
    for event in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        error = event.dagster_event.step_failure_data.error
        while error is not None:
            lines.append(error.message.strip())
            error = error.cause
    return "\n".join(lines)


def failure(result) -> str:
    """The step's error, with the errors that caused it ('' when it succeeded): Dagster's own message
    wraps the one the step raised."""
    lines = []
    for event in result.all_events:
        error = event.step_failure_data.error if event.is_step_failure else None
        while error is not None:
            lines.append(error.message.strip())
            error = error.cause
    return "\n".join(lines)
