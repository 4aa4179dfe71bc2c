"""A region across the antimeridian is searched as GeoJSON asks: two polygons, one each side of
180°, never one ring that spans the globe (which would match every item on its latitudes)."""

from __future__ import annotations

import json

import shapely.geometry

from devtools.emulators.stac import stac_api
from geo_assets.geo import stac
from geo_assets.geo.stac import COLLECTIONS, HttpRetry

BOX, CRS = (650000.0, 6650000.0, 700000.0, 6700000.0), "EPSG:32660"  # UTM 60N, 50 km square across 180° at 60° N


def _item(item_id: str, west: float, east: float) -> dict:
    ring = [[west, 60.0], [east, 60.0], [east, 60.4], [west, 60.4], [west, 60.0]]
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item_id,
        "collection": "sentinel-2-l2a",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": [west, 60.0, east, 60.4],
        "properties": {"datetime": "2024-06-01T00:00:00Z", "eo:cloud_cover": 1.0},
        "links": [],
        "assets": {},
    }


def test_the_footprint_is_split_at_the_antimeridian():
    footprint = shapely.geometry.shape(stac.region_footprint_wgs84(BOX, CRS))
    assert footprint.geom_type == "MultiPolygon" and footprint.is_valid
    east, west = sorted(footprint.geoms, key=lambda g: -g.bounds[0])
    assert 179.6 < east.bounds[0] and east.bounds[2] == 180.0
    assert west.bounds[0] == -180.0 and west.bounds[2] < -179.3
    assert footprint.area < 0.5  # square degrees: a 50 km box, not a band round the globe


def test_a_search_across_the_antimeridian_finds_both_sides_and_nothing_else(tmp_path):
    items = [_item("EAST", 179.5, 179.99), _item("WEST", -179.99, -179.5), _item("GREENWICH", -0.5, 0.5)]
    (tmp_path / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    with stac_api(tmp_path, [tmp_path / "items.json"]) as url:
        found = stac.search(
            COLLECTIONS["earth-search"],
            url,
            BOX,
            CRS,
            "2024-06-01",
            100.0,
            HttpRetry(retries=1, backoff_s=0.05, timeout_s=10.0),
        )
    assert sorted(f["id"] for f in found) == ["EAST", "WEST"]
