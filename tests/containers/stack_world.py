"""The host's side of the stack test: the embedded default's model and prediction, run as a process whose
environment chooses the profile and the Dagster instance (SQLite, local files):

    python tests/containers/stack_world.py train      a tiny model of synth-holdout: prints its version
    python tests/containers/stack_world.py predict V  the prediction `geo-assets launch` plans, run here

Both through the code location's own Definitions and resources, as one process each. The stack trains
the same model (TRAIN) in runs launched into it, each its own container: the two then differ only in
where they ran.
"""

import json
import sys

import dagster as dg

from geo_assets.cli.launches import plan
from geo_assets.config import DEFAULT_MODEL
from geo_assets.definitions import ASSETS, defs
from geo_assets.partitions import region_date_key

REGION, DATE = "synth-holdout", "2024-06-01"
# A model that trains in seconds: what is compared is where it predicts, not how well.
TRAIN = {
    "architecture": "fcn",
    "epochs": 1,
    "chips_per_epoch": 8,
    "chip_size": 64,
    "batch_size": 8,
    "hyperparameters": {"hidden_channels": 8},
}


def _materialize(instance, selection: list[str], key: str, ops: dict, tags: dict | None = None) -> None:
    result = dg.materialize(
        ASSETS,
        selection=selection,
        partition_key=key,
        instance=instance,
        resources=defs.resources,
        run_config={"ops": ops},
        tags=tags or {},
        raise_on_error=False,
    )
    if not result.success:
        raise SystemExit(f"{', '.join(selection)} of {key} failed (run {result.run_id})")


def train(instance) -> str:
    store = defs.resources["storage"].store()
    _materialize(instance, ["imagery_tiles"], region_date_key(REGION, DATE), {})
    _materialize(instance, ["labels"], REGION, {})
    _materialize(
        instance,
        ["training_set", "trained_model"],
        DEFAULT_MODEL,
        {"training_set": {"config": {"regions": [REGION]}}, "trained_model": {"config": TRAIN}},
    )
    return store.read_json(f"manifests/trained_model/{DEFAULT_MODEL}.json")["version"]


def predict(instance, version: str) -> None:
    store = defs.resources["storage"].store()
    request = plan(
        store, REGION, [DATE], min_miou=defs.resources["gate"].min_miou, model=DEFAULT_MODEL, version=version
    )
    _materialize(instance, list(request.assets), request.partitions[0], request.run_config["ops"], request.tags)


if __name__ == "__main__":
    with dg.DagsterInstance.get() as instance:
        if sys.argv[1] == "train":
            print(json.dumps({"version": train(instance)}))
        else:
            predict(instance, sys.argv[2])
