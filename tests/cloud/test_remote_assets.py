"""The assets and the manifest IO manager with storage in a bucket, through dagster.materialize."""

import dagster as dg
import numpy as np
import pytest
import rasterio

from geo_assets.assets.imagery import imagery_tiles
from geo_assets.assets.labels import labels
from geo_assets.assets.models import evaluation_set, model_evaluation, trained_model, training_set
from geo_assets.assets.predictions import predictions
from geo_assets.assets.reports import region_report
from geo_assets.cli.commands import register
from geo_assets.geo import synthetic
from geo_assets.geo.acquisitions import pick_imagery
from geo_assets.geo.regions import Region, load_catalogue, save_catalogue
from geo_assets.partitions import region_date_key
from resources.compute import LocalPoolCompute
from resources.gate import ModelGate
from resources.imagery import ImageryResource
from resources.storage import ManifestIOManager, StorageResource
from resources.training import InProcessTraining
from tests.tiny_world import TILES64, TRAIN  # the tiny world's training settings

# 2 x 2 tiles of 64 px at 10 m, on the grid (as in tests/dagster).
TINY = Region(
    "tiny-field", (400000.0, 5120000.0, 401280.0, 5121280.0), "EPSG:32631", "synthetic", "synthetic", ("2024-06-01",)
)
TINY_HOLDOUT = Region(
    "tiny-holdout", (440320.0, 5120000.0, 441600.0, 5121280.0), "EPSG:32631", "synthetic", "synthetic", ("2024-06-01",)
)
DATE = "2024-06-01"
CUT = "synthetic-64px-blue-green-red-nir"  # the imagery variant TILES64 cuts


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        register(inst, regions=[TINY.name, TINY_HOLDOUT.name], models=["tiny-model"])
        yield inst


def _resources(storage: StorageResource) -> dict:
    catalogue = load_catalogue(storage.store())
    catalogue.add(TINY)
    catalogue.add(TINY_HOLDOUT)
    save_catalogue(storage.store(), catalogue)
    return {
        "storage": storage,
        "compute": LocalPoolCompute(workers=2),
        "io_manager": ManifestIOManager(storage=storage),
        "imagery": ImageryResource(),  # unused by the synthetic source
        "gate": ModelGate(min_miou=0.0),  # plumbing, not quality
        "training": InProcessTraining(),
    }


def _materialize(assets, key, resources, instance, ops=None, **kw):
    result = dg.materialize(
        assets, partition_key=key, resources=resources, instance=instance, run_config={"ops": ops or {}}, **kw
    )
    assert result.success
    return result


def test_whole_pipeline_with_storage_in_s3(s3_settings, prefix, instance, monkeypatch):
    """Every raster read (tile pools, mosaic, report) goes through /vsis3/, models through local_copy."""
    secret = s3_settings["secret_access_key"]
    monkeypatch.setenv("GEO_ASSETS_TEST_S3_SECRET", secret)
    storage = StorageResource(
        root=f"s3://geo-assets-test/{prefix}",
        **{**s3_settings, "secret_access_key": dg.EnvVar("GEO_ASSETS_TEST_S3_SECRET")},
    )
    resources = _resources(storage)
    for region in (TINY.name, TINY_HOLDOUT.name):
        _materialize([imagery_tiles], region_date_key(region, DATE), resources, instance, {"imagery_tiles": TILES64})
        _materialize([labels], region, resources, instance, {"labels": TILES64})
    ops = {
        "training_set": {"config": {"regions": [TINY.name]}},
        "evaluation_set": {"config": {"regions": [TINY_HOLDOUT.name]}},
        "trained_model": {"config": TRAIN},
    }
    trained = _materialize(
        [training_set, evaluation_set, trained_model, model_evaluation], "tiny-model", resources, instance, ops
    )
    version = trained.output_for_node("trained_model")["version"]
    result = _materialize(
        [imagery_tiles, predictions, region_report],
        region_date_key(TINY_HOLDOUT.name, DATE),
        resources,
        instance,
        {"predictions": {"config": {"model": "tiny-model"}}},
        selection=["predictions", "region_report"],
    )

    store = storage.store()
    assert store.root.startswith("s3://geo-assets-test/")
    manifests = store.list("manifests")
    assert manifests == sorted(
        [f"manifests/imagery_tiles/region={r}/date={DATE}/{CUT}.json" for r in (TINY.name, TINY_HOLDOUT.name)]
        + [f"manifests/labels/{r}.json" for r in (TINY.name, TINY_HOLDOUT.name)]
        + [
            "manifests/evaluation_set/tiny-model.json",
            "manifests/model_evaluation/tiny-model.json",
            f"manifests/predictions/tiny-model/{version}/region={TINY_HOLDOUT.name}/date={DATE}/{CUT}/margin-32px.json",
            f"manifests/region_report/tiny-model/{version}/region={TINY_HOLDOUT.name}/date={DATE}/{CUT}/margin-32px.json",
            "manifests/trained_model/tiny-model.json",
            "manifests/training_set/tiny-model.json",
        ]
    )
    imagery = pick_imagery(store, TINY_HOLDOUT.name, DATE)[1]
    assert len(imagery["tiles"]) == 4 and all(store.exists(t["path"]) for t in imagery["tiles"])
    assert store.exists(f"models/tiny-model/{version}/model.pt2")
    pred = result.output_for_node("predictions")
    with store.env():
        tile = imagery["tiles"][0]
        with rasterio.open(store.path(tile["path"])) as src:
            expected, _ = synthetic.scene(TINY_HOLDOUT.name, DATE, tuple(tile["bounds"]))
            np.testing.assert_array_equal(src.read(), expected)
        with rasterio.open(store.path(pred["mosaic"])) as mosaic:
            assert mosaic.shape == (128, 128) and mosaic.crs.to_string() == "EPSG:32631"
    report = result.output_for_node("region_report")
    assert store.read_bytes(report["preview"]).startswith(b"\x89PNG")
    meta = result.asset_materializations_for_node("predictions")[0].metadata
    assert meta["mosaic"].value == store.uri(pred["mosaic"])

    # The secret reached the clients, and nothing the run recorded: events, logs, metadata.
    for run in (trained, result):
        for record in instance.all_logs(run.run_id):
            assert secret not in str(record)
    assert secret not in repr(storage) and secret not in repr(store)


def test_imagery_tiles_with_storage_in_gcs(gcs_settings, prefix, instance):
    storage = StorageResource(root=f"gs://geo-assets-test/{prefix}", **gcs_settings)
    resources = _resources(storage)
    result = _materialize(
        [imagery_tiles], region_date_key(TINY.name, DATE), resources, instance, {"imagery_tiles": TILES64}
    )
    store = storage.store()
    key = f"manifests/imagery_tiles/region={TINY.name}/date={DATE}/{CUT}.json"
    meta = result.asset_materializations_for_node("imagery_tiles")[0].metadata
    assert meta["manifest"].value == f"gs://geo-assets-test/{prefix}/{key}"
    manifest = store.read_json(key)
    assert store.list(manifest["prefix"]) == sorted(p for t in manifest["tiles"] for p in (t["path"], t["cloud_path"]))
    tile = manifest["tiles"][-1]
    with store.env(), rasterio.open(store.path(tile["path"])) as src:
        expected, _ = synthetic.scene(TINY.name, DATE, tuple(tile["bounds"]))
        np.testing.assert_array_equal(src.read(), expected)
