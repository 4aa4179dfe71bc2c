"""Pixels and statistics on the real samples, through the assets: the normalisation a model was
trained with travels with it, no data stays no data (class 255, in no statistic), areas count
only the region's footprint, and the report sets an index reference and a held-out score beside
the model's classes. One model per scenario, trained small (plumbing, not quality)."""

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
from geo_assets.cli.commands import register
from geo_assets.geo.acquisitions import pick_imagery
from geo_assets.geo.landcover import CLASSES
from geo_assets.geo.margins import default_margin, read_with_margin, with_neighbours
from geo_assets.geo.regions import Region, load_catalogue, save_catalogue
from geo_assets.geo.store import Store, local_root
from geo_assets.ml.export import load_model
from geo_assets.ml.normalisation import Normalisation, normalize
from geo_assets.ml.predict import predict_batch
from geo_assets.partitions import region_date_key
from resources.compute import LocalPoolCompute
from resources.storage import StorageResource
from tests.tiny_world import resources_for

DATE = "2024-06-01"
TRAIN = Region("px-field", (400000.0, 5120000.0, 401280.0, 5121280.0), "EPSG:32631", "synthetic", "synthetic", (DATE,))
HOLDOUT = Region(
    "px-holdout", (440320.0, 5120000.0, 441600.0, 5121280.0), "EPSG:32631", "synthetic", "synthetic", (DATE,)
)
# 2 x 2 tiles' worth of ground (64 px tiles of 640 m), 110 m east and 50 m north of the grid: it spans 3 x 3 tiles.
S2_BOX = (600000.0, 4698020.0, 603000.0, 4700020.0)  # the s2-sample region
OFF_GRID = Region(
    "px-off-grid", (440430.0, 5120050.0, 441710.0, 5121330.0), "EPSG:32631", "synthetic", "synthetic", (DATE,)
)
TILES64 = {"config": {"tile_size": 64}}
FCN = {
    "architecture": "fcn",
    "epochs": 3,
    "chips_per_epoch": 48,
    "chip_size": 64,
    "batch_size": 8,
    "learning_rate": 0.01,
    "hyperparameters": {"hidden_channels": 16},
}
MODEL_ASSETS = [training_set, evaluation_set, trained_model, model_evaluation]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    store = Store(local_root(tmp_path_factory.mktemp("pixels") / "storage"))
    catalogue = load_catalogue(store)
    for region in (TRAIN, HOLDOUT, OFF_GRID):
        catalogue.add(region)
    save_catalogue(store, catalogue)
    storage = StorageResource(root=store.root)
    resources = resources_for(storage, LocalPoolCompute(workers=2))
    with dg.instance_for_test() as instance:
        register(instance, regions=load_catalogue(store).names(), models=["px-model", "px-rgb"])
        yield store, resources, instance


def _run(env, assets, key, ops=None, **kw):
    store, resources, instance = env
    result = dg.materialize(
        assets, partition_key=key, resources=resources, instance=instance, run_config={"ops": ops or {}}, **kw
    )
    assert result.success
    return result


def _imagery(env, region, date=DATE, bands=None):
    config = {"tile_size": 64} if region.startswith("px-") else {}
    if bands:
        config["bands"] = bands
    return _run(env, [imagery_tiles], region_date_key(region, date), {"imagery_tiles": {"config": config}})


@pytest.fixture(scope="module")
def model(env):
    """A 4-band model trained on px-field, judged on px-holdout."""
    for region in (TRAIN.name, HOLDOUT.name):
        _imagery(env, region)
        _run(env, [labels], region, {"labels": TILES64})
    ops = {
        "training_set": {"config": {"regions": [TRAIN.name]}},
        "evaluation_set": {"config": {"regions": [HOLDOUT.name]}},
        "trained_model": {"config": FCN},
    }
    return _run(env, MODEL_ASSETS, "px-model", ops).output_for_node("trained_model")


