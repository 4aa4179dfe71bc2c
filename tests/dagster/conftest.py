"""Fixtures for the Dagster layer: a real instance, a store in a temp dir, tiny regions."""

import dagster as dg
import pytest

from geo_assets.cli.commands import register
from geo_assets.geo.regions import Region, load_catalogue, save_catalogue
from geo_assets.geo.store import Store, local_root
from resources.compute import LocalPoolCompute
from resources.gate import ModelGate
from resources.imagery import ImageryResource
from resources.storage import ManifestIOManager, StorageResource
from resources.training import InProcessTraining

# 2 x 2 tiles of 64 px at 10 m, on the grid (edges on multiples of 640 m).
TINY = Region(
    "tiny-field", (400000.0, 5120000.0, 401280.0, 5121280.0), "EPSG:32631", "synthetic", "synthetic", ("2024-06-01",)
)
TINY_HOLDOUT = Region(
    "tiny-holdout", (440320.0, 5120000.0, 441600.0, 5121280.0), "EPSG:32631", "synthetic", "synthetic", ("2024-06-01",)
)


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store(local_root(tmp_path / "storage"))
    catalogue = load_catalogue(s)
    catalogue.add(TINY)
    catalogue.add(TINY_HOLDOUT)
    save_catalogue(s, catalogue)
    return s


@pytest.fixture
def resources(store) -> dict:
    storage = StorageResource(root=store.root)
    return {
        "storage": storage,
        "compute": LocalPoolCompute(workers=2),
        "io_manager": ManifestIOManager(storage=storage),
        "imagery": ImageryResource(),
        "gate": ModelGate(min_miou=0.2),  # tiny models: plumbing, not quality (quality: test_pipeline)
        "training": InProcessTraining(),
    }


@pytest.fixture
def registered(instance, store):
    register(instance, regions=load_catalogue(store).names(), models=["tiny-model", "landcover-unet"])
    return instance
