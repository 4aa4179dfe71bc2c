"""STAC imagery: search a STAC API once per scene, then read only the COG windows each tile needs.

The split follows what runs where: `plan_scene` talks to the STAC API once per asset run and
returns plain, picklable data (the items chosen, their band hrefs, harmonisation offsets, CRS);
`read_mosaic` runs per tile, anywhere (a thread here, a Dask worker later), and opens each band's
COG through GDAL (`/vsis3/` for `s3://`, `/vsicurl/` for `http(s)://`), reading just the window.

Pixels come out in this project's convention for every source: uint16 surface reflectance x 10000,
0 = no data (a valid reflectance <= 0 is stored as 1, so it is never mistaken for no data).

By responsibility, as rio-tiler separates its errors, readers and models: `errors` (what failed, named),
`http` (retries of transient failures), `signing` (Planetary Computer's SAS tokens, and signed URLs cut
from whatever GDAL says), `settings` (the imagery settings of a run), `collections` (how each catalogue
names its assets and encodes its pixels), `search` (the STAC search and the scene plan, once per scene)
and `reads` (COG windows, per tile). This package's names are the public ones of all of them.
"""

from geo_assets.geo.grid import Bounds
from geo_assets.geo.stac.collections import (
    COLLECTIONS,
    NODATA,
    QA_CLOUD,
    QA_FILL,
    RESAMPLING,
    S2_BOA_ADD_OFFSET,
    SCL_CLOUD,
    SCL_NODATA,
    Collection,
    s2_dn_offset,
)
from geo_assets.geo.stac.errors import (
    CorruptObjectError,
    ImageryError,
    ItemMismatchError,
    NoItemsError,
    ObjectMissingError,
)
from geo_assets.geo.stac.http import TRANSIENT_STATUSES, HttpRetry
from geo_assets.geo.stac.reads import (
    close_datasets,
    gdal_env,
    gdal_path,
    read_mosaic,
    read_window,
    same_crs,
    to_reflectance,
)
from geo_assets.geo.stac.search import PlannedItem, declared_crs, plan_items, region_footprint_wgs84, search
from geo_assets.geo.stac.settings import DEFAULT_STAC_URLS, ImagerySettings
from geo_assets.geo.stac.signing import PC_TOKEN_URL, SasTokenSigner, blob_container

__all__ = [
    "Bounds",
    "COLLECTIONS",
    "Collection",
    "CorruptObjectError",
    "DEFAULT_STAC_URLS",
    "HttpRetry",
    "ImageryError",
    "ImagerySettings",
    "ItemMismatchError",
    "NODATA",
    "NoItemsError",
    "ObjectMissingError",
    "PC_TOKEN_URL",
    "PlannedItem",
    "QA_CLOUD",
    "QA_FILL",
    "RESAMPLING",
    "S2_BOA_ADD_OFFSET",
    "SCL_CLOUD",
    "SCL_NODATA",
    "SasTokenSigner",
    "TRANSIENT_STATUSES",
    "blob_container",
    "close_datasets",
    "declared_crs",
    "gdal_env",
    "gdal_path",
    "plan_items",
    "read_mosaic",
    "read_window",
    "region_footprint_wgs84",
    "s2_dn_offset",
    "same_crs",
    "search",
    "to_reflectance",
]
