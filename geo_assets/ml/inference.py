"""Batched inference over stored imagery tiles, writing class COGs on the exact tile grid."""

from __future__ import annotations

from functools import partial
from typing import Callable, Sequence

import numpy as np

from geo_assets.geo.cog import read_raster, write_cog
from geo_assets.geo.grid import Bounds
from geo_assets.geo.landcover import CLASSES, IGNORE
from geo_assets.geo.mosaic import mosaic
from geo_assets.geo.store import Store
from geo_assets.geo.tiling import pixel_digest
from geo_assets.ml.data import normalize
from geo_assets.ml.predict import predict_batch

Mapper = Callable[[Callable, Sequence], list]  # the compute resource's map, or the built-in map
Normalise = Callable[[np.ndarray, Sequence], np.ndarray]  # (tile DN, its band names) -> model input


def valid_mask(data: np.ndarray, nodata: float | None) -> np.ndarray:
    """Pixels where every band has data (NaN-aware)."""
    if nodata is None:
        return np.ones(data.shape[1:], dtype=bool)
    if np.isnan(nodata):
        return ~np.isnan(data).any(axis=0)
    return ~(data == nodata).all(axis=0)


def read_tile(store: Store, entry: dict, normalise: Normalise | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """(model input, valid, profile) of one tile; `normalise` is the model's (see ml.data.Normalisation)."""
    # Entered per work unit: rasterio's GDAL config is per thread, and this runs on a pool.
    with store.env():
        data, profile = read_raster(store.path(entry["path"]))
    image = normalize(data) if normalise is None else normalise(data, profile["band_names"])
    return image, valid_mask(data, profile["nodata"]), profile


def write_prediction(store: Store, prefix: str, item: tuple[dict, np.ndarray, dict]) -> dict:
    entry, classes, profile = item
    key = f"{prefix}/tiles/{entry['key']}.tif"
    with store.writing(key) as tmp:
        write_cog(tmp, classes, profile["crs"], profile["transform"], IGNORE, ["class"])
    counts = np.bincount(classes.ravel(), minlength=256)[: len(CLASSES)]
    return {"key": entry["key"], "path": key, "digest": pixel_digest(classes), "class_counts": [int(c) for c in counts]}


def predict_tiles(
    store: Store,
    model,
    device,
    entries: list[dict],
    prefix: str,
    batch_size: int,
    mapper: Mapper = lambda fn, items: list(map(fn, items)),
    progress: Callable[[int, int], None] | None = None,
    normalise: Normalise | None = None,
) -> list[dict]:
    """Predict every tile in batches: parallel reads, one forward pass per batch, parallel writes."""
    results: list[dict] = []
    for start in range(0, len(entries), batch_size):
        batch = entries[start : start + batch_size]
        tiles = mapper(partial(read_tile, store, normalise=normalise), batch)
        shapes = {t[0].shape for t in tiles}
        if len(shapes) != 1:
            raise ValueError(f"tiles in a batch differ in shape: {sorted(shapes)}")
        classes = predict_batch(
            model, np.stack([t[0] for t in tiles]), device, valid=np.stack([t[1] for t in tiles])
        )
        items = [(e, c, t[2]) for e, c, t in zip(batch, classes, tiles)]
        results.extend(mapper(partial(write_prediction, store, prefix), items))
        if progress:
            progress(len(results), len(entries))
    return results


def write_mosaic(store: Store, tiles: list[tuple[str, Bounds]], crs: str, key: str) -> None:
    """Merge class tiles, given as (key, bounds), into one COG with overviews for browsing whole regions."""
    with store.env():
        classes, transform = mosaic([(store.path(k), b) for k, b in tiles], IGNORE)
    with store.writing(key) as tmp:
        write_cog(tmp, classes, crs, transform, IGNORE, ["class"], blocksize=512)
