"""The whole graph on the built-in regions, as `make demo` runs it (quick settings), in a real instance."""

import dagster as dg
import numpy as np
import pytest
import rasterio

from devtools.geodesy import box_area_m2
from geo_assets.cli.commands import _instance
from geo_assets.cli.demo import only_output, run_demo
from geo_assets.geo.acquisitions import pick_imagery
from resources.profiles import resource_defs

# The quick demo trains two models; on a loaded 2-core machine that takes longer than the default limit.
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def pipeline():
    instance = _instance()  # the session's DAGSTER_HOME (tests/conftest.py)
    assert run_demo(instance, quick=True) == 0
    return instance, resource_defs()["storage"].store()


def _serving_predictions(store, region, date):
    from geo_assets.ml import registry

    version = registry.serving_version(store, "landcover-unet", 0.9)["version"]
    return store.read_json(only_output(store, "predictions", "landcover-unet", version, region, date))


def test_trained_model_reaches_miou_on_held_out_region(pipeline):
    _, store = pipeline
    evaluation = store.read_json("manifests/model_evaluation/landcover-unet.json")
    assert evaluation["regions"] == ["synth-holdout"]
    assert evaluation["miou"] >= 0.90, evaluation["per_class"]
    assert evaluation["passed"]


def test_predictions_align_pixel_exact_with_imagery(pipeline):
    _, store = pipeline
    for region, date in (("synth-holdout", "2024-06-01"), ("s2-sample", "2020-01-01")):
        imagery = pick_imagery(store, region, date)[1]
        preds = _serving_predictions(store, region, date)
        assert [t["key"] for t in imagery["tiles"]] == [t["key"] for t in preds["tiles"]]
        for tile, pred in zip(imagery["tiles"], preds["tiles"]):
            with rasterio.open(store.path(tile["path"])) as a, rasterio.open(store.path(pred["path"])) as b:
                assert b.crs == a.crs and b.transform == a.transform and b.shape == a.shape
                nodata = ~np.isfinite(a.read(1)) if a.dtypes[0] == "float64" else a.read(1) == a.nodata
                assert (b.read(1)[nodata] == 255).all() and (b.read(1)[~nodata] < 5).all()


def test_held_out_predictions_match_truth(pipeline):
    from geo_assets.geo import synthetic

    _, store = pipeline
    preds = _serving_predictions(store, "synth-holdout", "2024-06-01")
    with rasterio.open(store.path(preds["mosaic"])) as m:
        truth = synthetic.truth("synth-holdout", "2024-06-01", tuple(m.bounds))
        assert (m.read(1) == truth).mean() > 0.95


def test_runs_carry_tags_and_history(pipeline):
    instance, _ = pipeline
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"geo-assets/region": "synth-holdout"}))
    jobs = {r.job_name for r in runs}
    assert {"imagery_job", "labels_job", "prediction_job"} <= jobs
    predicted = [r for r in runs if r.job_name == "prediction_job"][0]
    assert predicted.tags["geo-assets/model"] == "landcover-unet"
    assert len(predicted.tags["geo-assets/model-version"]) == 12
    assert predicted.tags["geo-assets/source"] == "synthetic"
    event = instance.get_latest_materialization_event(dg.AssetKey("region_report"))
    assert event is not None and "preview" in event.asset_materialization.metadata


def test_another_model_never_overwrites_predictions(pipeline):
    instance, store = pipeline
    from geo_assets.definitions import defs
    from geo_assets.partitions import region_date_key

    first = _serving_predictions(store, "synth-holdout", "2024-06-01")
    before = {t["path"]: store.read_bytes(t["path"]) for t in first["tiles"]}
    instance.add_dynamic_partitions("models", ["landcover-fcn"])
    ops = {
        "trained_model": {"config": {"architecture": "fcn", "epochs": 3, "chips_per_epoch": 64, "learning_rate": 0.01}}
    }
    # Whatever the fcn scores, predicting with an explicit version must leave the unet's outputs alone.
    assert (
        defs.resolve_job_def("training_job")
        .execute_in_process(
            run_config={"ops": ops}, instance=instance, partition_key="landcover-fcn", raise_on_error=False
        )
        .output_for_node("trained_model")
    )
    version = store.read_json("manifests/trained_model/landcover-fcn.json")["version"]
    result = defs.resolve_job_def("prediction_job").execute_in_process(
        run_config={"ops": {"predictions": {"config": {"model": "landcover-fcn", "version": version}}}},
        instance=instance,
        partition_key=region_date_key("synth-holdout", "2024-06-01"),
    )
    assert result.success
    second = result.output_for_node("predictions")
    assert second["model"] == "landcover-fcn" and second["prefix"] != first["prefix"]
    assert {p: store.read_bytes(p) for p in before} == before
    assert _serving_predictions(store, "synth-holdout", "2024-06-01") == first
    assert result.output_for_node("region_report")["model"] == "landcover-fcn"


def test_real_samples_are_reported_beside_an_index_reference(pipeline):
    """Each real sample's report: class shares inside the footprint beside the spectral-index
    reference (thresholds stated), and for landsat-sample the score on its held-out polygon."""
    from geo_assets.cli.demo import REAL, _version

    _, store = pipeline
    reports = {}
    for region, model in REAL.items():
        date = {"s2-sample": "2020-01-01", "landsat-sample": "2020-05-18"}[region]
        key = only_output(store, "region_report", model, _version(store, model), region, date)
        reports[region] = store.read_json(key)
        assert sum(reports[region]["shares"].values()) == pytest.approx(1.0, abs=1e-3)
        assert "index reference" in store.read_bytes(reports[region]["report"]).decode()
    s2 = reports["s2-sample"]
    # 6 bands: every rule applies (MNDWI for water, NDVI for vegetation, BSI for bare soil).
    assert s2["index_reference"]["rules"].startswith("water: MNDWI > 0; vegetation: NDVI > 0.3; bare-soil: BSI > 0")
    s2_ground = (
        box_area_m2((600000.0, 4698020.0, 603000.0, 4700020.0), "EPSG:32719") / 1e6
    )  # the 3 x 2 km clip: 6.003 km²
    assert sum(s2["areas_km2"].values()) == pytest.approx(s2_ground, abs=5e-4)  # not the overhang
    landsat = reports["landsat-sample"]
    # The one polygon held out whole (the town, 78.8 px of area), never the halves of trained polygons.
    assert 70 <= landsat["holdout"]["pixels"] <= 90 and landsat["holdout"]["miou"] is not None
    assert "GRVI > 0" in landsat["index_reference"]["rules"]
