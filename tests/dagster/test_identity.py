"""Asset identity: outputs belong to one model version, a serving alias, a gate no run can lower,
immutable evaluations on held-out ground, and data versions that make staleness mean something."""

import json

import dagster as dg
import pytest
import torch
from dagster._core.definitions.data_version import StaleStatus
from dagster._utils.test.data_versions import get_stale_status_resolver
from shapely.geometry import box, shape

from devtools.geodesy import box_area_m2
from geo_assets import cli
from geo_assets.assets.imagery import imagery_tiles
from geo_assets.assets.labels import labels
from geo_assets.assets.models import evaluation_set, model_evaluation, trained_model, training_set
from geo_assets.assets.predictions import predictions
from geo_assets.assets.reports import region_report
from geo_assets.cli.demo import failure_message, only_output
from geo_assets.geo.acquisitions import pick_imagery
from geo_assets.geo.regions import Region, load_catalogue, save_catalogue
from geo_assets.ml import registry
from geo_assets.partitions import region_date_key
from geo_assets.triggers.sensors import input_changes
from resources.gate import ModelGate

ALL_ASSETS = [
    imagery_tiles,
    labels,
    training_set,
    evaluation_set,
    trained_model,
    model_evaluation,
    predictions,
    region_report,
]
MODELS = [training_set, evaluation_set, trained_model, model_evaluation]
KEY = region_date_key("tiny-holdout", "2024-06-01")
TRAIN = {
    "architecture": "fcn",
    "epochs": 4,
    "chips_per_epoch": 64,
    "chip_size": 64,
    "batch_size": 8,
    "learning_rate": 0.01,
    "hyperparameters": {"hidden_channels": 16},
}


def _run(assets, key, resources, instance, ops=None, **kw):
    return dg.materialize(
        assets,
        partition_key=key,
        resources=resources,
        instance=instance,
        run_config={"ops": ops or {}},
        raise_on_error=kw.pop("raise_on_error", False),
        **kw,
    )


def _prepare(resources, instance, regions=("tiny-field", "tiny-holdout"), tile_size=64):
    for region in regions:
        tiles = {"config": {"tile_size": tile_size}}
        assert _run(
            [imagery_tiles], region_date_key(region, "2024-06-01"), resources, instance, {"imagery_tiles": tiles}
        ).success
        assert _run([labels], region, resources, instance, {"labels": tiles}).success


def _train(resources, instance, model="tiny-model", held_out=("tiny-holdout",), **overrides):
    ops = {
        "training_set": {"config": {"regions": ["tiny-field"]}},
        "evaluation_set": {"config": {"regions": list(held_out)}},
        "trained_model": {"config": {**TRAIN, **overrides}},
    }
    return _run(MODELS, model, resources, instance, ops)


def _predict(resources, instance, model, version=None, report=None):
    config = {"model": model, **({"version": version} if version else {})}
    ops = {"predictions": {"config": config}, **({"region_report": {"config": report}} if report is not None else {})}
    return _run(ALL_ASSETS, KEY, resources, instance, ops, selection=["predictions", "region_report"])


@pytest.fixture
def two_models(registered, resources):
    registered.add_dynamic_partitions("models", ["tiny-model-b"])
    _prepare(resources, registered)
    a = _train(resources, registered).output_for_node("trained_model")["version"]
    b = _run(
        MODELS,
        "tiny-model-b",
        resources,
        registered,
        {"training_set": {"config": {"regions": ["tiny-field"]}}, "trained_model": {"config": {**TRAIN, "seed": 7}}},
        selection=["training_set", "trained_model"],
    )
    b = b.output_for_node("trained_model")["version"]
    return a, b


