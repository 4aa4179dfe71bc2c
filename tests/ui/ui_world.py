"""The UI test's world: three tiny synthetic regions and a one-epoch model, materialised in-process
into a fresh Dagster home before `dagster dev` serves it, so the browser only does what a user
would do next."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from geo_assets.assets.imagery import imagery_tiles
from geo_assets.assets.labels import labels
from geo_assets.assets.models import evaluation_set, model_evaluation, trained_model, training_set
from geo_assets.cli.commands import register
from geo_assets.geo.regions import Region, load_catalogue, save_catalogue
from geo_assets.geo.store import Store
from geo_assets.partitions import region_date_key
from resources.compute import LocalPoolCompute
from resources.storage import StorageResource
from tests.tiny_world import resources_for

MODEL = "ui-model"
DATE = "2024-06-01"
# 2 x 2 tiles of 64 px at 10 m, apart from each other (held-out ground may not touch the training ground).
TRAIN = Region("ui-train", (400000.0, 5120000.0, 401280.0, 5121280.0), "EPSG:32631", "synthetic", "synthetic")
HOLDOUT = Region("ui-holdout", (440320.0, 5120000.0, 441600.0, 5121280.0), "EPSG:32631", "synthetic", "synthetic")
# The region the browser materialises: in no training or evaluation set, so its imagery triggers nothing else.
FIELD = Region("ui-field", (480000.0, 5120000.0, 481280.0, 5121280.0), "EPSG:32631", "synthetic", "synthetic")
TILES = {"config": {"tile_size": 64}}
# Plumbing, not quality: the gate is set to 0 for this deployment, so one short epoch serves.
TRAINING = {
    "architecture": "fcn",
    "epochs": 1,
    "chips_per_epoch": 16,
    "chip_size": 64,
    "batch_size": 8,
    "hyperparameters": {"hidden_channels": 8},
}


def prepare(home: Path, root: str) -> str:
    """Catalogue the tiny regions, register partitions, cut imagery and labels, train and gate MODEL;
    returns the model version."""
    store = Store(root)
    catalogue = load_catalogue(store)
    for region in (TRAIN, HOLDOUT, FIELD):
        catalogue.add(region)
    save_catalogue(store, catalogue)
    storage = StorageResource(root=root)
    resources = resources_for(storage, LocalPoolCompute(workers=2))
    # The instance yaml reads DAGSTER_HOME from the environment.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DAGSTER_HOME", str(home))
        instance = dg.DagsterInstance.from_config(str(home))
        register(instance, regions=catalogue.names(), models=[MODEL])

        def run(assets, key, ops):
            result = dg.materialize(
                assets, partition_key=key, resources=resources, instance=instance, run_config={"ops": ops}
            )
            assert result.success, key
            return result

        for region in (TRAIN, HOLDOUT):
            run([imagery_tiles], region_date_key(region.name, DATE), {"imagery_tiles": TILES})
            run([labels], region.name, {"labels": TILES})
        trained = run(
            [training_set, evaluation_set, trained_model, model_evaluation],
            MODEL,
            {
                "training_set": {"config": {"regions": [TRAIN.name], "dates": [DATE]}},
                "evaluation_set": {"config": {"regions": [HOLDOUT.name], "dates": [DATE]}},
                "trained_model": {"config": TRAINING},
            },
        )
        instance.dispose()
    return trained.output_for_node("trained_model")["version"]
