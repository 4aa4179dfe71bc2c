"""TileGrid: a fixed lattice anchored at the CRS origin, cut with morecantile."""

from __future__ import annotations

import math

import numpy as np
import pytest
from affine import Affine

from geo_assets.geo.grid import Tile, TileGrid, projected_crs


def _check_cover(grid: TileGrid, bbox) -> list[Tile]:
    """Assert the grid's tiles for `bbox` cover it exactly; return them."""
    ground = grid.tile_size * grid.resolution
    tiles = grid.tiles(bbox)
    assert tiles, bbox
    minx, miny, maxx, maxy = bbox
    for t in tiles:
        left, b, r, tp = t.bounds
        # Edges on multiples of the tile's ground size from the CRS origin.
        for edge in t.bounds:
            assert edge / ground == pytest.approx(round(edge / ground), abs=1e-9), (t, edge)
        assert r - left == pytest.approx(ground) and tp - b == pytest.approx(ground)
        # Every tile overlaps the bbox with positive area.
        assert min(r, maxx) > max(left, minx) and min(tp, maxy) > max(b, miny), (t, bbox)
    # No duplicates, and the tiles form the full rectangle of cols x rows (so their union is
    # exactly the rectangle spanned by their outer edges), which must contain the bbox.
    cols = sorted({t.col for t in tiles})
    rows = sorted({t.row for t in tiles})
    assert len({(t.col, t.row) for t in tiles}) == len(tiles) == len(cols) * len(rows)
    assert cols == list(range(cols[0], cols[-1] + 1)) and rows == list(range(rows[0], rows[-1] + 1))
    assert min(t.bounds[0] for t in tiles) <= minx and max(t.bounds[2] for t in tiles) >= maxx
    assert min(t.bounds[1] for t in tiles) <= miny and max(t.bounds[3] for t in tiles) >= maxy
    # The count is the number of lattice cells the bbox touches.
    expected = (math.ceil(maxx / ground) - math.floor(minx / ground)) * (
        math.ceil(maxy / ground) - math.floor(miny / ground)
    )
    assert len(tiles) == expected, bbox
    # Row-major order: north to south, then west to east.
    assert tiles == sorted(tiles, key=lambda t: (t.row, t.col))
    assert [t.bounds[3] for t in tiles] == sorted((t.bounds[3] for t in tiles), reverse=True)
    return tiles


@pytest.mark.parametrize(
    "crs, resolution, tile_size",
    [("EPSG:32631", 10.0, 256), ("EPSG:32621", 30.0, 256), ("EPSG:32719", 20.0, 16), ("EPSG:3857", 60.0, 512)],
)
def test_random_bboxes_are_covered_exactly(crs, resolution, tile_size):
    grid = TileGrid(crs, resolution, tile_size)
    ground = tile_size * resolution
    rng = np.random.default_rng(42)
    for _ in range(60):
        minx = float(rng.uniform(-3e6, 3e6))
        miny = float(rng.uniform(-9e6, 9e6))
        w, h = (float(v) for v in rng.uniform(1.0, 4.5 * ground, 2))
        _check_cover(grid, (minx, miny, minx + w, miny + h))


@pytest.mark.parametrize("name, resolution", [("synth-train-a", 10.0), ("s2-sample", 10.0), ("landsat-sample", 30.0)])
def test_builtin_regions_are_covered(regions, name, resolution):
    region = regions[name]
    _check_cover(TileGrid(region.crs, resolution, 256), region.bbox)


def test_grid_is_anchored_at_crs_origin():
    grid = TileGrid("EPSG:32631", 10.0, 256)
    (ne,) = grid.tiles((0.0, 0.0, 1.0, 1.0))
    assert ne.bounds == (0.0, 0.0, 2560.0, 2560.0)
    (sw,) = grid.tiles((-1.0, -1.0, 0.0, 0.0))
    assert sw.bounds == (-2560.0, -2560.0, 0.0, 0.0)
    assert (sw.col, sw.row) == (ne.col - 1, ne.row + 1)  # rows count southwards
    assert grid.tile(ne.col, ne.row) == ne


def test_same_lattice_for_every_region_in_a_crs():
    grid = TileGrid("EPSG:32631", 10.0, 256)
    a = {t.key: t for t in grid.tiles((400000.0, 5120000.0, 410000.0, 5130000.0))}
    b = {t.key: t for t in grid.tiles((405000.0, 5125000.0, 415000.0, 5135000.0))}
    shared = set(a) & set(b)
    assert shared
    assert all(a[k] == b[k] for k in shared)


