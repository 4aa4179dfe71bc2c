"""Regions and credentials shared by the STAC tests (a module of its own: every test folder has a conftest)."""

from geo_assets.geo.grid import TileGrid
from geo_assets.geo.regions import Region

ACCESS_KEY, SECRET_KEY = "geo-assets-test", "geo-assets-test-secret"
# 2 x 2 tiles of 64 px on the grid, inside the Sentinel-2 sample (10 m, EPSG:32719) ...
S2_REGION = Region("es-field", (600320.0, 4698240.0, 601600.0, 4699520.0), "EPSG:32719", "earth-search", None, ("2024-06-01",))
# ... and inside the Landsat clips (30 m, EPSG:32621), where the two scenes overlap and one has gaps.
L8_REGION = Region("l8-field", (733440.0, -2789760.0, 737280.0, -2785920.0), "EPSG:32621", "landsat-c2", None, ("2020-05-18",))


def tiles(region: Region, resolution: float, size: int = 64):
    return TileGrid(region.crs, resolution, size).tiles(region.bbox)
