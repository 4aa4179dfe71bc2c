"""The tiny world for the integrity tests: a store in a temporary folder with the tiny regions, the
holdout region's imagery in 16 tiles of 32 px, and a small model trained once per module."""

from __future__ import annotations

import dagster as dg
import pytest

from tiny_world import DATE, MODEL, TINY, TINY_HOLDOUT, resources_for, train_tiny
from geo_assets.cli import register
from geo_assets.geo.regions import load_catalogue, save_catalogue
from geo_assets.geo.store import Store, local_root
from geo_assets.partitions import region_date_key
from resources.compute import LocalPoolCompute

KEY = region_date_key(TINY_HOLDOUT.name, DATE)


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    s = Store(local_root(tmp_path_factory.mktemp("integrity") / "storage"))
    catalogue = load_catalogue(s)
    catalogue.add(TINY)
    catalogue.add(TINY_HOLDOUT)
    save_catalogue(s, catalogue)
    return s


@pytest.fixture(scope="module")
def registered(instance, store):
    register(instance, regions=load_catalogue(store).names(), models=[MODEL])
    return instance


@pytest.fixture(scope="module")
def trained(registered, store) -> str:
    """A small model trained on tiny-field with the thread pool; its version id."""
    return train_tiny(registered, store)


@pytest.fixture(scope="module")
def holdout_imagery(registered, store) -> dict:
    """tiny-holdout's imagery in 16 tiles of 32 px; its manifest."""
    from geo_assets.assets.imagery import imagery_tiles
    from geo_assets.geo.acquisitions import pick_imagery

    result = dg.materialize([imagery_tiles], partition_key=KEY, instance=registered,
                            resources=resources_for(store, LocalPoolCompute(workers=2)),
                            run_config={"ops": {"imagery_tiles": {"config": {"tile_size": 32}}}})
    assert result.success
    return pick_imagery(store, TINY_HOLDOUT.name, DATE)[1]


def predict(instance, store, version: str, raise_on_error: bool = False, **config):
    """predictions[tiny-holdout] with `version` of the tiny model, on the thread pool."""
    from geo_assets.assets.predictions import predictions

    ops = {"predictions": {"config": {"model": MODEL, "version": version, "tile_size": 32, **config}}}
    return dg.materialize([predictions], partition_key=KEY, instance=instance, raise_on_error=raise_on_error,
                          resources=resources_for(store, LocalPoolCompute(workers=2)), run_config={"ops": ops})
