"""The ground of a set of tiles: unions of tile boxes, compared across CRSs by their area on the ellipsoid."""

import pytest
from pyproj import Transformer
from shapely import transform
from shapely.geometry import mapping, shape

from geo_assets.geo.ground import format_area, shared_area, tile_ground, tiles_on

# Two 640 m tiles side by side in UTM 31N, and the eastern one alone.
PAIR = tile_ground("EPSG:32631", [(400000, 5120000, 400640, 5120640), (400640, 5120000, 401280, 5120640)])
EAST = tile_ground("EPSG:32631", [(400640, 5120000, 401280, 5120640)])


def _moved(ground: dict, crs: str) -> dict:
    project = Transformer.from_crs(ground["crs"], crs, always_xy=True).transform
    return {"crs": crs, "geometry": mapping(transform(shape(ground["geometry"]), project, interleaved=False))}


def test_shared_ground_is_the_tiles_area_on_the_ellipsoid():
    # 640 m x 640 m in UTM, 100 km off the central meridian: the ground is 0.06 % larger than the map says.
    assert shared_area(PAIR, EAST) == pytest.approx(409_829, abs=2)
    assert format_area(shared_area(PAIR, EAST)) == "0.410 km²"


def test_touching_or_apart_grounds_share_nothing():
    west = tile_ground("EPSG:32631", [(400000, 5120000, 400640, 5120640)])
    assert shared_area(west, EAST) == 0.0  # they share an edge, no ground
    far = tile_ground("EPSG:32621", [(731985, -2816025, 740000, -2784975)])  # Brazil, another zone
    assert shared_area(far, PAIR) == 0.0 and shared_area(PAIR, far) == 0.0


def test_the_same_ground_in_a_neighbouring_zone_is_found_with_its_tiles():
    across = _moved(EAST, "EPSG:32632")  # the eastern tile as a zone-32 region would record it
    assert shared_area(across, PAIR) == pytest.approx(409_829, rel=1e-4)
    assert shared_area(PAIR, across) == pytest.approx(409_829, rel=1e-4)
    tiles = [("625_0", (400000, 5120000, 400640, 5120640)), ("626_0", (400640, 5120000, 401280, 5120640))]
    assert tiles_on(across, "EPSG:32631", tiles) == ["626_0"]


def test_a_margin_grows_the_ground_read():
    west = tile_ground("EPSG:32631", [(400000, 5120000, 400640, 5120640)], margin=320)
    assert shared_area(west, EAST) == pytest.approx(320 * 640 * 1.0006, rel=1e-3)
    with pytest.raises(ValueError, match="margin must be a finite, non-negative distance"):
        tile_ground("EPSG:32631", [(0, 0, 1, 1)], margin=-1)
    with pytest.raises(ValueError, match="a set that reads no tile covers no ground"):
        tile_ground("EPSG:32631", [])