def test_report_belongs_to_its_own_model_version(registered, resources, store, two_models):
    a, b = two_models
    first = _predict(resources, registered, "tiny-model")
    assert first.success
    second = _predict(resources, registered, "tiny-model-b", version=b)  # any version predicts when named
    assert second.success
    pred_a, pred_b = first.output_for_node("predictions"), second.output_for_node("predictions")
    assert pred_a["class_counts"] != pred_b["class_counts"]  # two different models, two different answers

    # A's manifest survives B's run, under A's version.
    kept = store.read_json(only_output(store, "predictions", "tiny-model", a, "tiny-holdout", "2024-06-01"))
    assert kept == pred_a

    # Reporting A afterwards, in a run of its own, reports A's classes, not B's (the latest) ones.
    report = _run(
        ALL_ASSETS,
        KEY,
        resources,
        registered,
        {"region_report": {"config": {"model": "tiny-model"}}},
        selection=["region_report"],
    )
    assert report.success
    out = report.output_for_node("region_report")
    assert (out["model"], out["version"]) == ("tiny-model", a)
    pixel_m2 = box_area_m2((440320.0, 5120000.0, 441600.0, 5121280.0), "EPSG:32631") / (
        128 * 128
    )  # ground under one 10 m pixel there
    assert out["areas_km2"] == pytest.approx(
        {c: n * pixel_m2 / 1e6 for c, n in pred_a["class_counts"].items()}, abs=6e-5
    )
    meta = report.asset_materializations_for_node("region_report")[0].metadata
    assert (meta["model"].value, meta["version"].value) == ("tiny-model", a)
    tags = registered.get_run_by_id(report.run_id).tags
    assert (tags["geo-assets/model"], tags["geo-assets/model-version"]) == ("tiny-model", a)
    assert store.read_json(only_output(store, "region_report", "tiny-model", a, "tiny-holdout", "2024-06-01")) == out

    # In a run that predicts, the report is of that run's version; asking for another one is refused.
    clash = _predict(resources, registered, "tiny-model-b", version=b, report={"model": "tiny-model"})
    assert (
        "region_report config asks for {'model': 'tiny-model'}, but this run predicted with model tiny-model-b"
        in failure_message(clash)
    )
    same = second.output_for_node("region_report")
    assert (same["model"], same["version"]) == ("tiny-model-b", b)


def test_report_of_a_version_never_predicted(registered, resources, two_models):
    a, _ = two_models
    result = _run(
        ALL_ASSETS,
        KEY,
        resources,
        registered,
        {"region_report": {"config": {"model": "tiny-model", "version": a}}},
        selection=["region_report"],
    )
    assert f"no predictions of model tiny-model version {a} for 2024-06-01|tiny-holdout" in failure_message(result)


def test_serving_alias_defaults_to_newest_gated_and_can_be_promoted(registered, resources, store, monkeypatch):
    _prepare(resources, registered)
    old = _train(resources, registered, seed=1).output_for_node("trained_model")["version"]
    new = _train(resources, registered, seed=2).output_for_node("trained_model")["version"]
    assert old != new
    assert registry.serving_version(store, "tiny-model", 0.2)["version"] == new
    serving = _predict(resources, registered, "tiny-model").output_for_node("predictions")
    assert serving["version"] == new

    monkeypatch.setenv("GEO_ASSETS_STORAGE_ROOT", store.root)
    monkeypatch.setenv("GEO_ASSETS_MIN_MIOU", "0.2")
    assert cli.main(["model", "promote", "tiny-model", old]) == 0
    promoted = _predict(resources, registered, "tiny-model").output_for_node("predictions")
    assert promoted["version"] == old
    meta_serving = store.read_json(only_output(store, "predictions", "tiny-model", old, "tiny-holdout", "2024-06-01"))

    # Predicting with another version explicitly never replaces the serving one's outputs.
    other = _predict(resources, registered, "tiny-model", version=new)
    assert other.output_for_node("predictions")["version"] == new
    assert other.asset_materializations_for_node("predictions")[0].metadata["serving"].value is False
    assert (
        store.read_json(only_output(store, "predictions", "tiny-model", old, "tiny-holdout", "2024-06-01"))
        == meta_serving
    )

    assert cli.main(["model", "promote", "tiny-model", "--auto"]) == 0
    assert registry.serving_version(store, "tiny-model", 0.2)["version"] == new


def test_only_gated_versions_can_be_promoted(registered, resources, store, monkeypatch, capsys):
    _prepare(resources, registered)
    strict = {**resources, "gate": ModelGate(min_miou=0.999)}
    ops = {
        "training_set": {"config": {"regions": ["tiny-field"]}},
        "evaluation_set": {"config": {"regions": ["tiny-holdout"]}},
        "trained_model": {"config": TRAIN},
    }
    version = _run(MODELS, "tiny-model", strict, registered, ops).output_for_node("trained_model")["version"]
    monkeypatch.setenv("GEO_ASSETS_STORAGE_ROOT", store.root)
    assert cli.main(["model", "promote", "tiny-model", version]) == 2
    assert (
        f"version {version} of model 'tiny-model' has not passed the quality gate (min mIoU 0.9)"
        in capsys.readouterr().err
    )
    assert not store.exists("models/tiny-model/serving.json")


