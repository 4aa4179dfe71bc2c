"""Model inputs: an imagery tile read (with its neighbours' margin where asked) and normalised as a
model version was trained. No torch here: training sets and evaluation read tiles through it too."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from geo_assets.geo.cog import read_raster
from geo_assets.geo.integrity import check_pixels
from geo_assets.geo.margins import TileCache, read_with_margin
from geo_assets.geo.store import Store
from geo_assets.ml.normalisation import normalize

Normalise = Callable[[np.ndarray, Sequence], np.ndarray]  # (tile DN, its band names) -> model input


def valid_mask(data: np.ndarray, nodata: float | None) -> np.ndarray:
    """Pixels where every band has data (NaN-aware)."""
    if nodata is None:
        return np.ones(data.shape[1:], dtype=bool)
    if np.isnan(nodata):
        return ~np.isnan(data).any(axis=0)
    return ~(data == nodata).all(axis=0)


def read_tile(
    store: Store, entry: dict, normalise: Normalise | None = None, margin: int = 0, cache: TileCache | None = None
) -> tuple[np.ndarray, np.ndarray, dict]:
    """(model input, valid, profile) of one tile; `normalise` is the model's (see ml.data.Normalisation).
    With a `margin`, the input holds the tile and `margin` px of its `neighbours` around it; `valid` the tile's."""
    # Entered per work unit: rasterio's GDAL config is per thread, and this runs on a pool.
    with store.env():
        if margin:
            data, profile = read_with_margin(store.path, entry, margin, cache)
        else:
            data, profile = read_raster(store.path(entry["path"]))
            check_pixels(f"imagery tile {entry['key']} ({store.path(entry['path'])})", data, entry.get("digest"))
    image = normalize(data) if normalise is None else normalise(data, profile["band_names"])
    inside = data[:, margin : data.shape[1] - margin, margin : data.shape[2] - margin]
    return image, valid_mask(inside, profile["nodata"]), profile
