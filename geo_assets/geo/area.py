"""Ground area of the pixels of a projected CRS.

A pixel of res x res projected metres covers res² / k m² of the ellipsoid, where k, the areal scale
factor, depends on where it lies. A projection chosen for a region keeps k near 1 (UTM: 0.9992 to
about 1.0016 inside a zone); Web Mercator (EPSG:3857) does not: k is about 1 / cos²(latitude), 2 at
45°, so pixel count x res² doubles the ground there.

k is measured, not looked up: the projection's inverse is differentiated at each point (central
differences over one pixel) and the ellipsoid's area element M N cos(lat) dlat dlon applied, so it
holds for any projected CRS on its own ellipsoid (PROJ's own scale factors treat Web Mercator as
spherical: 0.34 % off at 60°). k is smooth, so one value per block of BLOCK x BLOCK pixels, at the
block's centre, is exact to second order in the block's size: one projection per block, not per pixel.
"""

from __future__ import annotations

import numpy as np
import pyproj

from geo_assets.geo.grid import Bounds, projected_crs

BLOCK = 16  # pixels per side sharing one scale factor (tile sizes are multiples of 16)


class GroundArea:
    """Pixel areas on the ground for tiles of one projected CRS. Not shared between threads."""

    def __init__(self, crs: str):
        parsed = projected_crs(crs)
        geodetic = parsed.geodetic_crs
        assert geodetic is not None and geodetic.ellipsoid is not None  # a projected CRS has both
        self.crs = crs
        self._to_geodetic = pyproj.Transformer.from_crs(parsed, geodetic, always_xy=True)
        self._radians = geodetic.axis_info[0].unit_conversion_factor  # per unit of longitude and latitude
        ellipsoid = geodetic.ellipsoid
        a, b = ellipsoid.semi_major_metre, ellipsoid.semi_minor_metre
        self._a, self._e2 = a, 1.0 - (b / a) ** 2

    def _ground_per_projected_m2(self, x: np.ndarray, y: np.ndarray, h: float) -> np.ndarray:
        """m² of ellipsoid per projected m² at (x, y): |d(lon, lat) / d(x, y)| x M N cos(lat)."""
        lon, lat = (
            np.asarray(v) * self._radians
            for v in self._to_geodetic.transform(
                np.concatenate([x + h, x - h, x, x]), np.concatenate([y, y, y + h, y - h])
            )
        )
        (lon_e, lon_w, lon_n, lon_s), (lat_e, lat_w, lat_n, lat_s) = np.split(lon, 4), np.split(lat, 4)
        dlon_dx, dlat_dx = (lon_e - lon_w) / (2 * h), (lat_e - lat_w) / (2 * h)
        dlon_dy, dlat_dy = (lon_n - lon_s) / (2 * h), (lat_n - lat_s) / (2 * h)
        phi = (lat_n + lat_s) / 2
        w = 1.0 - self._e2 * np.sin(phi) ** 2
        meridian, normal = self._a * (1.0 - self._e2) / w**1.5, self._a / np.sqrt(w)  # radii of curvature M, N
        return np.abs(dlon_dx * dlat_dy - dlon_dy * dlat_dx) * meridian * normal * np.cos(phi)

    def pixels(self, bounds: Bounds, shape: tuple[int, int], block: int = BLOCK) -> np.ndarray:
        """(rows, cols) ground area in m² of each pixel of a north-up tile with `bounds`."""
        left, bottom, right, top = bounds
        rows, cols = shape
        resx, resy = (right - left) / cols, (top - bottom) / rows
        row_starts, col_starts = np.arange(0, rows, block), np.arange(0, cols, block)
        row_sizes, col_sizes = np.minimum(block, rows - row_starts), np.minimum(block, cols - col_starts)
        xx, yy = np.meshgrid(left + resx * (col_starts + col_sizes / 2), top - resy * (row_starts + row_sizes / 2))
        with np.errstate(invalid="ignore"):
            ground = self._ground_per_projected_m2(xx.ravel(), yy.ravel(), min(resx, resy)).reshape(xx.shape)
        if not (np.isfinite(ground).all() and (ground > 0).all()):
            raise ValueError(
                f"{self.crs} has no ground area over tile {tuple(bounds)}: it lies outside the projection's domain"
            )
        return np.repeat(np.repeat(resx * resy * ground, row_sizes, axis=0), col_sizes, axis=1)