def _predict(env, model_name, region, date=DATE):
    ops = {"predictions": {"config": {"model": model_name}}}
    result = _run(
        env,
        [imagery_tiles, predictions, region_report],
        region_date_key(region, date),
        ops,
        selection=["predictions", "region_report"],
    )
    return result.output_for_node("predictions"), result.output_for_node("region_report")


def test_the_training_normalisation_is_stored_with_the_model_and_applied_at_prediction(env, model):
    store, _, _ = env
    stored = store.read_json(f"models/px-model/{model['version']}/model.json")["normalisation"]
    assert stored["bands"] == ["blue", "green", "red", "nir"]
    # It is the training tiles' per-band mean and spread (x = DN * scale + offset standardises them).
    imagery = pick_imagery(store, TRAIN.name, DATE)[1]
    pixels = np.concatenate(
        [rasterio.open(store.path(t["path"])).read().reshape(4, -1) for t in imagery["tiles"]], axis=1
    )
    mean, std = pixels.mean(axis=1), pixels.std(axis=1)
    np.testing.assert_allclose(stored["scale"], 1 / std, rtol=1e-5)
    np.testing.assert_allclose(stored["offset"], -mean / std, rtol=1e-5)
    # Predictions are what the model gives on that normalisation of each tile, not on DN / 10000.
    norm = Normalisation.from_record({"bands": stored["bands"], "normalisation": stored})
    pred, _ = _predict(env, "px-model", HOLDOUT.name)
    net = load_model(store.path(model["weights"]))
    holdout = pick_imagery(store, HOLDOUT.name, DATE)[1]
    differs = 0
    m = default_margin(holdout["tile_size"])  # each tile is predicted with its neighbours' margin, then cropped
    for tile, out in zip(with_neighbours(holdout["tiles"]), pred["tiles"]):
        data, profile = read_with_margin(store.path, tile, m)
        names = profile["band_names"]
        with rasterio.open(store.path(out["path"])) as src:
            got = src.read(1)
        np.testing.assert_array_equal(got, predict_batch(net, norm(data, names)[None])[0][m:-m, m:-m])
        differs += (got != predict_batch(net, normalize(data)[None])[0][m:-m, m:-m]).sum()
    assert differs > 0


def test_class_areas_count_only_the_footprint_of_a_box_off_the_grid(env, model):
    store, _, _ = env
    _imagery(env, OFF_GRID.name)
    pred, report = _predict(env, "px-model", OFF_GRID.name)
    assert len(pred["tiles"]) == 9  # 2 x 2 tiles of ground off the grid touch 3 x 3 tiles
    minx, miny, maxx, maxy = OFF_GRID.bbox
    ground = box_area_m2(OFF_GRID.bbox, OFF_GRID.crs)  # m² on the ground, not (maxx - minx) * (maxy - miny)
    assert sum(report["areas_km2"].values()) + report["nodata_km2"] == pytest.approx(ground / 1e6, abs=5e-4)
    # Each class: the predicted pixels inside the box (it lies on the 10 m pixels), read from the mosaic.
    with rasterio.open(store.path(pred["mosaic"])) as m:
        window = rasterio.windows.from_bounds(minx, miny, maxx, maxy, m.transform)
        inside = m.read(1, window=window)
    assert inside.shape == (128, 128)
    for k, name in enumerate(CLASSES):
        assert report["areas_km2"][name] == pytest.approx((inside == k).sum() * ground / inside.size / 1e6, abs=6e-5)
    assert sum(v for v in report["shares"].values()) == pytest.approx(1.0, abs=1e-3)
    # The index reference stands beside it, with its thresholds stated.
    rules = report["index_reference"]["rules"]
    assert "NDVI > 0.3" in rules and "NDWI > 0" in rules
    assert sum(report["index_reference"]["shares"].values()) == pytest.approx(1.0, abs=1e-3)
    text = store.read_bytes(report["report"]).decode()
    assert "index reference" in text and "NDVI > 0.3" in text


