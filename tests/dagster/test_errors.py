"""Bad input fails the step with one clear message naming the problem, and deletes nothing stored."""

import os

import dagster as dg
import pytest

from geo_assets.assets.imagery import imagery_tiles
from geo_assets.assets.labels import labels
from geo_assets.assets.models import trained_model, training_set
from geo_assets.assets.predictions import predictions
from geo_assets.cli.demo import failure_message
from geo_assets.partitions import region_date_key


def _run(asset, key, resources, instance, config=None, **kw):
    return dg.materialize(
        [asset, *kw.pop("extra", [])],
        partition_key=key,
        resources=resources,
        instance=instance,
        run_config={"ops": {asset.key.path[-1]: {"config": config or {}}}},
        raise_on_error=False,
        **kw,
    )


def _snapshot(store) -> dict[str, bytes]:
    return {k: store.read_bytes(k) for k in store.list("imagery")} | {
        k: store.read_bytes(k) for k in store.list("manifests")
    }


@pytest.mark.parametrize(
    "config, message",
    [
        ({"tile_size": 100}, "tile_size must be a multiple of 16 between 16 and 4096, got 100"),
        ({"bands": ["blue", "blue"]}, "bands must be a non-empty list without repeats"),
        ({"max_cloud": 120}, "max_cloud must be a percentage between 0 and 100, got 120"),
    ],
)
def test_bad_imagery_config_fails_and_keeps_earlier_outputs(registered, resources, store, config, message):
    key = region_date_key("tiny-field", "2024-06-01")
    assert _run(imagery_tiles, key, resources, registered, {"tile_size": 64}).success
    before = _snapshot(store)
    result = _run(imagery_tiles, key, resources, registered, config)
    assert not result.success
    assert message in failure_message(result)
    assert _snapshot(store) == before


def test_unknown_region_names_known_ones(registered, resources):
    registered.add_dynamic_partitions("regions", ["atlantis"])
    result = _run(imagery_tiles, region_date_key("atlantis", "2024-06-01"), resources, registered)
    message = failure_message(result)
    assert "unknown region 'atlantis'; known regions: " in message and "synth-holdout" in message
    assert "geo-assets region add" in message


@pytest.mark.parametrize("hostile", ["../../etc", "a/b", "UPPER", "x" * 64, "semi;colon"])
def test_hostile_partition_keys_touch_no_storage(registered, resources, store, hostile):
    registered.add_dynamic_partitions("regions", [hostile])
    before = sorted(os.walk(store.base))
    result = _run(imagery_tiles, dg.MultiPartitionKey({"region": hostile, "date": "2024-06-01"}), resources, registered)
    assert not result.success
    assert f"invalid region name {hostile!r}" in failure_message(result)
    assert sorted(os.walk(store.base)) == before
    result = _run(labels, hostile, resources, registered)
    assert f"invalid region name {hostile!r}" in failure_message(result)


def test_sample_source_outside_its_scenes(registered, resources):
    result = _run(
        imagery_tiles, region_date_key("tiny-field", "2024-06-01"), resources, registered, {"source": "sample"}
    )
    assert "no sample scene covers region 'tiny-field'" in failure_message(result)


def test_landsat_sample_has_no_nir(registered, resources):
    result = _run(imagery_tiles, region_date_key("landsat-sample", "2020-05-18"), resources, registered)
    assert "unknown band(s) ['nir'] for source 'sample'; accepted: blue, green, red" in failure_message(result)


def test_region_without_labels(registered, resources):
    result = _run(labels, "s2-sample", resources, registered)
    assert "region 's2-sample' has no label source; pass one of: synthetic, polygons" in failure_message(result)


@pytest.mark.parametrize(
    "config, message",
    [
        ({"learning_rate": 3.0}, "learning_rate must be in (0, 1), got 3.0"),
    ],
)
def test_bad_training_config(registered, resources, config, message):
    assert _run(
        imagery_tiles, region_date_key("tiny-field", "2024-06-01"), resources, registered, {"tile_size": 64}
    ).success
    assert _run(labels, "tiny-field", resources, registered, {"tile_size": 64}).success
    assert _run(training_set, "tiny-model", resources, registered, {"regions": ["tiny-field"]}).success
    result = _run(
        trained_model, "tiny-model", resources, registered, config, extra=[training_set], selection=["trained_model"]
    )
    assert message in failure_message(result)


@pytest.mark.parametrize(
    "config, message",
    [
        ({"regions": []}, "regions must name at least one region"),
        ({"regions": ["Bad Name"]}, "invalid region name 'Bad Name'"),
        ({"regions": ["tiny-field"]}, "no labels for region 'tiny-field': materialise labels[tiny-field] first"),
        ({"regions": ["nowhere"]}, "unknown region 'nowhere'"),
    ],
)
def test_bad_training_set_config(registered, resources, config, message):
    result = _run(training_set, "tiny-model", resources, registered, config)
    assert message in failure_message(result)


def test_predictions_without_a_model(registered, resources):
    key = region_date_key("tiny-field", "2024-06-01")
    assert _run(imagery_tiles, key, resources, registered, {"tile_size": 64}).success
    result = _run(
        predictions,
        key,
        resources,
        registered,
        {"model": "tiny-model"},
        extra=[imagery_tiles],
        selection=["predictions"],
    )
    assert "model 'tiny-model' has no trained versions; materialise trained_model[tiny-model] first" in failure_message(
        result
    )
    result = _run(
        predictions,
        key,
        resources,
        registered,
        {"model": "Tiny Model"},
        extra=[imagery_tiles],
        selection=["predictions"],
    )
    assert "invalid model name 'Tiny Model'" in failure_message(result)


def test_predictions_before_imagery(registered, resources):
    key = region_date_key("tiny-holdout", "2024-06-01")
    result = _run(predictions, key, resources, registered, extra=[imagery_tiles], selection=["predictions"])
    # The step reads the variant it needs (no IO-manager input): its own message names the partition.
    assert (
        "no imagery_tiles for region 'tiny-holdout' on 2024-06-01: materialise imagery_tiles[2024-06-01|tiny-holdout] first"
        in failure_message(result)
    )
