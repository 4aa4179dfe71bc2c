"""Label sources: land-cover masks on the tile grid, from synthetic truth or vector polygons.

Polygon labels are split for an honest score: each polygon is cut in two across its longer side
through its centroid, leaving a gap of HOLDOUT_GAP_PX pixels; the north (or west) part is for
training, the south (or east) part is held out, stored beside it and scored in region_report.
"""

from __future__ import annotations

import numpy as np
from rasterio.features import rasterize
from rasterio.warp import transform_geom

from geo_assets.geo import sample, synthetic
from geo_assets.geo.grid import Tile
from geo_assets.geo.landcover import CLASSES, IGNORE
from geo_assets.geo.regions import Region
from geo_assets.geo.sources import SampleSource

LABEL_SOURCES = ("synthetic", "polygons")

# The sample polygons use their own land-cover names; map them onto our legend.
POLYGON_CLASSES = {"water": "water", "crop": "vegetation", "tree": "vegetation", "developed": "built-up"}


def check_label_source(name: str | None, region: Region) -> str:
    chosen = name or region.labels
    if chosen is None:
        raise ValueError(
            f"region {region.name!r} has no label source; pass one of: {', '.join(LABEL_SOURCES)}"
        )
    if chosen not in LABEL_SOURCES:
        raise ValueError(f"unknown label source {chosen!r}; accepted: {', '.join(LABEL_SOURCES)}")
    return chosen


HOLDOUT_GAP_PX = 2


def label_tile(region: Region, source: str, tile: Tile, resolution: float) -> np.ndarray:
    """The (rows, cols) uint8 class mask of one tile for training; IGNORE where nothing is labelled."""
    if source == "synthetic":
        return synthetic.land_cover(region.name, tile.bounds, resolution)
    if source == "polygons":
        return _rasterise_polygons(region, tile, "train")
    raise ValueError(f"unknown label source {source!r}; accepted: {', '.join(LABEL_SOURCES)}")


def holdout_tile(region: Region, source: str, tile: Tile) -> np.ndarray | None:
    """The held-out labels of one tile (polygon sources only), never trained on; None for other sources."""
    return _rasterise_polygons(region, tile, "holdout") if source == "polygons" else None


def split_polygon(geometry: dict, gap: float) -> tuple[dict, dict]:
    """(train part, held-out part) of a GeoJSON polygon: cut across its longer side through its centroid."""
    from shapely.geometry import box, mapping, shape

    poly = shape(geometry)
    minx, miny, maxx, maxy = poly.bounds
    cx, cy = poly.centroid.x, poly.centroid.y
    if maxx - minx >= maxy - miny:  # wider than tall: west trains, east is held out
        parts = box(minx - 1, miny - 1, cx - gap / 2, maxy + 1), box(cx + gap / 2, miny - 1, maxx + 1, maxy + 1)
    else:  # north trains, south is held out
        parts = box(minx - 1, cy + gap / 2, maxx + 1, maxy + 1), box(minx - 1, miny - 1, maxx + 1, cy - gap / 2)
    return mapping(poly.intersection(parts[0])), mapping(poly.intersection(parts[1]))


def _rasterise_polygons(region: Region, tile: Tile, part: str) -> np.ndarray:
    scene = _scene_for(region)
    polygons, crs = sample.read_label_polygons(scene)
    shapes = []
    for geometry, name in polygons:
        if name not in POLYGON_CLASSES:
            raise ValueError(f"label polygon class {name!r} is not mapped; known: {', '.join(POLYGON_CLASSES)}")
        if crs != region.crs:
            geometry = transform_geom(crs, region.crs, geometry)
        res = (tile.bounds[2] - tile.bounds[0]) / tile.size
        train, holdout = split_polygon(geometry, HOLDOUT_GAP_PX * res)
        shapes.append((train if part == "train" else holdout, CLASSES.index(POLYGON_CLASSES[name])))
    return rasterize(shapes, out_shape=(tile.size, tile.size), transform=tile.transform, fill=IGNORE, dtype="uint8")


def _scene_for(region: Region) -> str:
    scene = SampleSource().sample_scene(region)
    if scene.label_file is None:
        raise ValueError(f"sample scene {scene.name!r} covering region {region.name!r} has no label polygons")
    return scene.name
