"""Collections: how each catalogue names its assets and encodes its pixels."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rasterio.enums import Resampling

from geo_assets.geo.stac.errors import ItemMismatchError

NODATA = 0


@dataclass(frozen=True)
class Collection:
    source: str  # our source name
    collection: str  # the STAC collection id
    assets: Mapping[str, str]  # our band name -> asset key
    mask: str  # asset key of the per-pixel quality band
    kind: str  # "sentinel-2" (SCL, BOA offset) or "landsat" (QA_PIXEL, scale/offset)
    resolution: float  # the tile grid's metres per pixel
    signed: bool = False  # hrefs need signing at read time (Planetary Computer)
    origin: tuple[float, float] = (0.0, 0.0)  # a pixel corner of the collection's native lattice


_S2_BANDS = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "swir1": "B11", "swir2": "B12"}
COLLECTIONS = {
    c.source: c
    for c in (
        Collection(
            "earth-search",
            "sentinel-2-l2a",
            {"blue": "blue", "green": "green", "red": "red", "nir": "nir", "swir1": "swir16", "swir2": "swir22"},
            "scl",
            "sentinel-2",
            10.0,
        ),
        Collection("planetary-computer", "sentinel-2-l2a", _S2_BANDS, "SCL", "sentinel-2", 10.0, signed=True),
        Collection(
            "landsat-c2",
            "landsat-c2l2-sr",
            {"blue": "blue", "green": "green", "red": "red", "nir": "nir08", "swir1": "swir16", "swir2": "swir22"},
            "qa_pixel",
            "landsat",
            30.0,
            origin=(15.0, 15.0),  # Collection 2 pixel corners: 15 + 30k m
        ),
    )
}

# Sentinel-2 scene classification: 3 cloud shadow, 8/9 cloud medium/high probability, 10 thin cirrus.
SCL_CLOUD = (3, 8, 9, 10)
SCL_NODATA = 0
# Landsat C2 QA_PIXEL bits: 0 fill; 1 dilated cloud, 3 cloud, 4 cloud shadow.
QA_FILL = 1 << 0
QA_CLOUD = (1 << 1) | (1 << 3) | (1 << 4)
# Landsat C2 L2 surface reflectance = DN * 2.75e-05 - 0.2 (USGS, constant for the collection).
LANDSAT_SCALE, LANDSAT_OFFSET = 2.75e-05, -0.2
S2_BOA_ADD_OFFSET = 1000  # DN added from processing baseline 04.00 (2022-01-25) on
# Where an item's pixels are not on the tile lattice (another CRS): reflectance is interpolated,
# bit-coded quality masks are never (an average of QA bits means nothing).
RESAMPLING = {"reflectance": Resampling.bilinear, "mask": Resampling.nearest}


def s2_dn_offset(properties: Mapping, asset: Mapping) -> int:
    """DN to subtract from a Sentinel-2 L2A band so that DN = reflectance x 10000, decided once per item.

    From processing baseline 04.00 the L2A DN carry +1000 (BOA_ADD_OFFSET = -1000). Catalogues
    disagree on whether they removed it: Earth Search re-processed some items with the offset
    already subtracted from the pixels and marks them `earthsearch:boa_offset_applied: true`,
    while its `raster:bands` offset says -0.1 on harmonised and raw items alike. So the item's
    own properties decide, in this order:

    1. `earthsearch:boa_offset_applied` (or v0's `sentinel:boa_offset_applied`) true: 0.
    2. `s2:processing_baseline` known: < 04.00 -> 0; >= 04.00 -> the `raster:bands` offset in DN
       (-offset / scale) when it declares a negative one, else 1000.
    3. No baseline: the `raster:bands` offset in DN, else 0.
    """
    if (
        properties.get("earthsearch:boa_offset_applied") is True
        or properties.get("sentinel:boa_offset_applied") is True
    ):
        return 0
    declared = 0
    bands = asset.get("raster:bands") or [{}]
    offset, scale = bands[0].get("offset"), bands[0].get("scale") or 1e-4
    if offset is not None and offset < 0:
        declared = int(round(-offset / scale))
    baseline = properties.get("s2:processing_baseline", properties.get("sentinel:processing_baseline"))
    if baseline is None:
        return declared
    try:
        baseline = float(baseline)
    except (TypeError, ValueError):
        raise ItemMismatchError(f"unreadable s2:processing_baseline {baseline!r}") from None
    return (declared or S2_BOA_ADD_OFFSET) if baseline >= 4.0 else 0
