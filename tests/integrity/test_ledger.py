"""The record of finished tiles outlives every failure before the step's manifest is published: a
manifest write that fails (a real fault: a folder where the manifest file goes) fails the step, and its
re-execution from failure recomputes no tile."""

import os
import shutil

import dagster as dg
from integrity_jobs import prediction_job
from integrity_world import KEY
from tiny_world import MODEL

from geo_assets.cli.demo import failure_message
from geo_assets.engine.ledger import TileLedger
from geo_assets.geo.acquisitions import variant_of
from geo_assets.partitions import region_date_partitions
from resources.storage import dims_path, model_manifest_key


def test_a_failed_manifest_write_recomputes_no_tile_on_reexecution(
    trained, registered, store, holdout_imagery, monkeypatch
):
    monkeypatch.setenv("GEO_ASSETS_STORAGE_ROOT", store.root)
    monkeypatch.setenv("GEO_ASSETS_COMPUTE", "threads")
    margin, tiles = 16, len(holdout_imagery["tiles"])
    manifest = model_manifest_key(
        "predictions",
        MODEL,
        trained,
        dims_path({"region": "tiny-holdout", "date": "2024-06-01"}),
        variant_of(holdout_imagery),
        margin,
    )
    os.makedirs(store.path(manifest))  # a folder where the manifest file goes: its write fails
    job = dg.reconstructable(prediction_job)
    config = {
        "ops": {
            "predictions": {
                "config": {"model": MODEL, "version": trained, "tile_size": 32, "margin": margin, "batch_size": 2}
            }
        }
    }
    tags = region_date_partitions.get_tags_for_partition_key(KEY)
    first = dg.execute_job(job, registered, run_config=config, tags=tags)
    assert not first.success
    assert manifest.rsplit("/", 1)[1] in failure_message(first), failure_message(first)
    done = TileLedger(store, _prefix(store, trained, margin), first.run_id).completed()
    assert len(done) == tiles  # every tile was finished, and their record kept
    written = {k: os.stat(store.path(r["path"])) for k, r in ((k, v[1]) for k, v in done.items())}

    shutil.rmtree(store.path(manifest))  # the fault mended
    again = dg.execute_job(
        job, registered, tags=tags, reexecution_options=dg.ReexecutionOptions.from_failure(first.run_id, registered)
    )
    assert again.success
    logs = " ".join(e.user_message for e in registered.all_logs(again.run_id) if e.dagster_event is None)
    assert f"predicted tiles: {tiles} of {tiles} tiles already done by an earlier attempt of this run" in logs, logs
    assert "predicted tiles: batch" not in logs  # no tile recomputed
    for key, before in written.items():
        after = os.stat(store.path(done[key][1]["path"]))
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not rewritten
    assert store.read_json(manifest)["tiles"] == [done[t["key"]][1] for t in holdout_imagery["tiles"]]
    assert store.list(_prefix(store, trained, margin) + ".done") == []  # forgotten once the manifest is published


def _prefix(store, version: str, margin: int) -> str:
    """The predictions' output prefix of this version and margin (one imagery variant is stored)."""
    (folder,) = store.folders(f"predictions/{MODEL}/{version}/tiny-holdout/2024-06-01")
    return f"predictions/{MODEL}/{version}/tiny-holdout/2024-06-01/{folder}/margin-{margin}px"
