"""Regions and credentials shared by the STAC tests (a module of its own: every test folder has a conftest)."""

from geo_assets.geo.grid import TileGrid
from geo_assets.geo.regions import Region

ACCESS_KEY, SECRET_KEY = "geo-assets-test", "geo-assets-test-secret"
# 2 x 2 tiles of 64 px on the grid, inside the Sentinel-2 sample (10 m, EPSG:32719) ...
S2_REGION = Region(
    "es-field", (600320.0, 4698240.0, 601600.0, 4699520.0), "EPSG:32719", "earth-search", None, ("2024-06-01",)
)
# ... and inside the Landsat clips (30 m, EPSG:32621), where the two scenes overlap and one has gaps;
# on Landsat's own lattice (pixel corners on 15 + 30k m), where its tile grid is anchored.
L8_REGION = Region(
    "l8-field", (733455.0, -2789745.0, 737295.0, -2785905.0), "EPSG:32621", "landsat-c2", None, ("2020-05-18",)
)


def tiles(region: Region, resolution: float, size: int = 64):
    origin = (15.0, 15.0) if resolution == 30.0 else (0.0, 0.0)  # the Landsat and Sentinel-2 lattices
    return TileGrid(region.crs, resolution, size, origin).tiles(region.bbox)
