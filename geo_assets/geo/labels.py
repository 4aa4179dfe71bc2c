"""Label sources: land-cover masks on the tile grid, from synthetic truth or vector polygons."""

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


def label_tile(region: Region, source: str, tile: Tile, resolution: float) -> np.ndarray:
    """The (rows, cols) uint8 class mask of one tile; IGNORE where nothing is labelled."""
    if source == "synthetic":
        return synthetic.land_cover(region.name, tile.bounds, resolution)
    if source == "polygons":
        return _rasterise_polygons(region, tile)
    raise ValueError(f"unknown label source {source!r}; accepted: {', '.join(LABEL_SOURCES)}")


def _rasterise_polygons(region: Region, tile: Tile) -> np.ndarray:
    scene = _scene_for(region)
    polygons, crs = sample.read_label_polygons(scene)
    shapes = []
    for geometry, name in polygons:
        if name not in POLYGON_CLASSES:
            raise ValueError(f"label polygon class {name!r} is not mapped; known: {', '.join(POLYGON_CLASSES)}")
        if crs != region.crs:
            geometry = transform_geom(crs, region.crs, geometry)
        shapes.append((geometry, CLASSES.index(POLYGON_CLASSES[name])))
    return rasterize(shapes, out_shape=(tile.size, tile.size), transform=tile.transform, fill=IGNORE, dtype="uint8")


def _scene_for(region: Region) -> str:
    scene = SampleSource().sample_scene(region)
    if scene.label_file is None:
        raise ValueError(f"sample scene {scene.name!r} covering region {region.name!r} has no label polygons")
    return scene.name