def test_gate_threshold_is_not_run_config(registered, resources):
    with pytest.raises(dg.DagsterInvalidConfigError, match="min_miou"):
        _run(
            MODELS,
            "tiny-model",
            resources,
            registered,
            {"model_evaluation": {"config": {"min_miou": 0.0}}},
            raise_on_error=True,
        )


def test_evaluations_are_immutable_and_record_threshold_and_data(registered, resources, store):
    _prepare(resources, registered)
    result = _train(resources, registered)
    version = result.output_for_node("trained_model")["version"]
    evaluation = result.output_for_node("model_evaluation")
    key = f"models/tiny-model/{version}/evaluations/{evaluation['evaluation']}.json"
    before = store.read_bytes(key)
    assert evaluation["min_miou"] == 0.2
    imagery = pick_imagery(store, "tiny-holdout", "2024-06-01")[1]
    labels_manifest = store.read_json("manifests/labels/tiny-holdout.json")
    from geo_assets.assets.common import digest

    assert evaluation["inputs"] == {"tiny-holdout/2024-06-01": digest(imagery) + digest(labels_manifest)}

    again = _run(MODELS, "tiny-model", resources, registered, selection=["model_evaluation"])
    assert again.output_for_node("model_evaluation") == evaluation and store.read_bytes(key) == before
    stricter = _run(
        MODELS, "tiny-model", {**resources, "gate": ModelGate(min_miou=0.3)}, registered, selection=["model_evaluation"]
    ).output_for_node("model_evaluation")
    assert stricter["min_miou"] == 0.3 and stricter["evaluation"] != evaluation["evaluation"]
    assert store.read_bytes(key) == before
    assert len(store.list(f"models/tiny-model/{version}/evaluations")) == 2


def test_evaluation_on_the_training_ground_is_refused(registered, resources, store):
    # Another name, but half of it lies on tiny-field, which the model is trained on.
    shifted = Region("tiny-shifted", (400640.0, 5120000.0, 401920.0, 5121280.0), "EPSG:32631", "synthetic", "synthetic")
    catalogue = load_catalogue(store)
    catalogue.add(shifted)
    save_catalogue(store, catalogue)
    registered.add_dynamic_partitions("regions", ["tiny-shifted"])
    _prepare(resources, registered, regions=("tiny-field", "tiny-shifted"))
    result = _train(resources, registered, held_out=("tiny-shifted",))
    # Two 640 m tiles in common: 0.8192 km² on the map, 0.820 km² on the ellipsoid 100 km off the meridian.
    assert (
        "evaluation acquisition tiny-shifted/2024-06-01 shares 0.820 km² of ground with training acquisition "
        "tiny-field/2024-06-01: 2 of its 4 tiles overlap tiles the model was trained on"
    ) in failure_message(result)
    assert not any("/evaluations/" in k for k in store.list("models/tiny-model"))


def test_version_records_the_runtime_that_shaped_the_weights(registered, resources):
    _prepare(resources, registered)
    record = _train(resources, registered).output_for_node("trained_model")
    assert record["runtime"] == {"device": "cpu", "torch": torch.__version__}
    settings, inputs, code = record["config"], record["inputs"], record["training_code"]["digest"]
    assert registry.version_id(settings, inputs, record["runtime"], code) == record["version"]
    assert registry.version_id(settings, inputs, {**record["runtime"], "device": "cuda"}, code) != record["version"]
    assert registry.version_id(settings, inputs, {**record["runtime"], "torch": "2.11.0"}, code) != record["version"]


def _status(instance, key, partition):
    return get_stale_status_resolver(instance, ALL_ASSETS).get_status(dg.AssetKey(key), partition)


def test_unchanged_rerun_is_up_to_date_and_a_changed_tile_makes_predictions_stale(registered, resources, two_models):
    assert _predict(resources, registered, "tiny-model").success
    partition = str(KEY)
    assert _status(registered, "predictions", partition) == StaleStatus.FRESH
    assert _status(registered, "region_report", partition) == StaleStatus.FRESH

    _prepare(resources, registered, regions=("tiny-holdout",))  # same pixels again: same data version
    assert _status(registered, "predictions", partition) == StaleStatus.FRESH

    _prepare(resources, registered, regions=("tiny-holdout",), tile_size=128)  # other tiles: a change
    assert _status(registered, "predictions", partition) == StaleStatus.STALE
    causes = get_stale_status_resolver(registered, ALL_ASSETS).get_stale_causes(dg.AssetKey("predictions"), partition)
    assert any(c.dependency and c.dependency.asset_key == dg.AssetKey("imagery_tiles") for c in causes)


