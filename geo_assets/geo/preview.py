"""Small PNG previews: true-colour imagery beside predicted classes."""

from __future__ import annotations

import io

import numpy as np
import rasterio
from PIL import Image
from rasterio.enums import Resampling
from rasterio.merge import merge

from geo_assets.geo.landcover import COLOURS, IGNORE


def _scale(mosaic_shape: tuple[int, int], max_size: int) -> float:
    return max(1.0, max(mosaic_shape) / max_size)


def true_colour(paths: list[str], bands: list[str], max_size: int = 512) -> np.ndarray:
    """An RGB uint8 image of tiles, decimated so its longer side is at most `max_size` pixels."""
    rgb = [bands.index(b) + 1 for b in ("red", "green", "blue")]
    srcs = [rasterio.open(p) for p in paths]
    try:
        res = srcs[0].res[0]
        left = min(s.bounds.left for s in srcs)
        right = max(s.bounds.right for s in srcs)
        bottom = min(s.bounds.bottom for s in srcs)
        top = max(s.bounds.top for s in srcs)
        factor = _scale((round((top - bottom) / res), round((right - left) / res)), max_size)
        data, _ = merge(srcs, indexes=rgb, res=res * factor, resampling=Resampling.average)
    finally:
        for s in srcs:
            s.close()
    data = np.nan_to_num(data.astype(np.float64))
    valid = data.any(axis=0)
    lo, hi = (np.percentile(data[:, valid], (2, 98)) if valid.any() else (0.0, 1.0))
    img = np.clip((data - lo) / max(hi - lo, 1e-9) * 255, 0, 255).astype(np.uint8)
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
