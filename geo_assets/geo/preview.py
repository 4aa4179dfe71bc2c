"""Small PNG previews: true-colour imagery beside predicted classes."""

from __future__ import annotations

import io

import numpy as np
import rasterio
from PIL import Image
from rasterio.enums import Resampling

from geo_assets.geo.grid import Bounds
from geo_assets.geo.landcover import COLOURS, IGNORE
from geo_assets.geo.mosaic import mosaic


def _decimation(tile_px: int, extent_px: int, max_size: int) -> int:
    """The smallest power-of-two factor that fits `max_size` and still divides a tile exactly."""
    factor = 1
    while extent_px / factor > max_size and tile_px % (factor * 2) == 0:
        factor *= 2
    return factor


def true_colour(tiles: list[tuple[str, Bounds]], bands: list[str], max_size: int = 512) -> np.ndarray:
    """An RGB uint8 image of (path, bounds) tiles, decimated towards `max_size` pixels on its longer side."""
    rgb = [bands.index(b) + 1 for b in ("red", "green", "blue")]
    with rasterio.open(tiles[0][0]) as first:
        res, tile_px = first.res[0], first.width
    extent = max(
        max(b[2] for _, b in tiles) - min(b[0] for _, b in tiles),
        max(b[3] for _, b in tiles) - min(b[1] for _, b in tiles),
    )
    factor = _decimation(tile_px, round(extent / res), max_size)
    data, _ = mosaic(tiles, 0, indexes=rgb, factor=factor, resampling=Resampling.average)
    data = np.nan_to_num(data.astype(np.float64))
    valid = (data > 0).all(axis=0)  # reflectance 0 = no data, in any band
    img = np.zeros(data.shape, dtype=np.uint8)  # no data stays black
    for band, values in zip(img, data):
        # A natural true colour: each band stretched from its 2nd to its 98th percentile over valid pixels.
        lo, hi = np.percentile(values[valid], (2, 98)) if valid.any() else (0.0, 1.0)
        band[valid] = np.clip((values[valid] - lo) / max(hi - lo, 1e-9) * 255, 0, 255).round()
    return img.transpose(1, 2, 0)


def class_colours(mosaic_path: str, shape: tuple[int, int]) -> np.ndarray:
    with rasterio.open(mosaic_path) as src:
        classes = src.read(1, out_shape=shape, resampling=Resampling.nearest)
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: len(COLOURS)] = COLOURS
    palette[IGNORE] = (0, 0, 0)
    return palette[classes]


def side_by_side_png(left: np.ndarray, right: np.ndarray, gap: int = 8) -> bytes:
    height = max(left.shape[0], right.shape[0])
    canvas = np.full((height, left.shape[1] + gap + right.shape[1], 3), 255, dtype=np.uint8)
    canvas[: left.shape[0], : left.shape[1]] = left
    canvas[: right.shape[0], left.shape[1] + gap :] = right
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="PNG", optimize=True)
    return buf.getvalue()
