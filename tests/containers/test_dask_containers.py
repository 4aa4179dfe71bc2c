"""Dask in containers: a scheduler and two workers, each a container of the project's image on the
host network, and the Dask profile pointed at them (GEO_ASSETS_COMPUTE=dask, GEO_ASSETS_DASK_ADDRESS).

Storage is the aws profile's: a bucket on the suite's S3 server (SeaweedFS), which the step in this
process and the workers in their containers both read and write, each with the standard AWS variables,
as workers on cloud machines would. A small model is trained once on the thread pool; then imagery and
predictions of a held-out region run as the Dask tests in tests/dask run them (`dg.materialize` on the
profile's resources), first on the embedded default (the thread pool), then on the containers.
Predictions must be equal pixel for pixel, and the workers' log lines must reach the step's log.
"""

from __future__ import annotations

import re
import secrets
import uuid
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from image_helpers import container, logs, wait_until
from rasterio.io import MemoryFile
from tiny_world import DATE, MODEL, TINY_HOLDOUT, add_tiny_regions, train_tiny

from devtools.emulators import free_port
from devtools.emulators.s3 import seaweedfs
from geo_assets.assets.imagery import imagery_tiles
from geo_assets.assets.predictions import predictions
from geo_assets.geo.acquisitions import pick_imagery
from geo_assets.partitions import region_date_key
from resources.dask_compute import DaskCompute
from resources.profiles import resource_defs
from resources.storage import StorageResource

ROOT = Path(__file__).resolve().parents[2]
KEY = region_date_key(TINY_HOLDOUT.name, DATE)
BUCKET = "geo-assets-dask"
REGION = "us-east-1"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs"), [BUCKET], "dask-test-key", secrets.token_hex(16)) as server:
        yield server


@pytest.fixture(scope="module")
def aws_env(s3) -> dict[str, str]:
    """The aws profile on a fresh prefix of the bucket: what the step and the workers both get."""
    return {
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL_S3": s3.endpoint_url,
    }


@pytest.fixture(scope="module")
def profile(aws_env):
    root = f"s3://{BUCKET}/dask-{uuid.uuid4().hex[:8]}"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {**aws_env, "GEO_ASSETS_PROFILE": "aws", "GEO_ASSETS_STORAGE_ROOT": root}.items():
            mp.setenv(key, value)
        mp.delenv("GEO_ASSETS_COMPUTE", raising=False)
        yield mp


@pytest.fixture(scope="module")
def storage(profile) -> StorageResource:
    return resource_defs("aws")["storage"]


@pytest.fixture(scope="module")
def instance(storage):
    with dg.instance_for_test() as inst:
        add_tiny_regions(storage.store(), inst)
        yield inst


@pytest.fixture(scope="module")
def trained(instance, storage) -> str:
    """A small model trained on tiny-field on the thread pool, stored in the bucket; its version id."""
    return train_tiny(instance, storage)


def readme_dask(kind: str) -> list[str]:
    """`dask scheduler ...` or `dask worker ...` as deploy/README.md's "Dask in containers" runs them
    (what follows the image name): the flags tested are the flags documented."""
    block = (
        (ROOT / "deploy/README.md")
        .read_text()
        .split("## Dask in containers", 1)[1]
        .split("```sh\n", 1)[1]
        .split("```", 1)[0]
    )
    (line,) = [x for x in block.replace("\\\n", " ").splitlines() if f"dask {kind}" in x]
    words = line.split()
    return words[words.index("dask") :]


@pytest.fixture(scope="module")
def cluster(app_image, aws_env):
    """`dask scheduler` and two `dask worker`s, each a container of the image; yields (scheduler
    address, the workers' addresses as their logs announce them)."""
    from distributed import Client

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler_args, worker_args = readme_dask("scheduler"), readme_dask("worker")
    with container(
        app_image, *[str(port) if a == "8786" else a for a in scheduler_args], what="dask-scheduler"
    ) as scheduler:
        wait_until(lambda: "Scheduler at:" in logs(scheduler), 120, "the scheduler container did not start", scheduler)
        worker = [address if a == "tcp://127.0.0.1:8786" else a for a in worker_args]
        with (
            container(app_image, *worker, env=aws_env, what="dask-worker") as first,
            container(app_image, *worker, env=aws_env, what="dask-worker") as second,
        ):
            with Client(address, timeout=60, set_as_default=False) as client:
                client.wait_for_workers(2, timeout=180)
            announced = set()
            for name in (first, second):
                found = re.findall(r"Start worker at:\s+(tcp://127\.0\.0\.1:\d+)", logs(name))
                assert len(found) == 1, logs(name)
                announced |= set(found)
            yield address, announced


def ops(version: str) -> dict:
    return {
        "imagery_tiles": {"config": {"tile_size": 32}},
        "predictions": {"config": {"model": MODEL, "version": version, "batch_size": 2}},
    }


def pixels(store) -> dict:
    """Every stored pixel of the partition's imagery and predictions, with the manifests' digests."""
    imagery = pick_imagery(store, TINY_HOLDOUT.name, DATE)[1]
    (key,) = [k for k in store.list("manifests/predictions") if f"region={TINY_HOLDOUT.name}/date={DATE}" in k]
    preds = store.read_json(key)
    out = {"digests": ([t["digest"] for t in imagery["tiles"]], [t["digest"] for t in preds["tiles"]])}
    for path in [t["path"] for t in imagery["tiles"] + preds["tiles"]] + [preds["mosaic"]]:
        with MemoryFile(store.read_bytes(path)) as memfile, memfile.open() as src:
            out[path] = src.read()
    return out


def run_predictions(instance, version: str) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        [imagery_tiles, predictions],
        partition_key=KEY,
        instance=instance,
        resources=resource_defs("aws"),
        run_config={"ops": ops(version)},
    )
    assert result.success
    return result


def test_predictions_on_dask_containers_equal_the_embedded_defaults(trained, instance, storage, cluster, profile):
    address, workers = cluster
    reference_run = run_predictions(instance, trained)  # the thread pool in this process
    reference = pixels(storage.store())
    assert len(reference["digests"][1]) == 16

    profile.setenv("GEO_ASSETS_COMPUTE", "dask")
    profile.setenv("GEO_ASSETS_DASK_ADDRESS", address)
    assert isinstance(resource_defs("aws")["compute"], DaskCompute)
    result = run_predictions(instance, trained)
    on_dask = pixels(storage.store())
    assert on_dask.keys() == reference.keys() and on_dask["digests"] == reference["digests"]
    for path in reference:
        if path != "digests":
            np.testing.assert_array_equal(on_dask[path], reference[path], err_msg=path)

    # The batches ran on the containers' workers, and their log lines are in the step's log.
    logs_of = lambda run: [e.user_message for e in instance.all_logs(run.run_id) if e.dagster_event is None]  # noqa: E731
    step_log = logs_of(result)
    done_on = {
        m.rsplit(" done on ", 1)[1].split()[0].rstrip(",;")
        for m in step_log
        if m.startswith("predicted tiles: batch ") and " done on " in m
    }
    assert done_on and done_on <= workers, (done_on, workers)
    forwarded = [m for m in step_log if m.startswith("[tcp://127.0.0.1:") and "] loaded model " in m]
    assert forwarded, step_log
    assert {m[1:].split("]", 1)[0] for m in forwarded} <= workers
    assert not any(m.startswith("[tcp://") for m in logs_of(reference_run))  # the reference never left this process
