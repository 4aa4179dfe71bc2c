"""The fixed tiling grid: every region in a CRS is cut on the same lattice of tiles.

The grid is an OGC TileMatrixSet built with morecantile: one tile matrix whose cell size is the
imagery resolution, anchored so that tile edges fall on `origin` + multiples of the tile's ground
size. `origin` is a pixel corner of the source's native lattice (Sentinel-2: (0, 0), corners on
multiples of 10/20/60 m; Landsat Collection 2: (15, 15), corners on 15 + 30k m), so every tile
pixel is a source pixel and tiles are cut without resampling. The matrix spans +-21,000 km so that
any projected coordinate, including the negative northings of UTM-north scenes south of the
equator, has a non-negative tile index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import morecantile
import pyproj
from affine import Affine

Bounds = tuple[float, float, float, float]  # (minx, miny, maxx, maxy) in the grid's CRS

HALF_SPAN_M = 2.1e7


def projected_crs(crs: str) -> pyproj.CRS:
    """Parse a CRS and insist it is projected in metres, since tiles are sized in ground metres."""
    try:
        parsed = pyproj.CRS.from_user_input(crs)
    except pyproj.exceptions.CRSError as exc:
        raise ValueError(f"invalid CRS {crs!r}: {exc}") from None
    if not parsed.is_projected:
        raise ValueError(
            f"CRS {crs!r} is not projected; regions need a projected CRS in metres (e.g. a UTM zone such as EPSG:32631)"
        )
    unit = parsed.axis_info[0].unit_name
    if unit not in ("metre", "meter"):
        raise ValueError(f"CRS {crs!r} has axis unit {unit!r}; regions need a projected CRS in metres")
    return parsed


@dataclass(frozen=True)
class Tile:
    """One cell of the grid: its column/row index, ground bounds and pixel size."""

    col: int
    row: int
    bounds: Bounds
    size: int  # pixels per side

    @property
    def key(self) -> str:
        return f"{self.col}_{self.row}"

    @property
    def transform(self) -> Affine:
        res = (self.bounds[2] - self.bounds[0]) / self.size
        return Affine(res, 0.0, self.bounds[0], 0.0, -res, self.bounds[3])


def lattice_origin(x: float, y: float, resolution: float) -> tuple[float, float]:
    """The pixel lattice through the corner (x, y), as its offset from the CRS origin in [0, resolution)."""

    def offset(v: float) -> float:
        o = math.fmod(v, resolution) % resolution
        return 0.0 if math.isclose(o, resolution, abs_tol=1e-6) or math.isclose(o, 0.0, abs_tol=1e-6) else round(o, 6)

    return offset(x), offset(y)


@dataclass(frozen=True)
class TileGrid:
    crs: str
    resolution: float  # metres per pixel
    tile_size: int = 256  # pixels per tile side
    origin: tuple[float, float] = (0.0, 0.0)  # a pixel corner of the source's lattice (x, y), metres

    def __post_init__(self) -> None:
        projected_crs(self.crs)
        if not (math.isfinite(self.resolution) and self.resolution > 0):
            raise ValueError(f"resolution must be > 0 metres (finite), got {self.resolution}")
        if not (16 <= self.tile_size <= 4096) or self.tile_size % 16:
            raise ValueError(f"tile_size must be a multiple of 16 between 16 and 4096, got {self.tile_size}")
        if len(self.origin) != 2 or not all(math.isfinite(v) for v in self.origin):
            raise ValueError(f"origin must be a finite (x, y) pixel corner in metres, got {self.origin}")
        # Any corner of the lattice names the same lattice: keep its offset in [0, resolution).
        x, y = self.origin
        object.__setattr__(self, "origin", lattice_origin(float(x), float(y), self.resolution))

    @cached_property
    def tms(self) -> morecantile.TileMatrixSet:
        ground = self.tile_size * self.resolution
        n = math.ceil(HALF_SPAN_M / ground)
        ox, oy = self.origin
        return morecantile.TileMatrixSet.custom(
            [-n * ground + ox, -n * ground + oy, n * ground + ox, n * ground + oy],
            projected_crs(self.crs),
            tile_width=self.tile_size,
            tile_height=self.tile_size,
            matrix_scale=[2 * n, 2 * n],
            minzoom=0,
            maxzoom=0,
            # morecantile ids allow only word characters and hyphens: 0.5 m -> "0p5m".
            id=f"geo-assets-{self.tile_size}px-{self.resolution:g}m-{ox:g}-{oy:g}".replace(".", "p").replace("+", ""),
        )

    def tile(self, col: int, row: int) -> Tile:
        b = self.tms.xy_bounds(morecantile.Tile(col, row, 0))
        return Tile(col, row, (b.left, b.bottom, b.right, b.top), self.tile_size)

    def tiles(self, bounds: Bounds) -> list[Tile]:
        """Tiles that overlap `bounds` with a positive area, in row-major order."""
        minx, miny, maxx, maxy = bounds
        if not (minx < maxx and miny < maxy):
            raise ValueError(f"empty bounds {bounds}: need minx < maxx and miny < maxy")
        crs = projected_crs(self.crs)
        found = []
        # geographic_crs=the grid's own CRS makes morecantile take `bounds` as-is, without reprojection.
        for t in self.tms.tiles(minx, miny, maxx, maxy, zooms=[0], geographic_crs=crs):
            tile = self.tile(t.x, t.y)
            left, bottom, right, top = tile.bounds
            if min(right, maxx) > max(left, minx) and min(top, maxy) > max(bottom, miny):
                found.append(tile)
        return sorted(found, key=lambda t: (t.row, t.col))
