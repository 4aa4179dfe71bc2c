"""The tiny world for the integrity tests: a store in a temporary folder with the tiny regions, the
holdout region's imagery in 16 tiles of 32 px, and a small model trained once per module."""

from __future__ import annotations

import dagster as dg
import pytest

from integrity_world import KEY
from tiny_world import DATE, TINY_HOLDOUT, resources_for
from tiny_world import instance, registered, store, trained  # noqa: F401 (the tiny world's fixtures)
from resources.compute import LocalPoolCompute


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
