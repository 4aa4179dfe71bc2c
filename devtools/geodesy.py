"""Reference areas for tests: the geodesic area of a box given in a projected CRS, on that CRS's
ellipsoid, with its edges densified so they follow the projection (a way of measuring that shares
nothing with the reports' per-pixel scale factors)."""

from __future__ import annotations

import numpy as np
import pyproj


def box_area_m2(bbox, crs: str, points_per_side: int = 400) -> float:
    minx, miny, maxx, maxy = bbox
    s = np.linspace(0.0, 1.0, points_per_side, endpoint=False)
    xs = np.r_[minx + s * (maxx - minx), np.full_like(s, maxx), maxx - s * (maxx - minx), np.full_like(s, minx)]
    ys = np.r_[np.full_like(s, miny), miny + s * (maxy - miny), np.full_like(s, maxy), maxy - s * (maxy - miny)]
    parsed = pyproj.CRS.from_user_input(crs)
    lon, lat = pyproj.Transformer.from_crs(parsed, parsed.geodetic_crs, always_xy=True).transform(xs, ys)
    area, _ = parsed.get_geod().polygon_area_perimeter(lon, lat)
    return abs(area)
