"""region_report measures ground, not projected metres: the same ground near 45° N, as a region in its
UTM zone and as one in Web Mercator (EPSG:3857, where a projected metre is 1/cos(45°) = 1.41 ground
metres each way), launched with `geo-assets launch` against a real `dagster dev`, reports the same
area, each the geodesic area of its box within 0.05 % (rounding of km² to 4 decimals)."""

import pytest
from rasterio.warp import transform_bounds

from devtools.geodesy import box_area_m2
from geo_assets.cli.demo import only_output

DATE = "2024-06-01"
UTM = ("ground-utm", (499360.0, 4982400.0, 500640.0, 4983680.0), "EPSG:32631")  # 1.28 km square at 45° N, 3° E
# The same ground in Web Mercator: the box around the UTM square's edges (0.013 % more ground).
MERCATOR = (
    "ground-mercator",
    tuple(round(v, 2) for v in transform_bounds(UTM[2], "EPSG:3857", *UTM[1], densify_pts=101)),
    "EPSG:3857",
)


def _report(world, server, name, bbox, crs) -> dict:
    added = world.cli("region", "add", name, "--bbox", *map(str, bbox), "--crs", crs, "--source", "synthetic")
    assert added.returncode == 0, added.stdout + added.stderr
    launched = world.cli("launch", "--region", name, "--date", DATE, "--wait", "--url", server)
    assert launched.returncode == 0, launched.stdout + launched.stderr
    return world.store.read_json(only_output(world.store, "region_report", "landcover-unet", world.version, name, DATE))


def test_areas_are_ground_areas_in_any_projected_crs(world, server):
    reports = {crs: _report(world, server, name, bbox, crs) for name, bbox, crs in (UTM, MERCATOR)}
    totals = {crs: sum(r["areas_km2"].values()) + r["nodata_km2"] for crs, r in reports.items()}
    minx, miny, maxx, maxy = MERCATOR[1]
    projected = (maxx - minx) * (maxy - miny) / 1e6  # pixel count x res²: what was reported before
    assert totals["EPSG:3857"] / projected == pytest.approx(0.5, abs=0.01)  # cos²(45°), not 1
    for _, bbox, crs in (UTM, MERCATOR):
        assert totals[crs] == pytest.approx(box_area_m2(bbox, crs) / 1e6, rel=5e-4), crs
    assert totals["EPSG:3857"] == pytest.approx(totals["EPSG:32631"], rel=1e-3)  # the same ground, the same area
