"""Mosaics paste tiles of one grid exactly, one open file at a time."""

import resource

import numpy as np
import pytest
import rasterio
from affine import Affine

from geo_assets.geo.cog import CorruptRasterError, write_cog
from geo_assets.geo.mosaic import mosaic


def _tiles(tmp_path, cols=3, rows=2, px=32):
    tiles, full = [], np.arange(rows * px * cols * px, dtype=np.uint16).reshape(rows * px, cols * px)
    for r in range(rows):
        for c in range(cols):
            left, top = 1000 + c * px * 10, 5000 - r * px * 10
            path = tmp_path / f"{c}_{r}.tif"
            write_cog(path, full[r * px : (r + 1) * px, c * px : (c + 1) * px], "EPSG:32631",
                      Affine(10, 0, left, 0, -10, top), 0)
            tiles.append((str(path), (left, top - px * 10, left + px * 10, top)))
    return tiles, full


def test_mosaic_is_exact_and_georeferenced(tmp_path):
    tiles, full = _tiles(tmp_path)
    data, transform = mosaic(tiles[::-1], 0)  # order does not matter
    np.testing.assert_array_equal(data[0], full)
    assert transform == Affine(10, 0, 1000, 0, -10, 5000)


def test_missing_tiles_are_filled(tmp_path):
    tiles, full = _tiles(tmp_path)
    data, _ = mosaic(tiles[:1] + tiles[-1:], 7)
    assert data.shape == (1, 64, 96)
    assert (data[0, 32:, :32] == 7).all() and (data[0, :32, 32:64] == 7).all()
    np.testing.assert_array_equal(data[0, 32:, 64:], full[32:, 64:])


def test_decimation(tmp_path):
    tiles, _ = _tiles(tmp_path)
    data, transform = mosaic(tiles, 0, factor=4)
    assert data.shape == (1, 16, 24) and transform.a == 40


def test_more_tiles_than_the_open_file_limit(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    tiles, full = _tiles(tmp_path, cols=12, rows=8, px=16)  # 96 tiles
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    try:
        data, _ = mosaic(tiles, 0)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    np.testing.assert_array_equal(data[0], full)


def test_corrupt_tile_is_named(tmp_path):
    tiles, _ = _tiles(tmp_path)
    with open(tiles[2][0], "r+b") as f:
        f.truncate(200)
    with pytest.raises(CorruptRasterError, match="2_0.tif"):
        mosaic(tiles, 0)
