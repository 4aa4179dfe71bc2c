"""imagery_tiles and predictions on the Dask profile (GEO_ASSETS_COMPUTE=dask) against real clusters:
outputs identical pixel for pixel to the thread pool's; a step that fails midway, re-executed from
failure, recomputes only the tiles that are missing."""

import os

import dagster as dg
import numpy as np
import pytest
import rasterio
from dask_test_jobs import prediction_job
from tiny_world import DATE, MODEL, TINY_HOLDOUT, resources_for

from geo_assets.assets.imagery import imagery_tiles
from geo_assets.assets.predictions import predictions
from geo_assets.cli.demo import failure_message
from geo_assets.engine.ledger import TileLedger
from geo_assets.geo.acquisitions import pick_imagery
from geo_assets.partitions import region_date_key, region_date_partitions
from resources.compute import LocalPoolCompute
from resources.dask_compute import DaskCompute
from resources.profiles import resource_defs

KEY = region_date_key(TINY_HOLDOUT.name, DATE)
TILES = 16  # tiny-holdout in tiles of 32 px


def ops(version: str) -> dict:
    return {
        "imagery_tiles": {"config": {"tile_size": 32}},
        "predictions": {"config": {"model": MODEL, "version": version, "batch_size": 2}},
    }


def manifests(store) -> tuple[dict, dict]:
    imagery = pick_imagery(store, TINY_HOLDOUT.name, DATE)[1]
    (key,) = [k for k in store.list("manifests/predictions") if f"region={TINY_HOLDOUT.name}/date={DATE}" in k]
    return imagery, store.read_json(key)


def pixels(store) -> dict:
    """Every stored pixel of the partition's imagery and predictions, with the manifests' digests."""
    imagery, preds = manifests(store)
    out = {"digests": ([t["digest"] for t in imagery["tiles"]], [t["digest"] for t in preds["tiles"]])}
    for entry in imagery["tiles"] + preds["tiles"] + [{"path": preds["mosaic"]}]:
        with rasterio.open(store.path(entry["path"])) as src:
            out[entry["path"]] = src.read()
    return out


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a["digests"] == b["digests"]
    for key in a:
        if key != "digests":
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.fixture(scope="module")
def reference(trained, registered, store) -> dict:
    """The thread pool's outputs."""
    result = dg.materialize(
        [imagery_tiles, predictions],
        partition_key=KEY,
        instance=registered,
        resources=resources_for(store, LocalPoolCompute(workers=2)),
        run_config={"ops": ops(trained)},
    )
    assert result.success
    return pixels(store)


@pytest.fixture
def dask_profile(monkeypatch, store):
    """The local profile's resources with GEO_ASSETS_COMPUTE=dask; returns a setter for further settings."""
    monkeypatch.setenv("GEO_ASSETS_STORAGE_ROOT", store.root)
    monkeypatch.setenv("GEO_ASSETS_COMPUTE", "dask")
    return lambda **env: [monkeypatch.setenv(k, str(v)) for k, v in env.items()]


@pytest.mark.parametrize("cluster", ["local", "cli"])
def test_dask_profile_predicts_the_thread_pools_pixels(
    cluster, reference, trained, registered, store, dask_profile, request
):
    if cluster == "local":  # the resource creates a LocalCluster of 2 worker processes for each step
        dask_profile(GEO_ASSETS_DASK_WORKERS=2)
    else:  # an existing scheduler, started with the dask CLI
        dask_profile(GEO_ASSETS_DASK_ADDRESS=request.getfixturevalue("cli_cluster"))
    resources = resource_defs("local")
    assert isinstance(resources["compute"], DaskCompute)
    result = dg.materialize(
        [imagery_tiles, predictions],
        partition_key=KEY,
        instance=registered,
        resources=resources,
        run_config={"ops": ops(trained)},
    )
    assert result.success
    assert_same(pixels(store), reference)
    logs = [e.user_message for e in registered.all_logs(result.run_id) if e.dagster_event is None]
    for label in ("imagery tiles", "predicted tiles"):
        assert any(m.startswith(f"{label}: batch ") and " done on tcp://127.0.0.1:" in m for m in logs)
    if cluster == "local":  # each new worker process loads the model once, and says so in the step's log
        assert any(m.startswith("[tcp://127.0.0.1:") and "] loaded model " in m for m in logs)


@pytest.mark.parametrize("compute", ["threads", "dask"])
def test_reexecution_from_failure_recomputes_only_missing_tiles(
    compute, reference, trained, registered, store, dask_profile, monkeypatch, request
):
    if compute == "dask":
        dask_profile(GEO_ASSETS_DASK_ADDRESS=request.getfixturevalue("cli_cluster"), GEO_ASSETS_TILES_PER_BATCH=2)
    else:
        monkeypatch.setenv("GEO_ASSETS_COMPUTE", "threads")
        dask_profile(GEO_ASSETS_TILES_PER_BATCH=2)
    imagery, preds = manifests(store)
    bad = imagery["tiles"][-1]
    good_bytes = store.read_bytes(bad["path"])
    store.write_bytes(bad["path"], b"not a GeoTIFF")  # an unreadable tile fails the step midway

    job = dg.reconstructable(prediction_job)
    config = {"ops": {"predictions": ops(trained)["predictions"]}}
    tags = region_date_partitions.get_tags_for_partition_key(KEY)
    first = dg.execute_job(job, registered, run_config=config, tags=tags)
    assert not first.success
    message = failure_message(first)
    # The first tile to fail may be a neighbour that reads the bad tile for its margin: the message names both.
    assert "predicted tiles: " in message and f"{bad['key']}.tif" in message
    assert "Traceback on " in message

    done = TileLedger(store, preds["prefix"], first.run_id).completed()
    assert len(done) >= 2 and bad["key"] not in done
    written = {t["key"]: store.path(t["path"]) for t in preds["tiles"]}
    stats = {k: (os.stat(written[k]).st_ino, os.stat(written[k]).st_mtime_ns) for k in done}

    store.write_bytes(bad["path"], good_bytes)
    again = dg.execute_job(
        job,
        registered,
        tags=tags,  # as the UI does, the partition's tags again
        reexecution_options=dg.ReexecutionOptions.from_failure(first.run_id, registered),
    )
    assert again.success
    assert {k: (os.stat(written[k]).st_ino, os.stat(written[k]).st_mtime_ns) for k in done} == stats  # not rewritten
    logs = [e.user_message for e in registered.all_logs(again.run_id) if e.dagster_event is None]
    assert f"predicted tiles: {len(done)} of {TILES} tiles already done by an earlier attempt of this run" in " ".join(
        logs
    )
    assert_same(pixels(store), reference)
    # The records lay beside the outputs, not among them, and went once every tile was done.
    assert store.list(preds["prefix"]) == sorted([t["path"] for t in preds["tiles"]] + [preds["mosaic"]])
    assert store.list(preds["prefix"] + ".done") == []
