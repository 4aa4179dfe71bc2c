"""Mosaics of tiles cut on one grid, read one tile at a time.

rasterio.merge opens every source at once, which fails past the open-file limit (1024 on many
systems) for large regions. Tiles of one grid need no resampling, so pasting each at its pixel
offset is exact and keeps a single file open.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling

from geo_assets.geo.cog import CorruptRasterError
from geo_assets.geo.grid import Bounds


def mosaic(
    tiles: Sequence[tuple[str, Bounds]],
    fill: float,
    indexes: list[int] | None = None,
    factor: int = 1,
    resampling: Resampling = Resampling.nearest,
) -> tuple[np.ndarray, Affine]:
    """(bands, rows, cols) mosaic of (path, bounds) tiles, decimated by an integer `factor`."""
    if not tiles:
        raise ValueError("no tiles to mosaic")
    with rasterio.open(tiles[0][0]) as first:
        res = first.res[0] * factor
        indexes = indexes or list(first.indexes)
        dtype = first.dtypes[0]
    minx = min(b[0] for _, b in tiles)
    maxy = max(b[3] for _, b in tiles)
    width = round((max(b[2] for _, b in tiles) - minx) / res)
    height = round((maxy - min(b[1] for _, b in tiles)) / res)
    out = np.full((len(indexes), height, width), fill, dtype=dtype)
    for path, (left, bottom, right, top) in tiles:
        col, row = round((left - minx) / res), round((maxy - top) / res)
        w, h = round((right - left) / res), round((top - bottom) / res)
        try:
            with rasterio.open(path) as src:
                out[:, row : row + h, col : col + w] = src.read(indexes, out_shape=(len(indexes), h, w), resampling=resampling)
        except rasterio.errors.RasterioIOError as exc:
            raise CorruptRasterError(f"cannot read tile {path} for the mosaic: {exc}") from None
    return out, Affine(res, 0.0, minx, 0.0, -res, maxy)
