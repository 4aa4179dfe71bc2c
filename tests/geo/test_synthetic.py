"""Synthetic scenes: deterministic, window-consistent, Sentinel-2-like."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from geo_assets.geo import synthetic
from geo_assets.geo.landcover import CLASSES

REGION, DATE = "synth-train-a", "2024-06-01"
# 512 x 384 px at 10 m, in EPSG:32631 (values are whole metres, so pixel centres are exact).
BIG = (399360.0, 5120000.0, 404480.0, 5123840.0)
WATER, VEG, BUILT, SOIL, CLOUD = (CLASSES.index(c) for c in ("water", "vegetation", "built-up", "bare-soil", "cloud"))
BLUE, GREEN, RED, NIR = range(4)


def _sub(bounds, col0, row0, cols, rows, res=10.0):
    """Bounds of a pixel window inside `bounds` and its numpy slice."""
    minx, _, _, maxy = bounds
    sub = (minx + col0 * res, maxy - (row0 + rows) * res, minx + (col0 + cols) * res, maxy - row0 * res)
    return sub, (slice(row0, row0 + rows), slice(col0, col0 + cols))


@pytest.fixture(scope="module")
def big():
    return synthetic.scene(REGION, DATE, BIG)


def test_shapes_and_dtypes(big):
    image, truth = big
    assert image.shape == (4, 384, 512) and image.dtype == np.uint16
    assert truth.shape == (384, 512) and truth.dtype == np.uint8
    assert truth.max() < len(CLASSES)
    lc = synthetic.land_cover(REGION, BIG)
    assert lc.shape == (384, 512) and lc.dtype == np.uint8
    cm = synthetic.cloud_mask(REGION, DATE, BIG)
    assert cm.shape == (384, 512) and cm.dtype == bool
    six, _ = synthetic.scene(REGION, DATE, BIG, bands=synthetic.BANDS)
    assert six.shape == (6, 384, 512)
    # Band selection picks the same band planes, in the order asked for: a band's pixels do not
    # depend on which other bands were requested.
    two, _ = synthetic.scene(REGION, DATE, BIG, bands=["nir", "blue"])
    np.testing.assert_array_equal(two, six[[3, 0]])
    np.testing.assert_array_equal(image, six[:4])  # the default bands
    (swir2,), _ = synthetic.scene(REGION, DATE, BIG, bands=("swir2",))
    np.testing.assert_array_equal(swir2, six[5])


def test_resolution_sets_pixel_count():
    img, truth = synthetic.scene(REGION, DATE, (0.0, 0.0, 600.0, 400.0), resolution=20.0)
    assert img.shape == (4, 20, 30) and truth.shape == (20, 30)


def test_same_inputs_give_identical_arrays(big):
    image, truth = synthetic.scene(REGION, DATE, BIG)
    np.testing.assert_array_equal(image, big[0])
    np.testing.assert_array_equal(truth, big[1])


def test_deterministic_across_processes():
    """Seeds come from sha256, not Python's per-process randomised hash()."""
    code = (
        "import hashlib; from geo_assets.geo import synthetic as s;"
        "i, t = s.scene('synth-train-a', '2024-06-01', (399360.0, 5120000.0, 400000.0, 5120640.0));"
        "print(hashlib.sha256(i.tobytes() + t.tobytes()).hexdigest())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    image, truth = synthetic.scene(REGION, DATE, (399360.0, 5120000.0, 400000.0, 5120640.0))
    import hashlib

    assert digests == {hashlib.sha256(image.tobytes() + truth.tobytes()).hexdigest()}


def test_different_region_differs(big):
    image, truth = synthetic.scene("synth-train-b", DATE, BIG)
    assert (truth != big[1]).mean() > 0.2
    assert not np.array_equal(image, big[0])
    assert (synthetic.land_cover("synth-train-b", BIG) != synthetic.land_cover(REGION, BIG)).mean() > 0.2


def test_different_date_differs_in_clouds_not_land_cover(big):
    image, truth = synthetic.scene(REGION, "2024-07-01", BIG)
    assert not np.array_equal(image, big[0])
    assert (synthetic.cloud_mask(REGION, "2024-07-01", BIG) != synthetic.cloud_mask(REGION, DATE, BIG)).mean() > 0.05
    # Land cover does not depend on the date; truth is land cover with clouds on top.
    lc = synthetic.land_cover(REGION, BIG)
    for date, t in ((DATE, big[1]), ("2024-07-01", truth)):
        cloudy = synthetic.cloud_mask(REGION, date, BIG)
        np.testing.assert_array_equal(t[~cloudy], lc[~cloudy])
        assert (t[cloudy] == CLOUD).all()
    assert not (lc == CLOUD).any()


@pytest.mark.parametrize(
    "col0, row0, cols, rows",
    [(0, 0, 512, 384), (0, 0, 64, 64), (37, 101, 200, 150), (311, 5, 201, 379), (500, 380, 12, 4)],
)
def test_window_equals_cut_from_bigger_scene(big, col0, row0, cols, rows):
    sub, sl = _sub(BIG, col0, row0, cols, rows)
    np.testing.assert_array_equal(synthetic.land_cover(REGION, sub), synthetic.land_cover(REGION, BIG)[sl])
    np.testing.assert_array_equal(synthetic.cloud_mask(REGION, DATE, sub), synthetic.cloud_mask(REGION, DATE, BIG)[sl])
    np.testing.assert_array_equal(synthetic.truth(REGION, DATE, sub), big[1][sl])
    # The image's sensor noise is seeded by the window bounds; its truth still matches.
    image, truth = synthetic.scene(REGION, DATE, sub)
    np.testing.assert_array_equal(truth, big[1][sl])
    assert image.shape == (4, rows, cols)
    # The noise-free part (class spectra) agrees: pixel values stay within +-15 % (texture 12 %
    # plus noise) of the big scene's value for the same pixel, on average much closer.
    diff = np.abs(image.astype(float) - big[0][(slice(None), *sl)].astype(float))
    assert np.median(diff / big[0][(slice(None), *sl)]) < 0.1


def test_window_consistency_with_negative_northings():
    region, date = "negative-north", "2020-05-18"
    bounds = (732000.0, -2816000.0, 737120.0, -2811000.0)
    sub, sl = _sub(bounds, 123, 45, 200, 301)
    np.testing.assert_array_equal(synthetic.truth(region, date, sub), synthetic.truth(region, date, bounds)[sl])
    # Windows straddling the CRS origin (negative and positive coordinates) are consistent too.
    around0 = (-2560.0, -2560.0, 2560.0, 2560.0)
    sub, sl = _sub(around0, 200, 200, 112, 112)
    np.testing.assert_array_equal(synthetic.truth(region, date, sub), synthetic.truth(region, date, around0)[sl])


def test_identical_bounds_give_identical_image_and_different_bounds_different_noise(big):
    sub, sl = _sub(BIG, 10, 10, 100, 100)
    a, _ = synthetic.scene(REGION, DATE, sub)
    b, _ = synthetic.scene(REGION, DATE, tuple(sub))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, big[0][(slice(None), *sl)])  # the noise is seeded per window