def _tick(instance, resources, cursor=None):
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"storage": resources["storage"]}) as ctx:
        return input_changes(ctx)


def test_changed_training_input_marks_the_model_stale(registered, resources, store):
    _prepare(resources, registered)
    assert _train(resources, registered).success
    cursor = _tick(registered, resources).cursor  # the inputs as trained on: nothing to request
    assert _status(registered, "trained_model", "tiny-model") == StaleStatus.FRESH

    _prepare(resources, registered, regions=("tiny-field",))  # rerun, same pixels
    result = _tick(registered, resources, cursor)
    assert result.run_requests == []
    assert _status(registered, "trained_model", "tiny-model") == StaleStatus.FRESH

    # tiny-field is cut again at another tile size: a variant beside the one the set lists, which is unchanged.
    assert _run(
        [imagery_tiles],
        region_date_key("tiny-field", "2024-06-01"),
        resources,
        registered,
        {"imagery_tiles": {"config": {"tile_size": 128}}},
    ).success
    result = _tick(registered, resources, result.cursor)
    assert result.run_requests == []
    assert json.loads(result.cursor)["imagery_tiles"] > json.loads(cursor)["imagery_tiles"]

    # Its labels cut at that tile size too: the set's acquisition changed (labels, and the variant matching them).
    assert _run([labels], "tiny-field", resources, registered, {"labels": {"config": {"tile_size": 128}}}).success
    result = _tick(registered, resources, result.cursor)
    (request,) = result.run_requests
    assert (request.partition_key, request.asset_selection) == ("tiny-model", [dg.AssetKey("training_set")])
    assert request.run_key.startswith("training_set:tiny-model:")  # one run per change
    # The set's own acquisitions, not its selection again (which would take in every date cut since).
    assert request.run_config == {
        "ops": {"training_set": {"config": {"regions": ["tiny-field"], "acquisitions": ["tiny-field/2024-06-01"]}}}
    }
    assert request.tags["geo-assets/changed-inputs"] == "labels tiny-field"

    # What the daemon then runs: the set takes the new data version, and the model turns stale.
    assert _run([training_set], "tiny-model", resources, registered, request.run_config["ops"]).success
    (item,) = store.read_json("manifests/training_set/tiny-model.json")["items"]
    assert item["imagery"].endswith("/date=2024-06-01/synthetic-128px-blue-green-red-nir.json")  # cut like its labels
    assert _status(registered, "trained_model", "tiny-model") == StaleStatus.STALE
    causes = get_stale_status_resolver(registered, ALL_ASSETS).get_stale_causes(
        dg.AssetKey("trained_model"), "tiny-model"
    )
    assert [c.dependency.asset_key for c in causes if c.dependency] == [dg.AssetKey("training_set")]


def test_training_and_evaluation_refuse_labels_cut_since_their_set_was_selected(registered, resources, store):
    """Labels cut at another tile size replace the region's one labels manifest: a training or an evaluation
    of a set selected on the former cut is refused naming both cuts, not fed labels the set did not select."""
    _prepare(resources, registered)
    assert _train(resources, registered).success  # both sets selected on labels cut at 64 px

    def refused(result, region: str) -> str:
        assert not result.success
        (failure,) = [e for e in result.all_events if e.is_step_failure]
        message = str(failure.step_failure_data.error)
        assert (
            f"the labels of region '{region}' are now cut at 128 px from synthetic; this set reads {region}/2024-06-01 "
            "with labels cut at 64 px from synthetic"
        ) in message, message
        return message

    # tiny-field cut again at 128 px, its labels too: a new training (another seed) from the set as selected.
    _prepare(resources, registered, regions=("tiny-field",), tile_size=128)
    refused(
        _run(
            MODELS,
            "tiny-model",
            resources,
            registered,
            {"trained_model": {"config": {**TRAIN, "seed": 5}}},
            selection=["trained_model"],
        ),
        "tiny-field",
    )

    # tiny-holdout too: an evaluation not yet made (another gate) of the set as selected.
    _prepare(resources, registered, regions=("tiny-holdout",), tile_size=128)
    refused(
        _run(
            MODELS,
            "tiny-model",
            {**resources, "gate": ModelGate(min_miou=0.25)},
            registered,
            selection=["model_evaluation"],
        ),
        "tiny-holdout",
    )


