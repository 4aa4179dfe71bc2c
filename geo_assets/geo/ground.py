"""The ground a model read: the footprints of the tiles of a set, to judge what is held out.

A region's box understates what a step reads: its edge tiles overhang it, so two regions whose boxes
only touch can share whole tiles, pixels and labels alike. The ground of an acquisition is the union
of its tiles' boxes (each grown by any margin read around it), in the tiles' CRS. Two grounds are
compared in the second one's CRS (the first reprojected, edges densified) and their shared area is
the area on the ellipsoid, whatever the projection.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from pyproj import CRS, Geod, Transformer
from shapely import segmentize, transform
from shapely.geometry import box, mapping, shape
from shapely.ops import unary_union

from geo_assets.geo.manifests import Ground

Bounds = tuple[float, float, float, float]

TOUCHING_M2 = 1.0  # shared area below this is reprojection round-off between grounds that only touch
_GEOD = Geod(ellps="WGS84")
_WGS84 = "EPSG:4326"
_DENSIFY_POINTS = 100  # vertices per edge when a ground changes CRS: edges curve between projections


def tile_ground(crs: str, tiles: Iterable[Sequence[float]], margin: float = 0.0) -> Ground:
    """{"crs", "geometry" (GeoJSON)}: the union of the tiles' boxes, each grown by `margin` (CRS units)."""
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a finite, non-negative distance, got {margin!r}")
    boxes = [box(b[0] - margin, b[1] - margin, b[2] + margin, b[3] + margin) for b in tiles]
    if not boxes:
        raise ValueError("no tiles: a set that reads no tile covers no ground")
    return {"crs": crs, "geometry": mapping(unary_union(boxes))}


def box_ground(crs: str, bbox: Sequence[float]) -> Ground:
    """The ground of a bare box (records made before tile grounds were kept)."""
    return {"crs": crs, "geometry": mapping(_box(bbox))}


def _box(bounds: Sequence[float]):
    minx, miny, maxx, maxy = bounds
    return box(minx, miny, maxx, maxy)


def _reproject(geometry, src: str, dst: str):
    dense = segmentize(geometry, max(geometry.length / (4 * _DENSIFY_POINTS), 1.0))
    to_dst = Transformer.from_crs(src, dst, always_xy=True).transform
    return transform(dense, to_dst, interleaved=False)  # type: ignore[arg-type]  # called (x, y) as pyproj takes; the stubs know one array only


def _in_crs(ground: dict, crs: str):
    geometry = shape(ground["geometry"])
    if CRS.from_user_input(ground["crs"]) == CRS.from_user_input(crs):
        return geometry
    moved = _reproject(geometry, ground["crs"], crs)
    if not moved.is_valid or not all(math.isfinite(v) for v in moved.bounds):
        raise ValueError(f"ground in {ground['crs']} cannot be projected into {crs}: compare grounds of nearby CRSs")
    return moved


def _lonlat_bounds(ground: dict) -> Bounds:
    """The ground's lon/lat box (a coarse test before exact reprojection: far-apart zones distort)."""
    return _reproject(shape(ground["geometry"]), ground["crs"], _WGS84).bounds


def _apart(a: Bounds, b: Bounds) -> bool:
    return a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


def shared_area(a: dict, b: dict) -> float:
    """Area (m², on the WGS84 ellipsoid) that grounds `a` and `b` share; 0 when they only touch or lie apart."""
    if CRS.from_user_input(a["crs"]) != CRS.from_user_input(b["crs"]) and _apart(_lonlat_bounds(a), _lonlat_bounds(b)):
        return 0.0
    common = _in_crs(a, b["crs"]).intersection(shape(b["geometry"]))
    if common.is_empty or common.area == 0:
        return 0.0
    lonlat = _reproject(common, b["crs"], _WGS84)
    area = abs(_GEOD.geometry_area_perimeter(lonlat)[0])
    return area if area >= TOUCHING_M2 else 0.0


def tiles_on(ground: dict, crs: str, tiles: Iterable[tuple[str, Sequence[float]]]) -> list[str]:
    """Keys of the (key, bounds) tiles in `crs` that share area with `ground`."""
    tiles = list(tiles)
    if not tiles:
        return []
    probe = {"crs": crs, "geometry": mapping(unary_union([_box(b) for _, b in tiles]))}
    if shared_area(ground, probe) == 0:
        return []
    on = _in_crs(ground, crs)
    return [key for key, b in tiles if on.intersection(_box(b)).area >= TOUCHING_M2]


def format_area(m2: float) -> str:
    return f"{m2 / 1e6:.3f} km²" if m2 >= 1e5 else f"{m2:.0f} m²"
