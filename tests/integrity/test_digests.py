"""Reads are checked against the digests recorded when the objects were written (geo.integrity),
through a materialisation of predictions: a version's model files copied over from another version,
and an imagery tile copied over its neighbour's, fail the step naming the file and what was recorded."""

import shutil

import dagster as dg
import pytest
from integrity_world import predict
from tiny_world import MODEL, TRAIN, resources_for

from geo_assets.cli.demo import failure_message
from geo_assets.geo.margins import grid_index
from geo_assets.ml import registry
from resources.compute import LocalPoolCompute


def train_other(instance, store) -> str:
    """A second version of the tiny model (one more epoch); its id."""
    from geo_assets.assets.models import trained_model, training_set

    ops = {"training_set": {"config": {"regions": ["tiny-field"]}}, "trained_model": {"config": {**TRAIN, "epochs": 3}}}
    result = dg.materialize(
        [training_set, trained_model],
        partition_key=MODEL,
        instance=instance,
        run_config={"ops": ops},
        resources=resources_for(store, LocalPoolCompute(workers=2)),
    )
    assert result.success
    return result.output_for_node("trained_model")["version"]


@pytest.mark.parametrize("runtime, file", [("onnxruntime", registry.ONNX_FILE), ("torch", registry.WEIGHTS_FILE)])
def test_a_model_file_of_another_version_is_refused_before_any_prediction(
    runtime, file, trained, registered, store, holdout_imagery, tmp_path
):
    a, b = trained, train_other(registered, store)
    assert a != b
    record = store.read_json(f"{registry.model_prefix(MODEL, a)}/{registry.MODEL_FILE}")
    kept = tmp_path / "a"
    shutil.copytree(store.path(registry.model_prefix(MODEL, a)), kept)
    for name in (registry.ONNX_FILE, registry.WEIGHTS_FILE):  # both of B's files over A's
        shutil.copyfile(
            store.path(f"{registry.model_prefix(MODEL, b)}/{name}"),
            store.path(f"{registry.model_prefix(MODEL, a)}/{name}"),
        )
    try:
        result = predict(registered, store, a, inference_runtime=runtime)
        assert not result.success
        message = failure_message(result)
        assert store.uri(f"{registry.model_prefix(MODEL, a)}/{file}") in message, message
        assert record["files"][file]["sha256"] in message, message
        assert not [k for k in store.list("predictions") if f"/{a}/" in k]  # nothing predicted with the wrong weights
    finally:
        for name in (registry.ONNX_FILE, registry.WEIGHTS_FILE):
            shutil.copyfile(kept / name, store.path(f"{registry.model_prefix(MODEL, a)}/{name}"))


@pytest.mark.parametrize("margin", [0, 8])
def test_an_imagery_tile_copied_over_its_neighbour_is_refused(
    margin, trained, registered, store, holdout_imagery, tmp_path
):
    tiles = {grid_index(t["key"]): t for t in holdout_imagery["tiles"]}
    col, row = min(tiles)
    source, target = tiles[(col, row)], tiles[(col + 1, row)]  # a tile and its east neighbour
    kept = tmp_path / "kept.tif"
    shutil.copyfile(store.path(target["path"]), kept)
    shutil.copyfile(store.path(source["path"]), store.path(target["path"]))
    try:
        result = predict(registered, store, trained, margin=margin)
        assert not result.success
        message = failure_message(result)
        assert store.path(target["path"]) in message and target["digest"] in message, message
    finally:
        shutil.copyfile(kept, store.path(target["path"]))
    assert predict(registered, store, trained, margin=margin).success  # the tile restored: predicted again
