"""Each asset materialised with dagster.materialize on tiny inputs, against real files."""

import dagster as dg
import numpy as np
import pytest
import rasterio

from devtools.geodesy import box_area_m2
from geo_assets.assets.imagery import imagery_tiles
from geo_assets.assets.labels import labels
from geo_assets.assets.models import evaluation_set, model_evaluation, trained_model, training_set
from geo_assets.assets.predictions import predictions
from geo_assets.assets.reports import region_report
from geo_assets.cli.demo import failure_message
from geo_assets.geo import synthetic
from geo_assets.geo.acquisitions import pick_imagery
from geo_assets.partitions import region_date_key
from resources.gate import ModelGate

KEY = region_date_key("tiny-field", "2024-06-01")
HOLDOUT_KEY = region_date_key("tiny-holdout", "2024-06-01")
TILES64 = {"config": {"tile_size": 64}}
TRAIN = {
    "architecture": "fcn",
    "epochs": 4,
    "chips_per_epoch": 64,
    "chip_size": 64,
    "batch_size": 8,
    "learning_rate": 0.01,
    "hyperparameters": {"hidden_channels": 16},
}


MODEL_ASSETS = [training_set, evaluation_set, trained_model, model_evaluation]


def _training_ops(train=("tiny-field",), held_out=("tiny-holdout",), **overrides) -> dict:
    return {
        "training_set": {"config": {"regions": list(train)}},
        "evaluation_set": {"config": {"regions": list(held_out)}},
        "trained_model": {"config": {**TRAIN, **overrides}},
    }


def _materialize(assets, key, resources, instance, ops=None, **kw):
    return dg.materialize(
        assets, partition_key=key, resources=resources, instance=instance, run_config={"ops": ops or {}}, **kw
    )


def _imagery_and_labels(resources, instance, region="tiny-field"):
    key = region_date_key(region, "2024-06-01")
    assert _materialize([imagery_tiles], key, resources, instance, {"imagery_tiles": TILES64}).success
    assert _materialize([labels], region, resources, instance, {"labels": TILES64}).success


def test_imagery_tiles_writes_one_cog_per_grid_tile(registered, resources, store):
    result = _materialize([imagery_tiles], KEY, resources, registered, {"imagery_tiles": TILES64})
    assert result.success
    manifest = pick_imagery(store, "tiny-field", "2024-06-01")[1]
    assert [tuple(t["bounds"]) for t in manifest["tiles"]] == [  # row-major, north first
        (400000.0, 5120640.0, 400640.0, 5121280.0),
        (400640.0, 5120640.0, 401280.0, 5121280.0),
        (400000.0, 5120000.0, 400640.0, 5120640.0),
        (400640.0, 5120000.0, 401280.0, 5120640.0),
    ]
    tile = manifest["tiles"][0]
    with rasterio.open(store.path(tile["path"])) as src:
        assert src.crs.to_string() == "EPSG:32631"
        assert (src.width, src.height, src.count) == (64, 64, 4)
        assert tuple(src.bounds) == tuple(tile["bounds"])
        expected, _ = synthetic.scene("tiny-field", "2024-06-01", tuple(tile["bounds"]))
        np.testing.assert_array_equal(src.read(), expected)
    meta = result.asset_materializations_for_node("imagery_tiles")[0].metadata
    assert meta["tile_count"].value == 4
    assert meta["crs"].value == "EPSG:32631"
    assert meta["nodata_fraction"].value == 0.0
    run = registered.get_run_by_id(result.run_id)
    assert run.tags["geo-assets/region"] == "tiny-field" and run.tags["geo-assets/source"] == "synthetic"


def test_sample_region_keeps_real_crs_and_reports_nodata(registered, resources, store):
    key = region_date_key("s2-sample", "2020-01-01")
    result = _materialize([imagery_tiles], key, resources, registered)
    assert result.success
    manifest = pick_imagery(store, "s2-sample", "2020-01-01")[1]
    assert manifest["crs"] == "EPSG:32719" and manifest["dtype"] == "uint16"  # every source: reflectance x 10000
    assert manifest["nodata"] == 0
    meta = result.asset_materializations_for_node("imagery_tiles")[0].metadata
    assert 0 < meta["nodata_fraction"].value < 1  # the grid overhangs the 3 x 2 km clip


def test_labels_from_polygons_on_the_landsat_sample(registered, resources, store):
    result = _materialize([labels], "landsat-sample", resources, registered)
    assert result.success
    counts = result.asset_materializations_for_node("labels")[0].metadata["class_pixels"].value
    assert counts["water"] > 0 and counts["vegetation"] > 0
    assert counts["built-up"] == 0  # the town, the sample's only built-up polygon, is held out whole
    assert counts["cloud"] == 0 and counts["bare-soil"] == 0
    held = [t["holdout_class_counts"] for t in result.output_for_node("labels")["tiles"] if "holdout_class_counts" in t]
    assert len(held) == 1 and held[0][2] == sum(held[0]) > 0  # one tile, built-up only, beside the training labels


