"""Pairs of imagery tiles and label tiles, for training and evaluation."""

from __future__ import annotations

from functools import partial

import numpy as np

from geo_assets.geo.cog import read_raster
from geo_assets.geo.landcover import CLASSES, IGNORE
from geo_assets.geo.store import Store
from geo_assets.geo.tilework import Mapper
from geo_assets.ml.inputs import Normalise, read_tile


def check_same_grid(imagery: dict, labels: dict) -> None:
    """Imagery and labels must be cut on one grid, or their tiles would not line up pixel for pixel."""
    for field in ("crs", "resolution", "origin", "tile_size"):
        if imagery.get(field, [0.0, 0.0]) != labels.get(field, [0.0, 0.0]):  # manifests before "origin": (0, 0)
            raise ValueError(
                f"imagery {imagery['region']}/{imagery['date']} and its labels differ in {field}: "
                f"{imagery[field]} vs {labels[field]}; materialise both with the same tile_size and source grid"
            )


def _load_pair(store: Store, item: tuple[dict, dict], normalise: Normalise | None = None) -> tuple[np.ndarray, np.ndarray]:
    tile, label_entry = item
    image, valid, _ = read_tile(store, tile, normalise)
    with store.env():  # in the work unit: GDAL config is per thread
        label, _ = read_raster(store.path(label_entry["path"]))
        cloud = read_raster(store.path(tile["cloud_path"]))[0] if "cloud_path" in tile else None
    label = label[0].copy()
    if cloud is not None:  # this date's clouds cover whatever land lies below
        label[cloud[0] == 1] = CLASSES.index("cloud")
    label[~valid] = IGNORE
    return image, label


def load_pairs(
    store: Store, imagery: dict, labels: dict, mapper: Mapper, normalise: Normalise | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(normalised image, label) for every tile present in both manifests; `normalise` picks the model's bands."""
    check_same_grid(imagery, labels)
    by_key = {e["key"]: e for e in labels["tiles"]}
    items = [(t, by_key[t["key"]]) for t in imagery["tiles"] if t["key"] in by_key]
    if not items:
        raise ValueError(f"imagery {imagery['region']}/{imagery['date']} shares no tiles with its labels")
    return mapper(partial(_load_pair, store, normalise=normalise), items)
