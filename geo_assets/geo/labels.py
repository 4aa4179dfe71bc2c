"""Label sources: land-cover masks on the tile grid, from synthetic truth or vector polygons.

Polygon labels are held out whole, never cut: the sample names the polygons it holds out
(`SampleScene.held_out_polygons`); the others are trained on. A held-out polygon must lie apart from
every tile that carries training labels, by at least the widest margin a prediction may read around
a tile (half the tile, at most geo.margins.MAX_MARGIN): a tile that holds training labels and comes
that close to a held-out polygon is refused, naming both, so no pixel the model learns from or reads
beside its training labels lies on held-out ground. Held-out labels are stored beside the training
labels and scored in region_report.
"""

from __future__ import annotations

import numpy as np
from rasterio.features import rasterize
from rasterio.warp import transform_geom

from geo_assets.geo import sample, synthetic
from geo_assets.geo.grid import Tile
from geo_assets.geo.landcover import CLASSES, IGNORE
from geo_assets.geo.margins import MAX_MARGIN
from geo_assets.geo.regions import Region
from geo_assets.geo.sources import SampleSource

LABEL_SOURCES = ("synthetic", "polygons")

# The sample polygons use their own land-cover names; map them onto our legend.
POLYGON_CLASSES = {"water": "water", "crop": "vegetation", "tree": "vegetation", "developed": "built-up"}


def check_label_source(name: str | None, region: Region) -> str:
    chosen = name or region.labels
    if chosen is None:
        raise ValueError(f"region {region.name!r} has no label source; pass one of: {', '.join(LABEL_SOURCES)}")
    if chosen not in LABEL_SOURCES:
        raise ValueError(f"unknown label source {chosen!r}; accepted: {', '.join(LABEL_SOURCES)}")
    return chosen


def label_tile(region: Region, source: str, tile: Tile, resolution: float) -> np.ndarray:
    """The (rows, cols) uint8 class mask of one tile for training; IGNORE where nothing is labelled."""
    if source == "synthetic":
        return synthetic.land_cover(region.name, tile.bounds, resolution)
    if source == "polygons":
        train, _ = _polygons(region, tile)
        return _rasterise(train, tile)
    raise ValueError(f"unknown label source {source!r}; accepted: {', '.join(LABEL_SOURCES)}")


def holdout_tile(region: Region, source: str, tile: Tile) -> np.ndarray | None:
    """The held-out labels of one tile (polygon sources only), never trained on; None for other sources."""
    if source != "polygons":
        return None
    _, held_out = _polygons(region, tile)
    return _rasterise(held_out, tile)


def held_out_gap(tile: Tile) -> float:
    """Ground (CRS units) a held-out polygon keeps from a tile with training labels: the widest margin
    a prediction may read around the tile."""
    res = (tile.bounds[2] - tile.bounds[0]) / tile.size
    return min(MAX_MARGIN, tile.size // 2) * res


def _polygons(region: Region, tile: Tile) -> tuple[list[tuple[dict, int, str]], list[tuple[dict, int, str]]]:
    """(training, held-out) polygons of the region's scene in the region's CRS, as (geometry, class, name);
    refused when this tile holds training labels within held_out_gap of a held-out polygon."""
    from shapely.geometry import box, shape

    scene = _scene_for(region)
    polygons, crs = sample.read_label_polygons(scene.name)
    train: list[tuple[dict, int, str]] = []  # (GeoJSON geometry, class id, name)
    held_out: list[tuple[dict, int, str]] = []
    for index, (geometry, name) in enumerate(polygons):
        if name not in POLYGON_CLASSES:
            raise ValueError(f"label polygon class {name!r} is not mapped; known: {', '.join(POLYGON_CLASSES)}")
        if crs != region.crs:
            geometry = transform_geom(crs, region.crs, geometry)
        entry = (geometry, CLASSES.index(POLYGON_CLASSES[name]), f"{name} (polygon {index})")
        (held_out if index in scene.held_out_polygons else train).append(entry)
    footprint = box(*tile.bounds)
    if any(footprint.intersection(shape(g)).area > 0 for g, _, _ in train):
        near = footprint.buffer(held_out_gap(tile), join_style="mitre")
        for geometry, _, name in held_out:
            if near.intersects(shape(geometry)):
                gap = footprint.distance(shape(geometry))
                raise ValueError(
                    f"tile {tile.key} of region {region.name!r} holds training labels and lies {gap:.0f} m from "
                    f"held-out polygon {name}, less than the {held_out_gap(tile):.0f} m margin a prediction may read: "
                    f"its ground would not be held out; use a smaller tile_size"
                )
    return train, held_out


def _rasterise(polygons: list[tuple[dict, int, str]], tile: Tile) -> np.ndarray:
    shapes = [(geometry, value) for geometry, value, _ in polygons]
    if not shapes:
        return np.full((tile.size, tile.size), IGNORE, dtype=np.uint8)
    return rasterize(shapes, out_shape=(tile.size, tile.size), transform=tile.transform, fill=IGNORE, dtype="uint8")


def _scene_for(region: Region) -> sample.SampleScene:
    scene = SampleSource().sample_scene(region)
    if scene.label_file is None:
        raise ValueError(f"sample scene {scene.name!r} covering region {region.name!r} has no label polygons")
    return scene