def test_negative_northings_give_valid_tiles():
    grid = TileGrid("EPSG:32621", 30.0, 256)
    bbox = (732000.0, -2816010.0, 748020.0, -2790000.0)
    tiles = _check_cover(grid, bbox)
    assert all(t.col >= 0 and t.row >= 0 for t in tiles)
    assert all(t.bounds[3] <= 0 for t in tiles)
    # Rows 3098..3101 and columns 95..97 (in ground units) -- 7680 m tiles from the origin.
    assert {t.bounds[3] for t in tiles} == {-2787840.0, -2795520.0, -2803200.0, -2810880.0}
    assert {t.bounds[0] for t in tiles} == {729600.0, 737280.0, 744960.0}
    for t in tiles:
        assert grid.tile(t.col, t.row) == t


def test_bbox_on_grid_lines_adds_no_extra_tile():
    grid = TileGrid("EPSG:32631", 10.0, 256)
    g = 2560.0
    # Exactly one tile: all four edges on grid lines.
    (only,) = grid.tiles((100 * g, 2000 * g, 101 * g, 2001 * g))
    assert only.bounds == (100 * g, 2000 * g, 101 * g, 2001 * g)
    # 2 x 3 tiles, edges on grid lines (including negative coordinates).
    tiles = grid.tiles((-g, -2 * g, g, g))
    assert len(tiles) == 6
    # A bbox ending on a grid line but starting inside a tile.
    assert len(grid.tiles((100 * g + 5, 2000 * g + 5, 102 * g, 2001 * g))) == 2
    # Crossing a grid line by one millimetre adds the tile beyond it.
    assert len(grid.tiles((100 * g, 2000 * g, 101 * g + 0.001, 2001 * g))) == 2


def test_tile_transform_matches_bounds():
    grid = TileGrid("EPSG:32621", 30.0, 256)
    for t in grid.tiles((732000.0, -2816010.0, 748020.0, -2790000.0)):
        tr = t.transform
        assert isinstance(tr, Affine)
        assert (tr.a, tr.b, tr.d, tr.e) == (30.0, 0.0, 0.0, -30.0)
        assert tr @ (0, 0) == (t.bounds[0], t.bounds[3])
        assert tr @ (t.size, t.size) == pytest.approx((t.bounds[2], t.bounds[1]))
        assert t.key == f"{t.col}_{t.row}"


@pytest.mark.parametrize("resolution", [0.5, 2.5, 10.0])
def test_fractional_resolutions(resolution):
    grid = TileGrid("EPSG:32631", resolution, 256)
    g = 256 * resolution
    # 2.5 x 1.5 tiles starting half a tile in: 3 columns x 2 rows.
    tiles = _check_cover(grid, (1000.5 * g, 2000.5 * g, 1003 * g, 2002 * g))
    assert len(tiles) == 6
    assert tiles[0].transform.a == resolution


def test_geographic_crs_refused():
    with pytest.raises(ValueError, match=r"'EPSG:4326' is not projected"):
        TileGrid("EPSG:4326", 10.0)
    with pytest.raises(ValueError, match=r"EPSG:4978"):  # geocentric: not projected either
        projected_crs("EPSG:4978")


def test_non_metre_crs_refused():
    with pytest.raises(ValueError, match=r"'EPSG:2263' has axis unit 'US survey foot'"):
        TileGrid("EPSG:2263", 10.0)


@pytest.mark.parametrize("crs", ["EPSG:999999", "not-a-crs", ""])
def test_invalid_crs_refused_naming_it(crs):
    with pytest.raises(ValueError, match=f"invalid CRS {crs!r}"):
        TileGrid(crs, 10.0)


def test_projected_crs_accepts_utm_and_proj_strings():
    assert projected_crs("EPSG:32631").to_epsg() == 32631
    assert projected_crs("+proj=utm +zone=31 +datum=WGS84 +units=m").is_projected


@pytest.mark.parametrize("tile_size", [0, 8, 15, 100, 4112, 8192, -256])
def test_bad_tile_size_refused(tile_size):
    with pytest.raises(ValueError, match=f"tile_size must be a multiple of 16 between 16 and 4096, got {tile_size}"):
        TileGrid("EPSG:32631", 10.0, tile_size)


@pytest.mark.parametrize("tile_size", [16, 4096])
def test_tile_size_limits_accepted(tile_size):
    (t,) = TileGrid("EPSG:32631", 10.0, tile_size).tiles((1.0, 1.0, 2.0, 2.0))
    assert t.size == tile_size and t.bounds == (0.0, 0.0, tile_size * 10.0, tile_size * 10.0)


@pytest.mark.parametrize("resolution", [0.0, -10.0, float("nan")])
def test_bad_resolution_refused(resolution):
    with pytest.raises(ValueError, match="resolution must be > 0 metres"):
        TileGrid("EPSG:32631", resolution)


@pytest.mark.parametrize("bbox", [(10.0, 0.0, 10.0, 5.0), (0.0, 5.0, 10.0, 5.0), (10.0, 0.0, 0.0, 5.0)])
def test_empty_bounds_refused(bbox):
    with pytest.raises(ValueError, match="empty bounds"):
        TileGrid("EPSG:32631", 10.0).tiles(bbox)