def test_no_zero_pixels_nodata_never_produced():
    # A water-heavy window and all six bands, including the darkest (SWIR2 over water: 60 DN).
    image, truth = synthetic.scene(REGION, DATE, BIG, bands=synthetic.BANDS)
    assert (truth == WATER).mean() > 0.02
    assert synthetic.NODATA == 0
    assert image.min() >= 1
    # Clipping at 1 actually happens for the darkest class: the test exercises the clip.
    assert (image[5][truth == WATER] == 1).any()


@pytest.fixture(scope="module")
def full_scene(regions):
    region = regions[REGION]
    return synthetic.scene(REGION, DATE, region.bbox)


def test_full_builtin_scene_has_all_classes(full_scene):
    image, truth = full_scene
    assert truth.shape == (1024, 1024)
    fractions = np.bincount(truth.ravel(), minlength=len(CLASSES)) / truth.size
    assert len(fractions) == len(CLASSES)
    assert (fractions > 0.02).all(), fractions


@pytest.mark.parametrize("name", ["synth-train-b", "synth-holdout"])
def test_other_builtin_regions_have_all_classes(regions, name):
    region = regions[name]
    truth = synthetic.truth(name, region.dates[0], region.bbox)
    assert truth.shape == (1024, 1024)
    assert set(np.unique(truth)) == set(range(len(CLASSES)))


def test_class_spectra_are_plausible(full_scene):
    image, truth = full_scene
    img = image.astype(np.float64)
    veg, water, cloud = truth == VEG, truth == WATER, truth == CLOUD
    assert veg.any() and water.any() and cloud.any()
    ndvi = (img[NIR] - img[RED]) / (img[NIR] + img[RED])
    # Vegetation: NIR far above red (>= 55 % canopy), bare soil barely green (<= 10 % canopy).
    assert (img[NIR][veg] > img[RED][veg]).all() and np.percentile(ndvi[veg], 1) > 0.25
    assert np.median(ndvi[truth == SOIL]) < 0.25
    # Water: NIR absorbed, below green in practically every pixel, and on average far below.
    assert (img[NIR][water] < img[GREEN][water]).mean() > 0.97
    assert img[NIR][water].mean() < 0.5 * img[GREEN][water].mean()
    # Cloud: bright and white -- its median blue above 99 % of clear pixels.
    assert np.median(img[BLUE][cloud]) > np.percentile(img[BLUE][~cloud], 99)
    # Bare soil reddens (red above blue), built-up is flatter (red / blue nearer 1).
    soil, built = truth == SOIL, truth == BUILT
    assert np.median(img[RED][soil] / img[BLUE][soil]) > np.median(img[RED][built] / img[BLUE][built]) + 0.2


def test_spectra_are_drawn_from_the_real_reflectance_library(full_scene):
    """Each patch of ground takes one library spectrum of its class: spectra vary from patch to
    patch as real surfaces do (not one mean per class), and stay within the library's range."""
    image, truth = full_scene
    library = synthetic.library()
    assert {c: len(v) for c, v in library.items()} == {
        "water": 4,
        "vegetation": 64,
        "built-up": 64,
        "bare-soil": 64,
        "cloud": 3,
    }
    for cls, name in enumerate(CLASSES):
        pixels = image[:, truth == cls].astype(np.float64)
        if name in ("vegetation", "built-up", "bare-soil"):
            assert (pixels.std(axis=1) / pixels.mean(axis=1) > 0.2).all(), name  # many surfaces
        lo, hi = library[name][:, :4].min(axis=0), library[name][:, :4].max(axis=0)
        median = np.median(pixels, axis=1)
        assert ((median > 0.5 * lo) & (median < hi + 500)).all(), (name, median, lo, hi)


@pytest.mark.parametrize("bands", [["red", "thermal"], ["B4"], ("nir", "Red")])
def test_unknown_band_refused(bands):
    with pytest.raises(ValueError, match=r"unknown band\(s\) .* accepted: blue, green, red, nir, swir1, swir2"):
        synthetic.scene(REGION, DATE, BIG, bands=bands)
