"""Footprint weights and the spectral-index reference: what region_report counts."""

from __future__ import annotations

import numpy as np
import pytest

from geo_assets.geo import indices
from geo_assets.geo.footprint import coverage
from geo_assets.geo.landcover import IGNORE


def test_coverage_counts_each_pixel_by_its_part_inside_the_box():
    # A 4 x 4 tile of 10 m pixels, a box cutting pixels at 5 m and 2 m from their edges.
    w = coverage((0.0, 0.0, 40.0, 40.0), (4, 4), (5.0, 5.0, 40.0, 22.0))
    assert w.sum() * 100 == pytest.approx(35 * 17)  # the box's area, exactly
    np.testing.assert_allclose(w[:, 0], [0, 0.1, 0.5, 0.25])  # west column: half inside in x
    np.testing.assert_allclose(w[1], [0.1, 0.2, 0.2, 0.2])  # row 20-30 m: 2 m of 10 inside
    assert coverage((0.0, 0.0, 40.0, 40.0), (4, 4), (100.0, 100.0, 200.0, 200.0)).sum() == 0
    assert (coverage((0.0, 0.0, 40.0, 40.0), (4, 4), (-1.0, -1.0, 41.0, 41.0)) == 1).all()


def _pixels(**bands):
    names = list(bands)
    return np.array([[bands[b]] for b in names], dtype=np.uint16).reshape(len(names), 1, -1), names


def test_index_reference_rules_and_thresholds():
    # water (MNDWI > 0), vegetation (NDVI > 0.3), bare soil (BSI > 0, NDVI < 0.2), other, no data
    data, names = _pixels(
        blue=[500, 300, 900, 1000, 0],
        green=[700, 800, 1200, 1000, 0],
        red=[400, 300, 1600, 1000, 0],
        nir=[200, 4000, 2200, 1100, 0],
        swir1=[100, 1800, 3200, 1050, 0],
        swir2=[80, 800, 2700, 1000, 0],
    )
    ref = indices.reference_classes(data, names)[0]
    assert [indices.REFERENCE_CLASSES[c] if c != IGNORE else None for c in ref] == [
        "water",
        "vegetation",
        "bare-soil",
        "other",
        None,
    ]
    assert indices.describe(names) == (
        "water: MNDWI > 0; vegetation: NDVI > 0.3; bare-soil: BSI > 0 and NDVI < 0.2; other: the rest"
    )


def test_index_reference_says_which_rules_the_bands_allow():
    data, names = _pixels(blue=[300, 900], green=[800, 1000], red=[300, 1200])
    assert [indices.REFERENCE_CLASSES[c] for c in indices.reference_classes(data, names)[0]] == ["vegetation", "other"]
    assert indices.describe(names) == (
        "vegetation: GRVI > 0; no rule for water, bare-soil (the imagery lacks the bands); other: the rest"
    )
    assert indices.describe(["blue", "green", "red", "nir"]).startswith("water: NDWI > 0; vegetation: NDVI > 0.3")
