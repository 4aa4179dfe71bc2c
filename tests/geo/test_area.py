"""Pixel areas on the ground, against the geodesic area of the same box (another way of measuring)."""

import pyproj
import pytest

from devtools.geodesy import box_area_m2
from geo_assets.geo.area import GroundArea


@pytest.mark.parametrize(
    "crs, lat, res, size",
    [
        ("EPSG:3857", 45.0, 10.0, 256),  # Web Mercator: half the projected area at 45°
        ("EPSG:3857", 60.0, 30.0, 1000),  # a 30 km tile far north, blocks cut short at its edge
        ("EPSG:32631", 45.0, 10.0, 256),  # UTM near its central meridian: k² = 0.9992
        ("EPSG:32631", 45.0, 10.0, 64),
    ],
)
def test_a_tiles_pixels_add_up_to_its_ground(crs, lat, res, size):
    x, y = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(2.0, lat)
    bounds = (x, y, x + res * size, y + res * size)
    areas = GroundArea(crs).pixels(bounds, (size, size))
    assert areas.shape == (size, size)
    assert areas.sum() == pytest.approx(box_area_m2(bounds, crs), rel=1e-8)
    if crs == "EPSG:3857" and lat == 45.0:
        assert areas.sum() / (res * size) ** 2 == pytest.approx(0.5, abs=0.002)


def test_outside_the_projections_domain_is_refused():
    with pytest.raises(ValueError, match="EPSG:32631 has no ground area over tile"):
        GroundArea("EPSG:32631").pixels((2e7, 0.0, 2e7 + 100.0, 100.0), (16, 16))  # half the earth east of the zone
    with pytest.raises(ValueError, match="is not projected"):
        GroundArea("EPSG:4326")
