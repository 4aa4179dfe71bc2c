"""The manifests are typed (geo_assets.geo.manifests): the assets' outputs and inputs carry the types as
Dagster types, and a manifest that lacks a key fails the step that reads it, naming the type and the key."""

import dagster as dg

from geo_assets.assets.imagery import imagery_tiles
from geo_assets.assets.labels import labels
from geo_assets.assets.models import evaluation_set, model_evaluation, trained_model, training_set
from geo_assets.assets.predictions import predictions
from geo_assets.partitions import region_date_key
from resources.storage import manifest_key

TILES64 = {"config": {"tile_size": 64}}


def test_the_assets_name_their_manifest_types():
    outputs = {
        imagery_tiles: "ImageryManifest",
        labels: "LabelsManifest",
        predictions: "PredictionsManifest",
        training_set: "DatasetManifest",
        evaluation_set: "DatasetManifest",
    }
    for asset, name in outputs.items():
        (out,) = asset.op.outs.values()
        assert out.dagster_type.display_name == name, asset.key
    assert trained_model.op.ins["training_set"].dagster_type.display_name == "DatasetManifest"
    assert model_evaluation.op.ins["evaluation_set"].dagster_type.display_name == "DatasetManifest"


def test_a_stored_manifest_without_a_required_key_fails_the_step_that_reads_it(registered, resources, store):
    key = region_date_key("tiny-field", "2024-06-01")
    assert dg.materialize(
        [imagery_tiles],
        partition_key=key,
        resources=resources,
        instance=registered,
        run_config={"ops": {"imagery_tiles": TILES64}},
    ).success
    assert dg.materialize(
        [labels],
        partition_key="tiny-field",
        resources=resources,
        instance=registered,
        run_config={"ops": {"labels": TILES64}},
    ).success
    sets = {"ops": {"training_set": {"config": {"regions": ["tiny-field"]}}}}
    assert dg.materialize(
        [training_set], partition_key="tiny-model", resources=resources, instance=registered, run_config=sets
    ).success
    stored = manifest_key("training_set", "tiny-model")
    manifest = store.read_json(stored)
    del manifest["items"]  # as a manifest another writer left
    store.write_json(stored, manifest)

    result = dg.materialize(
        [training_set, trained_model],
        partition_key="tiny-model",
        resources=resources,
        instance=registered,
        selection=["trained_model"],
        raise_on_error=False,
    )
    assert not result.success
    checks = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_INPUT]
    assert checks and not checks[0].event_specific_data.type_check_data.success
    assert checks[0].event_specific_data.type_check_data.description == "the DatasetManifest lacks items"


def test_a_run_over_a_range_of_partitions_passes_the_check_of_each_manifest(registered, resources, store):
    """A range run (backfills, `--partition-range`) outputs one manifest per partition: each is checked."""
    tags = {
        "dagster/asset_partition_range_start": region_date_key("tiny-field", "2024-07-01"),
        "dagster/asset_partition_range_end": region_date_key("tiny-field", "2024-07-02"),
    }
    result = dg.materialize(
        [imagery_tiles],
        resources=resources,
        instance=registered,
        run_config={"ops": {"imagery_tiles": TILES64}},
        tags=tags,
    )
    assert result.success
    checks = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_OUTPUT]
    assert [c.event_specific_data.type_check_data.success for c in checks] == [True]
    assert len(store.list("manifests/imagery_tiles/region=tiny-field")) == 2
