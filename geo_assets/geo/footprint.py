"""Statistics inside a region's footprint.

Tiles are cut on a fixed grid, so a region's edge tiles overhang its box (a 2 x 2-tile region
off the grid spans up to 3 x 3 tiles). Every area and share counts each pixel by the fraction
of it that lies inside the box (exact for any box, aligned to the pixels or not) times its area
on the ground (`geo.area`: not res², which in Web Mercator is twice the ground at 45°).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geo_assets.geo.area import GroundArea
from geo_assets.geo.cog import read_raster
from geo_assets.geo.grid import Bounds
from geo_assets.geo.indices import REFERENCE_CLASSES, reference_classes
from geo_assets.geo.landcover import IGNORE


def _overlap(edges: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0.0, None)


def coverage(bounds: Bounds, shape: tuple[int, int], bbox: Bounds) -> np.ndarray:
    """(rows, cols) fraction in [0, 1] of each pixel of a north-up tile that lies inside `bbox`."""
    left, bottom, right, top = bounds
    rows, cols = shape
    resx, resy = (right - left) / cols, (top - bottom) / rows
    wx = _overlap(left + resx * np.arange(cols + 1), bbox[0], bbox[2]) / resx
    ys = top - resy * np.arange(rows + 1)  # row edges, north to south
    wy = np.clip(np.minimum(ys[:-1], bbox[3]) - np.maximum(ys[1:], bbox[1]), 0.0, None) / resy
    return np.outer(wy, wx)


def weighted_counts(values: np.ndarray, weights: np.ndarray, length: int = 256) -> np.ndarray:
    """Pixel counts per value (0..length-1), each pixel counted by its weight (its share inside the footprint)."""
    return np.bincount(values.ravel(), weights=weights.ravel(), minlength=length)[:length]


@dataclass
class Tally:
    """What a region's report counts, inside its footprint (ground area in m²; confusion in whole pixels)."""

    classes: np.ndarray  # (num_classes,) ground area predicted per class
    nodata: float  # ground area with no data (class 255)
    reference: np.ndarray  # (len(REFERENCE_CLASSES),) ground area per spectral-index reference class
    holdout: np.ndarray | None  # (num_classes, num_classes) held-out labels (rows) x predictions (cols)


def tally(tiles: list[dict], bbox: Bounds, crs: str, band_names: list[str], num_classes: int) -> Tally:
    """Measure predictions and the index reference, and count held-out labels, over the tiles' parts
    inside `bbox` (in `crs`, the tiles' CRS).

    Each tile is {"bounds", "prediction" (path), "imagery" (path), "holdout" (path or None)}; one
    tile is read at a time. Pixels with no data (class 255) are measured apart and in no share.
    """
    out = Tally(np.zeros(num_classes), 0.0, np.zeros(len(REFERENCE_CLASSES)), None)
    ground = GroundArea(crs)
    for tile in tiles:
        predicted = read_raster(tile["prediction"])[0][0]
        weights = coverage(tuple(tile["bounds"]), predicted.shape, bbox) * ground.pixels(
            tuple(tile["bounds"]), predicted.shape
        )
        counts = weighted_counts(predicted, weights)
        out.classes += counts[:num_classes]
        out.nodata += counts[IGNORE]
        image = read_raster(tile["imagery"])[0]
        out.reference += weighted_counts(reference_classes(image, band_names), weights)[: len(REFERENCE_CLASSES)]
        if tile.get("holdout"):
            truth = read_raster(tile["holdout"])[0][0]
            scored = (truth != IGNORE) & (predicted != IGNORE) & (weights > 0)
            cm = np.bincount(truth[scored].astype(np.int64) * num_classes + predicted[scored], minlength=num_classes**2)
            out.holdout = (0 if out.holdout is None else out.holdout) + cm.reshape(num_classes, num_classes)
    return out
