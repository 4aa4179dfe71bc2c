"""Pixel-exact tiles on the real samples: each tile pixel is the source pixel at its ground coordinate.

Expected values are computed here from the shipped files with rasterio's own georeferencing
(`rowcol` of each tile pixel's centre), independently of the reader, and converted with the
documented formulas (Sentinel-2 L2A: DN as is; Landsat 8 L1TP: OLI top-of-atmosphere reflectance
less a dark-object haze).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
from rasterio.transform import rowcol

from geo_assets.geo import sample
from geo_assets.geo.grid import TileGrid
from geo_assets.geo.sources import get_source

DATE = {"s2-sample": "2020-01-01", "landsat-sample": "2020-05-18"}
HAZE = {"blue": 0.0699, "green": 0.0384, "red": 0.0196}  # Landsat sample: DOS1, derived in test_sample


def _expected(scene: sample.SampleScene, tile, bands: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(reflectance x 10000 uint16, valid) at the centres of the tile's pixels, first valid file wins."""
    rows, cols = np.mgrid[0 : tile.size, 0 : tile.size]
    xs, ys = tile.transform * (cols.ravel() + 0.5, rows.ravel() + 0.5)
    dn = np.zeros((len(bands), tile.size * tile.size))
    valid = np.zeros(tile.size * tile.size, dtype=bool)
    for name in scene.files:
        with rasterio.open(sample.sample_path(name)) as src:
            data = src.read([scene.bands.index(b) + 1 for b in bands]).astype(np.float64)
            r, c = (np.asarray(v) for v in rowcol(src.transform, xs, ys))
            inside = (r >= 0) & (r < src.height) & (c >= 0) & (c < src.width)
            values = np.zeros_like(dn)
            values[:, inside] = data[:, r[inside], c[inside]]
            ok = inside & np.isfinite(values).all(axis=0) & (values != 0).all(axis=0)
            take = ok & ~valid
            dn[:, take] = values[:, take]
            valid |= take
    if scene.name == "landsat8":  # OLI L1: (2e-5 DN - 0.1) / sin(sun elevation), less the dark object's haze
        haze = np.array([HAZE[b] for b in bands])[:, None]
        refl = (2e-05 * dn - 0.1) / math.sin(math.radians(36.8)) - haze
    else:  # Sentinel-2 L2A DN are reflectance x 10000
        refl = dn / 10000
    out = np.where(valid, np.clip(np.rint(refl * 10000), 1, 65535), 0).astype(np.uint16)
    return out.reshape(len(bands), tile.size, tile.size), valid.reshape(tile.size, tile.size)


@pytest.mark.parametrize("name", ["landsat-sample", "s2-sample"])
def test_every_tile_pixel_is_the_source_pixel_at_its_ground_coordinate(regions, name):
    region = regions[name]
    source = get_source("sample")
    spec = source.spec(region)
    scene = source.scene(region, DATE[name])
    bands = list(spec.bands)
    tiles = spec.grid(region.crs, 256).tiles(region.bbox)
    assert tiles
    for tile in tiles:
        window = scene.read(tile.bounds, bands)
        expected, valid = _expected(sample.SAMPLES[scene.sample], tile, bands)
        np.testing.assert_array_equal(window.valid, valid)
        np.testing.assert_array_equal(window.data, expected)
        assert window.data.dtype == np.uint16 and (window.data[:, ~valid] == 0).all()


def test_landsat_tiles_sit_on_landsat_s_lattice(regions):
    """Collection 2 pixel corners lie on 15 + 30k m; so do the sample's, and so do its tile edges."""
    region = regions["landsat-sample"]
    spec = get_source("sample").spec(region)
    assert spec.origin == (15.0, 15.0)
    with rasterio.open(sample.sample_path("landsat8")) as src:
        assert (src.transform.c % 30, src.transform.f % 30) == (15.0, 15.0)
    for tile in spec.grid(region.crs, 256).tiles(region.bbox):
        assert all((edge - 15.0) % 30.0 == 0 for edge in tile.bounds), tile
    assert get_source("landsat-c2").spec(region).origin == (15.0, 15.0)
    assert get_source("earth-search").spec(region).origin == (0.0, 0.0)


def test_a_grid_off_the_source_lattice_is_resampled_bilinear_not_shifted(regions):
    """Bounds that do not lie on the scene's lattice are warped with bilinear resampling: a pixel
    half-way between two source pixels is their mean, not a copy of one of them shifted 15 m."""
    region = regions["landsat-sample"]
    scene = get_source("sample").scene(region, DATE["landsat-sample"])
    on = (737295.0, -2797905.0, 737295.0 + 30 * 8, -2797905.0 + 30 * 8)  # on the lattice, 8 x 8 px
    off = (on[0] + 15.0, on[1], on[2] + 15.0, on[3])  # half a pixel east
    a = scene.read(on, ["red"]).data[0].astype(float)
    b = scene.read(off, ["red"]).data[0].astype(float)
    np.testing.assert_allclose(b[:, :-1], (a[:, :-1] + a[:, 1:]) / 2, atol=1.0)


def test_grid_origin_names_a_lattice():
    assert TileGrid("EPSG:32621", 30.0, 256, (731985.0, -2784975.0)).origin == (15.0, 15.0)
    assert TileGrid("EPSG:32621", 30.0, 256, (-15.0, 45.0)).origin == (15.0, 15.0)
    (tile,) = TileGrid("EPSG:32621", 30.0, 16, (15.0, 15.0)).tiles((100.0, 100.0, 101.0, 101.0))
    assert tile.bounds == (15.0, 15.0, 495.0, 495.0)
    with pytest.raises(ValueError, match="origin must be a finite"):
        TileGrid("EPSG:32621", 30.0, 256, (float("nan"), 0.0))
