"""The tiny world of the Dagster, Dask, integrity and container tests: two regions of 2 x 2 tiles of 64 px
at 10 m (16 tiles of 32 px), one date, and a small model trained on the thread pool. The fixtures below
(a Dagster instance, a store with the tiny regions, the model trained once per module) are imported by
the conftest files that use them."""

from __future__ import annotations

import dagster as dg
import pytest

from geo_assets.cli.commands import register
from geo_assets.geo.regions import Region, load_catalogue, save_catalogue
from geo_assets.geo.store import Store, local_root
from geo_assets.partitions import region_date_key
from resources.compute import LocalPoolCompute
from resources.gate import ModelGate
from resources.imagery import ImageryResource
from resources.storage import ManifestIOManager, StorageResource
from resources.training import InProcessTraining

TINY = Region(
    "tiny-field", (400000.0, 5120000.0, 401280.0, 5121280.0), "EPSG:32631", "synthetic", "synthetic", ("2024-06-01",)
)
TINY_HOLDOUT = Region(
    "tiny-holdout", (440320.0, 5120000.0, 441600.0, 5121280.0), "EPSG:32631", "synthetic", "synthetic", ("2024-06-01",)
)
DATE = "2024-06-01"
MODEL = "tiny-model"
TRAIN = {
    "architecture": "fcn",
    "epochs": 2,
    "chips_per_epoch": 32,
    "chip_size": 64,
    "batch_size": 8,
    "learning_rate": 0.01,
    "hyperparameters": {"hidden_channels": 8},
}
TILES64 = {"config": {"tile_size": 64}}


def resources_for(store: Store | StorageResource, compute) -> dict:
    """A step's resources on `store` (a Store, or a StorageResource with its settings) and `compute`."""
    storage = store if isinstance(store, StorageResource) else StorageResource(root=store.root)
    return {
        "storage": storage,
        "compute": compute,
        "io_manager": ManifestIOManager(storage=storage),
        "imagery": ImageryResource(),
        "gate": ModelGate(min_miou=0.0),
        "training": InProcessTraining(),
    }


def train_tiny(instance: dg.DagsterInstance, store: Store | StorageResource) -> str:
    """tiny-field's imagery and labels, then the small model trained on them on the thread pool; its version id."""
    from geo_assets.assets.imagery import imagery_tiles
    from geo_assets.assets.labels import labels
    from geo_assets.assets.models import trained_model, training_set

    resources = resources_for(store, LocalPoolCompute(workers=2))
    assert dg.materialize(
        [imagery_tiles],
        partition_key=region_date_key(TINY.name, DATE),
        resources=resources,
        instance=instance,
        run_config={"ops": {"imagery_tiles": TILES64}},
    ).success
    assert dg.materialize(
        [labels],
        partition_key=TINY.name,
        resources=resources,
        instance=instance,
        run_config={"ops": {"labels": TILES64}},
    ).success
    ops = {"training_set": {"config": {"regions": [TINY.name]}}, "trained_model": {"config": TRAIN}}
    result = dg.materialize(
        [training_set, trained_model],
        partition_key=MODEL,
        resources=resources,
        instance=instance,
        run_config={"ops": ops},
    )
    assert result.success
    return result.output_for_node("trained_model")["version"]


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def add_tiny_regions(store: Store, instance: dg.DagsterInstance | None = None) -> None:
    """TINY and TINY_HOLDOUT in the store's catalogue, and with MODEL among the instance's partitions."""
    catalogue = load_catalogue(store)
    catalogue.add(TINY)
    catalogue.add(TINY_HOLDOUT)
    save_catalogue(store, catalogue)
    if instance is not None:
        register(instance, regions=[TINY.name, TINY_HOLDOUT.name], models=[MODEL])


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    s = Store(local_root(tmp_path_factory.mktemp("tiny-world") / "storage"))
    add_tiny_regions(s)
    return s


@pytest.fixture(scope="module")
def registered(instance, store):
    register(instance, regions=load_catalogue(store).names(), models=[MODEL])
    return instance


@pytest.fixture(scope="module")
def trained(registered, store) -> str:
    """A small model trained on tiny-field with the thread pool; its version id."""
    return train_tiny(registered, store)
