"""What the integrity tests share beyond their fixtures (conftest.py): the partition they predict, and
the prediction itself. A module of its own: `from conftest import` would find whichever conftest
pytest imported last."""

from __future__ import annotations

import dagster as dg
from tiny_world import DATE, MODEL, TINY_HOLDOUT, resources_for

from geo_assets.partitions import region_date_key
from resources.compute import LocalPoolCompute

KEY = region_date_key(TINY_HOLDOUT.name, DATE)


def predict(instance, store, version: str, raise_on_error: bool = False, **config):
    """predictions[tiny-holdout] with `version` of the tiny model, on the thread pool."""
    from geo_assets.assets.predictions import predictions

    ops = {"predictions": {"config": {"model": MODEL, "version": version, "tile_size": 32, **config}}}
    return dg.materialize(
        [predictions],
        partition_key=KEY,
        instance=instance,
        raise_on_error=raise_on_error,
        resources=resources_for(store, LocalPoolCompute(workers=2)),
        run_config={"ops": ops},
    )


def cut_holdout(instance, store, tile_size: int) -> dict:
    """imagery_tiles[tiny-holdout] at `tile_size` px on the thread pool; its manifest."""
    from geo_assets.assets.imagery import imagery_tiles
    from geo_assets.geo.acquisitions import pick_imagery

    result = dg.materialize(
        [imagery_tiles],
        partition_key=KEY,
        instance=instance,
        resources=resources_for(store, LocalPoolCompute(workers=2)),
        run_config={"ops": {"imagery_tiles": {"config": {"tile_size": tile_size}}}},
    )
    assert result.success
    return pick_imagery(store, TINY_HOLDOUT.name, DATE, tile_size=tile_size)[1]