def test_training_evaluation_prediction_and_report(registered, resources, store):
    for region in ("tiny-field", "tiny-holdout"):
        _imagery_and_labels(resources, registered, region)
    result = _materialize(MODEL_ASSETS, "tiny-model", resources, registered, _training_ops())
    assert result.success
    record = result.output_for_node("trained_model")
    version = record["version"]
    assert store.exists(f"models/tiny-model/{version}/model.pt2")
    assert store.exists(f"models/tiny-model/{version}/model.onnx")  # what ONNX Runtime predicts with on the CPU
    assert len(record["loss_curve"]) == 4 and record["config"]["architecture"] == "fcn"
    checks = result.get_asset_check_evaluations()
    assert [c.check_name for c in checks] == ["quality_gate"] and checks[0].passed

    # Same config and data: the same version, its files untouched.
    weights = store.path(f"models/tiny-model/{version}/model.pt2")
    before = (open(weights, "rb").read(), store.read_json(f"models/tiny-model/{version}/model.json"))
    again = _materialize(
        MODEL_ASSETS,
        "tiny-model",
        resources,
        registered,
        {"trained_model": {"config": TRAIN}},
        selection=["trained_model"],
    )
    assert again.output_for_node("trained_model")["version"] == version
    assert (open(weights, "rb").read(), store.read_json(f"models/tiny-model/{version}/model.json")) == before

    ops = {"predictions": {"config": {"model": "tiny-model"}}}
    result = _materialize(
        [imagery_tiles, predictions, region_report],
        HOLDOUT_KEY,
        resources,
        registered,
        ops,
        selection=["predictions", "region_report"],
    )
    assert result.success
    pred = result.output_for_node("predictions")
    assert pred["version"] == version and f"/{version}/" in pred["prefix"]
    inference = result.asset_materializations_for_node("predictions")[0].metadata["inference"].value
    assert inference["runtime"] == "onnxruntime" and inference["how"] in (
        "measured",
        "cached",
        "busy machine: by CPU time",
    )
    assert inference["batch_size"] >= 1 and inference["streams"] >= 1
    # The step's log names the file the runtime runs, and the runtime: model.onnx on ONNX Runtime.
    loaded = [e.user_message for e in registered.all_logs(result.run_id) if "loaded model " in e.user_message]
    onnx, pt2 = (store.uri(f"models/tiny-model/{version}/{f}") for f in ("model.onnx", "model.pt2"))
    assert any(f"loaded model {onnx} on cpu (onnxruntime)" in m for m in loaded), loaded
    imagery = pick_imagery(store, "tiny-holdout", "2024-06-01")[1]
    for tile, out in zip(imagery["tiles"], pred["tiles"]):
        with rasterio.open(store.path(tile["path"])) as a, rasterio.open(store.path(out["path"])) as b:
            assert (b.crs, b.transform, b.shape) == (a.crs, a.transform, a.shape)
            assert b.dtypes[0] == "uint8" and b.nodata == 255
    with rasterio.open(store.path(pred["mosaic"])) as m:
        assert m.shape == (128, 128) and m.crs.to_string() == "EPSG:32631"
    report = result.output_for_node("region_report")
    assert store.read_bytes(report["preview"]).startswith(b"\x89PNG")
    # The ground under the 128 x 128 px of 10 m (UTM scale: not 1.6384 km²), to the 4 decimals of each class.
    assert sum(report["areas_km2"].values()) == pytest.approx(
        box_area_m2((440320.0, 5120000.0, 441600.0, 5121280.0), "EPSG:32631") / 1e6, abs=5e-4
    )
    meta = result.asset_materializations_for_node("region_report")[0].metadata
    assert "data:image/png;base64," in meta["preview"].value
    run = registered.get_run_by_id(result.run_id)
    assert run.tags["geo-assets/model"] == "tiny-model" and run.tags["geo-assets/model-version"] == version
    # On torch, the same: model.pt2 (torch).
    torch_run = _materialize(
        [imagery_tiles, predictions],
        HOLDOUT_KEY,
        resources,
        registered,
        {"predictions": {"config": {"model": "tiny-model", "inference_runtime": "torch"}}},
        selection=["predictions"],
    )
    loaded = [e.user_message for e in registered.all_logs(torch_run.run_id) if "loaded model " in e.user_message]
    assert any(f"loaded model {pt2} on cpu (torch)" in m for m in loaded), loaded


def test_failed_gate_blocks_default_predictions(registered, resources, store):
    for region in ("tiny-field", "tiny-holdout"):
        _imagery_and_labels(resources, registered, region)
    strict = {**resources, "gate": ModelGate(min_miou=0.999)}
    result = _materialize(
        MODEL_ASSETS, "tiny-model", strict, registered, _training_ops(epochs=1, chips_per_epoch=8), raise_on_error=False
    )
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed
    version = result.output_for_node("trained_model")["version"]
    ops = {"predictions": {"config": {"model": "tiny-model"}}}
    failed = _materialize(
        [imagery_tiles, predictions],
        HOLDOUT_KEY,
        strict,
        registered,
        ops,
        selection=["predictions"],
        raise_on_error=False,
    )
    assert not failed.success
    assert "no version of model 'tiny-model' has passed the quality gate" in failure_message(failed)
    ops = {"predictions": {"config": {"model": "tiny-model", "version": version}}}
    forced = _materialize([imagery_tiles, predictions], HOLDOUT_KEY, strict, registered, ops, selection=["predictions"])
    assert forced.output_for_node("predictions")["version"] == version