def test_no_data_is_class_255_and_in_no_statistic_on_the_sentinel2_sample(env, model):
    store, _, _ = env
    imagery = _imagery(env, "s2-sample", "2020-01-01").output_for_node("imagery_tiles")
    assert (
        imagery["dtype"] == "uint16" and imagery["nodata"] == 0 and imagery["bands"] == ["blue", "green", "red", "nir"]
    )
    pred, report = _predict(env, "px-model", "s2-sample", "2020-01-01")
    for tile, out in zip(imagery["tiles"], pred["tiles"]):
        with rasterio.open(store.path(tile["path"])) as a, rasterio.open(store.path(out["path"])) as b:
            nodata, classes = (a.read() == 0).any(axis=0), b.read(1)
        assert nodata.any() and not nodata.all()  # the 256 px grid overhangs the 3 x 2 km clip
        assert (classes[nodata] == 255).all() and (classes[~nodata] < len(CLASSES)).all()
    # The clip fills its region exactly: its 3 x 2 km (6.003 km² of ground) of classes, nothing of the overhang's no data.
    assert sum(report["areas_km2"].values()) == pytest.approx(box_area_m2(S2_BOX, "EPSG:32719") / 1e6, abs=5e-4)
    assert report["nodata_km2"] == 0.0
    # Its index reference: 4 bands give NDVI and NDWI, no SWIR for MNDWI or BSI, and it says so.
    assert "no rule for bare-soil" in report["index_reference"]["rules"]


def test_training_mixes_landsat_polygons_with_synthetic_scenes_and_scores_the_held_out_polygon(env, model):
    store, _, instance = env
    _imagery(env, "landsat-sample", "2020-05-18", bands=["blue", "green", "red"])
    label_manifest = _run(env, [labels], "landsat-sample").output_for_node("labels")
    held_out = [t for t in label_manifest["tiles"] if "holdout_path" in t]
    assert held_out and label_manifest["origin"] == [15.0, 15.0]
    for t in held_out:  # a held-out polygon's tiles carry no training label
        with rasterio.open(store.path(t["path"])) as a:
            assert (a.read(1) == 255).all()
    ops = {
        "training_set": {"config": {"regions": [TRAIN.name, "landsat-sample"]}},
        "evaluation_set": {"config": {"regions": [HOLDOUT.name]}},
        "trained_model": {"config": FCN},
    }
    record = _run(env, MODEL_ASSETS, "px-rgb", ops).output_for_node("trained_model")
    assert record["bands"] == ["blue", "green", "red"]  # the bands both acquisitions have
    assert record["normalisation"]["bands"] == ["blue", "green", "red"]
    assert [i["region"] for i in record["training_set"]] == [TRAIN.name, "landsat-sample"]
    _, report = _predict(env, "px-rgb", "landsat-sample", "2020-05-18")
    expected = sum(sum(t["holdout_class_counts"]) for t in held_out)
    assert report["holdout"]["pixels"] == expected > 0
    assert report["holdout"]["miou"] is not None and 0 <= report["holdout"]["miou"] <= 1
    assert "Held-out polygons" in store.read_bytes(report["report"]).decode()
    assert "GRVI > 0" in report["index_reference"]["rules"]  # visible bands only: the stated fallback

    # Labels cut again at 128 px replace the region's labels manifest: the report of the 256 px predictions
    # scores no held-out polygon of another cut, and says why, naming both cuts.
    _run(env, [labels], "landsat-sample", {"labels": {"config": {"tile_size": 128}}})
    report = _run(
        env,
        [imagery_tiles, predictions, region_report],
        region_date_key("landsat-sample", "2020-05-18"),
        {"region_report": {"config": {"model": "px-rgb"}}},
        selection=["region_report"],
    ).output_for_node("region_report")
    assert "holdout" not in report
    unscored = (
        "held-out polygons not scored: the labels of landsat-sample are now cut at 128 px from polygons "
        "(origin [15.0, 15.0]), these predictions' imagery at 256 px (origin [15.0, 15.0])"
    )
    assert report["holdout_unscored"].startswith(unscored), report["holdout_unscored"]
    text = store.read_bytes(report["report"]).decode()
    assert "Held-out polygons (never trained on)" not in text and "Held-out polygons not scored" in text