def test_a_backfill_of_more_dates_never_grows_an_evaluation_set(registered, resources, store):
    _prepare(resources, registered)
    first = _train(resources, registered)  # evaluation_set: tiny-holdout, dates [] (every date with imagery now)
    assert first.success
    registered_set = registry.registered_set(store, "tiny-model")
    assert registered_set["acquisitions"] == [["tiny-holdout", "2024-06-01"]]
    before = store.read_json("manifests/evaluation_set/tiny-model.json")
    assert before["dates"] == ["2024-06-01"]  # `dates: []` resolved once, to the dates then present
    cursor = _tick(registered, resources).cursor

    # Unrelated work: three dates of tiny-holdout cut (again) at another tile size, 2024-06-01 among them.
    for date in ("2024-06-01", "2024-06-02", "2024-06-03"):
        assert _run(
            [imagery_tiles],
            region_date_key("tiny-holdout", date),
            resources,
            registered,
            {"imagery_tiles": {"config": {"tile_size": 128}}},
        ).success
    # ... and its labels cut at that size too: the set's one acquisition changed (its labels, and the
    # imagery variant matching them), so the sensor selects the set again.
    assert _run([labels], "tiny-holdout", resources, registered, {"labels": {"config": {"tile_size": 128}}}).success
    result = _tick(registered, resources, cursor)
    (request,) = [r for r in result.run_requests if r.asset_selection == [dg.AssetKey("evaluation_set")]]
    assert request.tags["geo-assets/changed-inputs"] == "labels tiny-holdout"

    # What the daemon then runs. The registered set reads what it was registered on (64 px labels and
    # imagery): it never switches to the 128 px cut by itself, so the run is refused, naming the cut it needs.
    rerun = _run([evaluation_set], "tiny-model", resources, registered, request.run_config["ops"])
    assert not rerun.success
    (failure,) = [e for e in rerun.all_events if e.is_step_failure]
    assert (
        "the labels of region 'tiny-holdout' are now cut at 128 px from synthetic; the registered evaluation set "
        "reads tiny-holdout/2024-06-01 with labels cut at 64 px"
    ) in str(failure.step_failure_data.error)
    assert store.read_json("manifests/evaluation_set/tiny-model.json") == before
    assert registry.registered_set(store, "tiny-model") == registered_set

    # Labels cut as registered again: the set keeps its one acquisition and its 64 px variant, beside the 128 px one.
    assert _run([labels], "tiny-holdout", resources, registered, {"labels": {"config": {"tile_size": 64}}}).success
    rerun = _run([evaluation_set], "tiny-model", resources, registered, request.run_config["ops"])
    assert rerun.success
    after = store.read_json("manifests/evaluation_set/tiny-model.json")
    assert [(i["region"], i["date"]) for i in after["items"]] == [("tiny-holdout", "2024-06-01")]
    assert after["items"][0]["imagery"] == before["items"][0]["imagery"]
    assert after["items"][0]["imagery"].endswith("/date=2024-06-01/synthetic-64px-blue-green-red-nir.json")
    assert registry.registered_set(store, "tiny-model") == registered_set
    assert rerun.asset_materializations_for_node("evaluation_set")[0].metadata["is_registered_set"].value is True


def test_training_set_lists_its_inputs_as_lineage(registered, resources):
    _prepare(resources, registered)
    result = _train(resources, registered)
    table = result.asset_materializations_for_node("training_set")[0].metadata["inputs"].value
    assert [(r.data["region"], r.data["date"], r.data["tiles"]) for r in table.records] == [
        ("tiny-field", "2024-06-01", 4)
    ]
    record = result.output_for_node("trained_model")
    assert [{k: v for k, v in i.items() if k != "ground"} for i in record["training_set"]] == [
        {
            "region": "tiny-field",
            "date": "2024-06-01",
            "footprint": {"crs": "EPSG:32631", "bbox": [400000.0, 5120000.0, 401280.0, 5121280.0]},
        }
    ]
    # The ground read: its 2 x 2 tiles, which here fill the box exactly.
    ground = record["training_set"][0]["ground"]
    assert ground["crs"] == "EPSG:32631" and shape(ground["geometry"]).equals(
        box(400000.0, 5120000.0, 401280.0, 5121280.0)
    )
