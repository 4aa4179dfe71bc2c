"""STAC imagery: search a STAC API once per scene, then read only the COG windows each tile needs.

The split follows what runs where: `plan_scene` talks to the STAC API once per asset run and
returns plain, picklable data (the items chosen, their band hrefs, harmonisation offsets, CRS);
`read_mosaic` runs per tile, anywhere (a thread here, a Dask worker later), and opens each band's
COG through GDAL (`/vsis3/` for `s3://`, `/vsicurl/` for `http(s)://`), reading just the window.

Pixels come out in this project's convention for every source: uint16 surface reflectance x 10000,
0 = no data (a valid reflectance <= 0 is stored as 1, so it is never mistaken for no data).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
import threading
import time
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache, partial
from typing import Any, cast
from urllib.parse import urlsplit

import antimeridian
import numpy as np
import pyproj
import rasterio
import shapely.geometry
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.session import AWSSession
from rasterio.transform import from_origin
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window as RasterWindow
from shapely.geometry import Polygon
from urllib3.util.retry import Retry

from geo_assets.geo import retries

log = logging.getLogger(__name__)

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

Bounds = tuple[float, float, float, float]

DEFAULT_STAC_URLS = {
    "earth-search": "https://earth-search.aws.element84.com/v1",
    "planetary-computer": "https://planetarycomputer.microsoft.com/api/stac/v1",
    "landsat-c2": "https://landsatlook.usgs.gov/stac-server",
}
PC_TOKEN_URL = "https://planetarycomputer.microsoft.com/api/sas/v1/token/{account}/{container}"
TRANSIENT_STATUSES = (429, 500, 502, 503, 504)  # retried; any other 4xx is an answer, not a hiccup
NODATA = 0


# ---------------------------------------------------------------------------------------------
# Errors: each names the object (collection, item, href) and the problem.


class ImageryError(RuntimeError):
    """Imagery could not be found or read; the message names the object and the problem."""


class NoItemsError(ImageryError):
    """A search found nothing for the region, date and cloud limit."""


class ItemMismatchError(ImageryError):
    """An item lacks a band asked for, or its COG is not in the CRS the item declares."""


class ObjectMissingError(ImageryError):
    """A band's object does not exist."""


class CorruptObjectError(ImageryError):
    """A band's object exists but is not a readable GeoTIFF (corrupt or truncated)."""


# ---------------------------------------------------------------------------------------------
# Settings: plain and picklable, built by the `imagery` Dagster resource.


@dataclass(frozen=True)
class HttpRetry:
    """Retries of transient HTTP failures (timeouts, 429, 5xx) with exponential backoff."""

    retries: int = 3
    backoff_s: float = 0.5  # first wait; doubles each retry
    timeout_s: float = 30.0

    def urllib3(self) -> Retry:
        # status_forcelist limits status retries to transient ones: a 4xx other than 429 is final.
        return Retry(
            total=self.retries,
            connect=self.retries,
            read=self.retries,
            status=self.retries,
            backoff_factor=self.backoff_s,
            status_forcelist=TRANSIENT_STATUSES,
            allowed_methods=None,  # STAC searches are POSTs, and idempotent
            raise_on_status=False,  # after the last try, hand back the response so its status is reported
        )

    def gdal(self) -> dict[str, str]:
        # GDAL retries these codes (and curl timeouts) only, doubling the delay each time.
        return {
            "GDAL_HTTP_MAX_RETRY": str(self.retries),
            "GDAL_HTTP_RETRY_DELAY": str(self.backoff_s),
            "GDAL_HTTP_RETRY_CODES": ",".join(map(str, TRANSIENT_STATUSES)),
            "GDAL_HTTP_TIMEOUT": str(max(1, math.ceil(self.timeout_s))),
        }


@dataclass(frozen=True)
class ImagerySettings:
    """Where the STAC APIs are and how to read the buckets their items point at.

    The S3 fields are for the *source* buckets (sentinel-cogs, usgs-landsat), not our output storage.
    `signer` signs Planetary Computer hrefs at read time; None uses `SasTokenSigner(pc_token_url)`.
    Give a picklable one (a top-level function or object) when tiles are read in other processes.
    """

    stac_urls: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_STAC_URLS))
    s3_endpoint: str | None = None  # e.g. "http://127.0.0.1:8333"; None: AWS
    s3_region: str | None = "us-west-2"  # None: the SDK's own (a store built with no region)
    s3_no_sign: bool = True  # sentinel-cogs is public; usgs-landsat needs credentials and requester pays
    s3_access_key: str | None = field(default=None, repr=False)
    s3_secret_key: str | None = field(default=None, repr=False)
    s3_requester_pays: bool = False
    pc_token_url: str = PC_TOKEN_URL
    http: HttpRetry = HttpRetry()
    signer: Callable[[str], str] | None = None

    def url(self, source: str) -> str:
        try:
            return self.stac_urls[source].rstrip("/")
        except KeyError:
            raise ValueError(
                f"no STAC API URL configured for source {source!r}; configured: {sorted(self.stac_urls)}"
            ) from None

    def href_signer(self) -> Callable[[str], str]:
        return self.signer or SasTokenSigner(self.pc_token_url, self.http)


# ---------------------------------------------------------------------------------------------
# Planetary Computer signing: a SAS token per storage account and container, fetched lazily.

_TOKENS: dict[tuple[str, str, str], tuple[str, float]] = {}  # (token url, account, container) -> (token, expiry)
_TOKENS_LOCK = threading.Lock()


def blob_container(href: str) -> tuple[str, str]:
    """(storage account, container) of an Azure blob URL.

    `https://{account}.blob.core.windows.net/{container}/{blob}`, or the path style of Azure
    emulators (Azurite): `http://host:port/{account}/{container}/{blob}`.
    """
    parts = urlsplit(href)
    path = parts.path.lstrip("/").split("/")
    host = parts.hostname or ""
    if host.endswith(".blob.core.windows.net") and path[0]:
        return host.split(".", 1)[0], path[0]
    if len(path) >= 3 and path[0] and path[1]:
        return path[0], path[1]
    raise ValueError(f"cannot tell the storage account and container of {href!r}")


@dataclass(frozen=True)
class SasTokenSigner:
    """Appends a SAS token from a token endpoint (Planetary Computer's by default) to blob hrefs.

    Tokens are cached per process until `refresh_margin_s` before their `msft:expiry`, so a scene
    signs once per container and hour, not once per read; the cache lives at module level so the
    signer itself stays picklable for workers.
    """

    token_url: str = PC_TOKEN_URL  # with {account} and {container}
    http: HttpRetry = HttpRetry()
    refresh_margin_s: float = 300.0

    def __call__(self, href: str) -> str:
        account, container = blob_container(href)
        token = self.token(account, container)
        return f"{href}{'&' if '?' in href else '?'}{token}"

    def token(self, account: str, container: str) -> str:
        key = (self.token_url, account, container)
        with _TOKENS_LOCK:  # one fetch at a time: threads reading tiles wait for the same token
            cached = _TOKENS.get(key)
            if cached and cached[1] - self.refresh_margin_s > time.time():
                return cached[0]
            token, expiry = self._fetch(account, container)
            _TOKENS[key] = (token, expiry)
            return token

    def _fetch(self, account: str, container: str) -> tuple[str, float]:
        import requests
        from requests.adapters import HTTPAdapter

        url = self.token_url.format(account=account, container=container)
        with requests.Session() as session:
            session.mount("http://", HTTPAdapter(max_retries=self.http.urllib3()))
            session.mount("https://", HTTPAdapter(max_retries=self.http.urllib3()))
            try:
                resp = session.get(url, timeout=self.http.timeout_s)
            except requests.RequestException as exc:
                raise ImageryError(f"SAS token request {url} failed: {exc}") from None
        if resp.status_code != 200:
            raise ImageryError(f"SAS token request {url} answered HTTP {resp.status_code}: {resp.text[:200]}")
        body = resp.json()
        try:
            expiry = datetime.fromisoformat(body["msft:expiry"].replace("Z", "+00:00")).timestamp()
            return body["token"], expiry
        except (KeyError, TypeError, ValueError):
            raise ImageryError(
                f"SAS token response from {url} lacks 'token' or 'msft:expiry': {str(body)[:200]}"
            ) from None


# ---------------------------------------------------------------------------------------------
# Collections: how each catalogue names its assets and encodes its pixels.


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


# ---------------------------------------------------------------------------------------------
# Search and plan (once per scene).


@dataclass(frozen=True)
class PlannedItem:
    """One STAC item as the tile reads need it: plain data, picklable."""

    id: str
    datetime: str
    cloud_cover: float | None
    crs: str | None  # as the item declares it (proj:code / proj:epsg); each COG is checked against it
    bounds: Bounds  # footprint bbox in the region's CRS: tiles outside it skip the item
    hrefs: Mapping[str, str]  # our band name, and "mask", -> href
    dn_offsets: Mapping[str, int]  # our band name -> DN to subtract (Sentinel-2 harmonisation)

    def describe(self) -> dict:
        return {
            "id": self.id,
            "datetime": self.datetime,
            "cloud_cover": self.cloud_cover,
            "crs": self.crs,
            "dn_offset": sorted(set(self.dn_offsets.values())),
        }


def region_footprint_wgs84(bbox: Bounds, crs: str, points_per_side: int = 16) -> dict:
    """The region's box as a GeoJSON polygon in WGS84, edges densified so it stays a true outline; a
    MultiPolygon of its two halves where it crosses the antimeridian (one ring would span the globe)."""
    minx, miny, maxx, maxy = bbox
    t = np.linspace(0.0, 1.0, points_per_side, endpoint=False)
    xs = np.concatenate(
        [minx + (maxx - minx) * t, np.full_like(t, maxx), maxx - (maxx - minx) * t, np.full_like(t, minx)]
    )
    ys = np.concatenate(
        [np.full_like(t, miny), miny + (maxy - miny) * t, np.full_like(t, maxy), maxy - (maxy - miny) * t]
    )
    lon, lat = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    ring = [[round(float(x), 8), round(float(y), 8)] for x, y in zip(lon, lat)]
    polygon = {"type": "Polygon", "coordinates": [ring + [ring[0]]]}
    if np.ptp(lon) > 180:  # the box crosses the antimeridian: split there, as GeoJSON asks (RFC 7946, 3.1.9)
        shell = cast(Polygon, shapely.geometry.shape(polygon))  # the shape of a GeoJSON Polygon
        polygon = shapely.geometry.mapping(antimeridian.fix_polygon(shell))
    return polygon


def search(
    collection: Collection, url: str, bbox: Bounds, crs: str, date: str, max_cloud: float, http: HttpRetry
) -> list[dict]:
    """The collection's items over the region's footprint on `date` (a whole UTC day), cloud cover <= max_cloud."""
    from pystac_client import Client
    from pystac_client.conformance import ConformanceClasses
    from pystac_client.exceptions import APIError
    from pystac_client.stac_api_io import StacApiIO

    footprint = region_footprint_wgs84(bbox, crs)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pystac-client warns about optional conformance classes
            client = Client.open(url, stac_io=StacApiIO(timeout=http.timeout_s, max_retries=http.urllib3()))
            query = None
            # Send the cloud limit to servers that implement the Query extension; check it here either way.
            if max_cloud < 100 and client.conforms_to(ConformanceClasses.QUERY):
                query = {"eo:cloud_cover": {"lte": max_cloud}}
            found = client.search(
                collections=[collection.collection],
                intersects=footprint,
                datetime=f"{date}T00:00:00Z/{date}T23:59:59.999999Z",
                query=query,
                max_items=1000,
            ).item_collection_as_dict()["features"]
    except APIError as exc:
        raise ImageryError(
            f"STAC search of collection {collection.collection!r} at {url} failed: {str(exc)[:500]}"
        ) from None
    items = [
        f
        for f in found
        if max_cloud >= 100
        or (f["properties"].get("eo:cloud_cover") is not None and f["properties"]["eo:cloud_cover"] <= max_cloud)
    ]
    if not items:
        lon_lat = transform_bounds(crs, "EPSG:4326", *bbox, densify_pts=21)
        raise NoItemsError(
            f"no {collection.collection!r} items at {url} over bbox {tuple(round(v, 5) for v in lon_lat)} (lon/lat; "
            f"{tuple(bbox)} in {crs}) on {date} with eo:cloud_cover <= {max_cloud:g}"
            + (f" ({len(found)} found above the cloud limit)" if found else "")
        )
    return items


def _asset_href(asset: Mapping) -> str:
    # Landsat Look's primary hrefs are https URLs behind a login; the same object is in its alternate s3 href.
    s3 = (asset.get("alternate") or {}).get("s3", {}).get("href")
    href = asset.get("href", "")
    return s3 if s3 and not href.startswith("s3://") else href


def declared_crs(properties: Mapping) -> str | None:
    if properties.get("proj:code"):
        return str(properties["proj:code"])
    if properties.get("proj:epsg"):
        return f"EPSG:{int(properties['proj:epsg'])}"
    return None


def _lon_lat_bbox(item: Mapping) -> Bounds:
    bbox = item.get("bbox")
    if bbox:
        return (bbox[0], bbox[1], bbox[3], bbox[4]) if len(bbox) == 6 else tuple(bbox)
    coords = np.array(_flatten(item["geometry"]["coordinates"]), dtype=float).reshape(-1, 2)
    return (*coords.min(axis=0), *coords.max(axis=0))


def _flatten(coords) -> list:
    if coords and isinstance(coords[0], (int, float)):
        return list(coords[:2])
    return [v for c in coords for v in _flatten(c)]


_REMOTE_HREF = ("s3://", "https://", "http://")


_METADATA_NAMES = frozenset({"metadata", "metadata.google.internal", "instance-data", "instance-data.ec2.internal"})


def _link_local(host: str) -> bool:
    """Whether `host` is a link-local address in any spelling curl accepts (dotted, one integer, hex,
    IPv4-mapped IPv6) or a cloud's metadata service name. A name that resolves to one is not caught."""
    host = host.strip("[]").lower()
    if host in _METADATA_NAMES:
        return True
    try:
        address = ipaddress.ip_address(int(host, 0) if host.isdigit() or host.startswith("0x") else host)
    except ValueError:  # a name, not an address
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_link_local or bool(mapped and mapped.is_link_local)


def _remote_href(item: Mapping, key: str, href: object) -> str:
    """An item's asset href as a STAC API gave it, if GDAL may open it: s3:// or http(s):// only. Anything
    else (a local path, file://, a GDAL virtual file system such as /vsimem/ or /vsicurl/) would have GDAL
    read, on the worker, a local file or whatever URL the API chose. An http(s) href to a link-local
    address or a cloud's metadata service name (169.254.169.254, metadata.google.internal) is refused too.
    Other http(s) hosts and s3:// buckets are read as the API names them, redirects followed: a STAC API is
    trusted to name its own objects."""
    if not isinstance(href, str) or not href.startswith(_REMOTE_HREF):
        raise ItemMismatchError(
            f"STAC item {item.get('id')!r}: asset {key!r} has href {str(href)[:200]!r}; only s3:// and "
            "http(s):// hrefs are read from a STAC API"
        )
    if _link_local(urlsplit(href).hostname or ""):
        raise ItemMismatchError(
            f"STAC item {item.get('id')!r}: asset {key!r} has href {href[:200]!r}, a link-local address "
            "(a metadata service): refused"
        )
    return href


def plan_items(
    collection: Collection, items: list[dict], bands: list[str], crs: str, *, remote: bool = True
) -> list[PlannedItem]:
    """Check each item has the bands asked for; fix its hrefs and offsets; order them for the mosaic.
    `remote`: the items came from a STAC API, whose hrefs must be remote (`_remote_href`); arrived items'
    hrefs were resolved inside the store already (geo/arrived_scenes.py).

    Mosaic order: eo:cloud_cover ascending, then datetime, then id (items without a cloud cover last).
    """
    planned = []
    for item in items:
        props, assets = item.get("properties", {}), item.get("assets", {})
        keys = {b: collection.assets[b] for b in bands} | {"mask": collection.mask}
        missing = [f"{key!r} (band {band})" for band, key in keys.items() if key not in assets]
        if missing:
            raise ItemMismatchError(
                f"STAC item {item.get('id')!r} of collection {collection.collection!r} has no asset {', '.join(missing)}; "
                f"bands asked for: {', '.join(bands)}; its assets: {', '.join(sorted(assets))}"
            )
        if collection.kind == "sentinel-2":
            offsets = {b: s2_dn_offset(props, assets[keys[b]]) for b in bands}
        else:
            offsets = {b: 0 for b in bands}
        lon0, lat0, lon1, lat1 = _lon_lat_bbox(item)
        planned.append(
            PlannedItem(
                id=item["id"],
                datetime=str(props.get("datetime")),
                cloud_cover=props.get("eo:cloud_cover"),
                crs=declared_crs(props),
                bounds=tuple(transform_bounds("EPSG:4326", crs, lon0, lat0, lon1, lat1, densify_pts=21)),
                hrefs={
                    k: _remote_href(item, key, _asset_href(assets[key])) if remote else _asset_href(assets[key])
                    for k, key in keys.items()
                },
                dn_offsets=offsets,
            )
        )
    return sorted(planned, key=lambda p: (p.cloud_cover is None, p.cloud_cover or 0.0, _instant(p.datetime), p.id))


def _instant(value: str) -> float:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return math.inf


# ---------------------------------------------------------------------------------------------
# Read (per tile).


@lru_cache(maxsize=8)
def _aws_session(
    no_sign: bool, access_key: str | None, secret_key: str | None, region: str | None, requester_pays: bool
) -> AWSSession:
    # Cached: building one creates a boto3 session, which is slow; rasterio only reads credentials from it.
    if no_sign:
        return AWSSession(aws_unsigned=True, region_name=region)
    return AWSSession(
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        requester_pays=requester_pays,
    )


# -- Signed hrefs: a token is a credential, and GDAL quotes the URL it read, query included, in its errors
# and warnings, whole or in part (a block read's error names only what follows the URL's last "/"). The
# pieces of every signed query read lately are kept, to be cut from whatever GDAL says: our errors, and
# rasterio's log lines of GDAL's words.

_QUERY = re.compile(r"(https?://[^\s'\"?]+)\?[^\s'\"]*")  # a URL's query
_SIGNED: OrderedDict[str, None] = OrderedDict()  # pieces of signed queries, most recent last
_SIGNED_MAX = 1024
_SIGNED_LOCK = threading.Lock()


# Query parameters of signed URLs (Azure SAS, S3 and GCS presigned) that are no secret: dates, versions,
# permissions. Every other value, and each part of it between "/" (GDAL may quote only what follows the last
# one), is cut where it is 6 characters or more.
_NOT_SECRET = frozenset(
    """sv st se sp sr spr srt ss rscc rscd rsce rscl rsct x-amz-algorithm x-amz-date x-amz-expires
    x-amz-signedheaders x-goog-algorithm x-goog-date x-goog-expires x-goog-signedheaders""".split()
)


def _signed(path: str) -> str:
    """`path`, the secret values of its query remembered, to be redacted."""
    values = [
        v for n, _, v in (p.partition("=") for p in path.partition("?")[2].split("&")) if n.lower() not in _NOT_SECRET
    ]
    pieces = [p for v in values for p in (v, *v.split("/")) if len(p) >= 6]
    with _SIGNED_LOCK:
        for piece in pieces:
            _SIGNED[piece] = None
            _SIGNED.move_to_end(piece)
        while len(_SIGNED) > _SIGNED_MAX:
            _SIGNED.popitem(last=False)
    return path


def redacted(text: str) -> str:
    """`text` without any URL's query and without any piece of a signed query read lately."""
    text = _QUERY.sub(r"\1?...", text)
    with _SIGNED_LOCK:
        pieces = [p for p in _SIGNED if p in text]
    for piece in pieces:
        text = text.replace(piece, "...")
    return text


class _Redacted(logging.Filter):
    def filter(self, line: logging.LogRecord) -> bool:
        message = line.getMessage()
        clean = redacted(message)
        if clean != message:
            line.msg, line.args = clean, ()
        return True


def _redact_gdal_lines() -> None:
    """Cut signed queries from rasterio's log lines (GDAL's words, the datasets it opens, at any level) from
    here on. A filter applies to its own logger's lines only, so each of rasterio's loggers gets one."""
    names = [n for n in list(logging.root.manager.loggerDict) if n == "rasterio" or n.startswith("rasterio.")]
    with _SIGNED_LOCK:
        for name in (*retries.GDAL_LOGGERS, *names):
            logger = logging.getLogger(name)
            if not any(isinstance(f, _Redacted) for f in logger.filters):
                logger.addFilter(_Redacted())


def gdal_env(settings: ImagerySettings) -> rasterio.Env:
    """GDAL configuration for reading source COGs: the S3 endpoint and credentials, HTTP retries (counted
    from here on, geo/retries.py)."""
    retries.count_gdal_retries()
    _redact_gdal_lines()
    options = {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # a COG is one object: never list its "directory"
        "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        **settings.http.gdal(),
    }
    if settings.s3_endpoint:
        parts = urlsplit(settings.s3_endpoint if "://" in settings.s3_endpoint else f"https://{settings.s3_endpoint}")
        options.update(
            AWS_S3_ENDPOINT=parts.netloc,
            AWS_HTTPS="YES" if parts.scheme == "https" else "NO",
            AWS_VIRTUAL_HOSTING="FALSE",
        )
    session = _aws_session(
        settings.s3_no_sign,
        settings.s3_access_key,
        settings.s3_secret_key,
        settings.s3_region,
        settings.s3_requester_pays,
    )
    return rasterio.Env(session=session, **options)


def gdal_path(href: str) -> str:
    if href.startswith("s3://"):
        return "/vsis3/" + href[len("s3://") :]
    if href.startswith(("http://", "https://")):
        return "/vsicurl/" + href
    return href


def _read_error(href: str, exc: Exception, retried: list[str]) -> ImageryError:
    """GDAL's failure to read `href` as ours: missing, denied, unavailable (after retries) or corrupt."""
    text = "; ".join(dict.fromkeys(str(e) for e in (exc, exc.__cause__, exc.__context__) if e))  # GDAL's own words
    text = redacted(text)  # GDAL names the signed URL it read: never its token
    lowered = text.lower()
    status = re.search(r"(?:response|error) code:? ?(\d{3})", lowered)
    code = int(status.group(1)) if status else None
    if code == 404 or any(s in lowered for s in ("does not exist", "no such file", "nosuchkey", "blobnotfound")):
        return ObjectMissingError(f"{href}: object not found ({text[:300]})")
    if code in (401, 403) or any(s in lowered for s in ("access denied", "accessdenied", "authenticationfailed")):
        return ImageryError(f"{href}: access denied ({text[:300]})")
    if (
        retried
    ):  # GDAL gave up after its retries twice (retries.read): whatever it says ("not recognized"), the server failed
        return ImageryError(
            f"{href}: unavailable, still failing after retries: {retries.describe(retried)} ({text[:300]})"
        )
    if (code is not None and code in TRANSIENT_STATUSES) or any(
        s in lowered for s in ("connect", "timed out", "timeout")
    ):
        return ImageryError(f"{href}: unavailable, still failing after the HTTP retries ({text[:300]})")
    if any(
        s in lowered for s in ("not recognized", "tiff", "failed", "corrupt", "truncat", "short read", "ireadblock")
    ):
        return CorruptObjectError(f"{href}: corrupt or truncated GeoTIFF ({text[:300]})")
    return ImageryError(f"{href}: cannot read ({text[:300]})")


def _integral(*values: float) -> bool:
    return all(abs(v - round(v)) < 1e-6 for v in values)


@dataclass(frozen=True)
class _Open:
    src: rasterio.DatasetReader
    crs: CRS
    transform: Any  # rasterio's Affine and BoundingBox (rasterio ships no types)
    bounds: Any
    dtype: str


_OPEN_PER_THREAD = 32


class _ThreadDatasets:
    """The source datasets one thread keeps open, all of one scene plan; its lock is held while
    the thread reads, so another thread may close them only while they are idle."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.plan: str | None = None
        self.open: OrderedDict[str, _Open] = OrderedDict()

    def close(self) -> None:
        for entry in self.open.values():
            entry.src.close()
        self.open.clear()
        self.plan = None

    def dataset(self, path: str, plan: str) -> _Open:
        """An open dataset for `path`, kept and reused by this thread's following tiles of `plan`.

        A source COG's blocks (512-1024 px) span several 256 px tiles, and GDAL caches decoded blocks
        per open dataset: reopening for every tile would fetch and decompress each block again.
        Datasets are not shared between threads (GDAL handles are not thread-safe); a small LRU
        bounds how many stay open. Its georeferencing is read once, with it.

        Threads outlive a run (geo.threads, Dask workers), and an object may be rewritten at the same
        path between runs (a scene delivered again). So a thread keeps one plan's datasets only: its
        first read of another plan closes them, and the idle ones other threads keep for older plans
        (closing also drops what GDAL cached of a remote object), so the new plan reads each object
        as it is now.
        """
        if self.plan != plan:
            self.close()
            self.plan = plan
            with _ALL_LOCK:
                others = list(_ALL_THREADS)
            for other in others:
                if other is not self and other.plan not in (None, plan) and other.lock.acquire(blocking=False):
                    try:
                        other.close()
                    finally:
                        other.lock.release()
        entry = self.open.get(path)
        if entry is None or entry.src.closed:
            src = rasterio.open(path)
            entry = self.open[path] = _Open(src, src.crs, src.transform, src.bounds, src.dtypes[0])
            while len(self.open) > _OPEN_PER_THREAD:
                self.open.popitem(last=False)[1].src.close()
        else:
            self.open.move_to_end(path)
        return entry


_ALL_THREADS: weakref.WeakSet[_ThreadDatasets] = weakref.WeakSet()  # a thread's entry goes with the thread
_ALL_LOCK = threading.Lock()  # a set must not change while it is copied
_LOCAL = threading.local()


def _thread_datasets() -> _ThreadDatasets:
    mine = getattr(_LOCAL, "datasets", None)
    if mine is None:
        mine = _LOCAL.datasets = _ThreadDatasets()
        with _ALL_LOCK:
            _ALL_THREADS.add(mine)
    return mine


@lru_cache(maxsize=64)
def _same_crs(src_crs: CRS, crs: str) -> bool:
    return src_crs == CRS.from_user_input(crs)


def same_crs(a: str, b: str) -> bool:
    return _same_crs(CRS.from_user_input(a), b)


def close_datasets() -> None:
    """Close this thread's kept-open datasets (e.g. between benchmark runs, or to drop cached blocks)."""
    mine = _thread_datasets()
    with mine.lock:
        mine.close()


def read_window(
    href: str,
    path: str,
    declared_crs: str | None,
    bounds: Bounds,
    size: tuple[int, int],
    crs: str,
    resolution: float,
    fill: int,
    resampling: Resampling = Resampling.nearest,
    plan: str = "",
) -> np.ndarray:
    """One band of one COG on the tile's grid (rows, cols); `fill` where the COG has no pixels.
    `plan` names the scene plan the read belongs to (datasets are kept open within it).

    In the tile's CRS with a pixel grid that lines up (same origin modulo pixel size; the source
    may be coarser, like 20 m SCL under a 10 m tile), it is a plain windowed read that GDAL serves
    from the COG's internal blocks: each tile pixel is the source pixel it lies in. Otherwise
    (another CRS, or a grid that does not line up) GDAL's warper resamples it onto the tile grid
    with `resampling` (bilinear for reflectance, nearest for quality masks; see `RESAMPLING`).
    """
    left, bottom, right, top = bounds
    rows, cols = size
    mine = _thread_datasets()

    def attempt() -> np.ndarray:
        with mine.lock:  # other threads close this thread's datasets only while it reads none
            ds = mine.dataset(path, plan)  # kept open for the plan's next tiles
            src = ds.src
            if declared_crs is not None and ds.crs != CRS.from_user_input(declared_crs):
                raise ItemMismatchError(f"{href}: the COG is in {ds.crs}, but its STAC item declares {declared_crs}")
            if src.count != 1 or not np.issubdtype(src.dtypes[0], np.unsignedinteger):
                raise ItemMismatchError(  # else band 1 of it would be read as if it were the band, or floats cast
                    f"{href}: the COG has {src.count} band(s) of {src.dtypes[0]}; a band asset is one band of "
                    "unsigned integers (reflectance DN or a quality mask)"
                )
            t = ds.transform
            if _same_crs(ds.crs, crs) and t.b == 0 and t.d == 0 and t.e < 0:
                sb = ds.bounds
                x0, x1, y0, y1 = max(left, sb.left), min(right, sb.right), max(bottom, sb.bottom), min(top, sb.top)
                if x0 >= x1 or y0 >= y1:
                    return np.full(size, fill, dtype=ds.dtype)
                c0, c1, r0, r1 = (
                    (x0 - left) / resolution,
                    (x1 - left) / resolution,
                    (top - y1) / resolution,
                    (top - y0) / resolution,
                )
                sc0, sc1, sr0, sr1 = ((x0 - t.c) / t.a, (x1 - t.c) / t.a, (t.f - y1) / -t.e, (t.f - y0) / -t.e)
                if _integral(c0, c1, r0, r1, sc0, sc1, sr0, sr1):
                    c0, c1, r0, r1, sc0, sc1, sr0, sr1 = (int(round(v)) for v in (c0, c1, r0, r1, sc0, sc1, sr0, sr1))
                    window = RasterWindow(sc0, sr0, sc1 - sc0, sr1 - sr0)
                    if (r0, c0, r1, c1) == (0, 0, rows, cols) and (window.height, window.width) == size:
                        return src.read(1, window=window)  # the common case: the tile lies inside the COG, same pixels
                    out = np.full(size, fill, dtype=ds.dtype)
                    out[r0:r1, c0:c1] = src.read(
                        1, window=window, out_shape=(r1 - r0, c1 - c0), resampling=Resampling.nearest
                    )
                    return out
            with WarpedVRT(
                src,
                crs=crs,
                transform=from_origin(left, top, resolution, resolution),
                width=cols,
                height=rows,
                resampling=resampling,
                src_nodata=src.nodata if src.nodata is not None else fill,
                nodata=fill,
            ) as vrt:
                return vrt.read(1)

    return retries.read(href, RasterioError, partial(_read_error, href), attempt)


def _decode_mask(kind: str, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(valid, cloud) from a quality band."""
    if kind == "sentinel-2":
        return mask != SCL_NODATA, np.isin(mask, SCL_CLOUD)
    return (mask & QA_FILL) == 0, (mask & QA_CLOUD) != 0


def to_reflectance(kind: str, dn: np.ndarray, dn_offset: int = 0) -> np.ndarray:
    """Source DN -> uint16 reflectance x 10000, clipped to [1, 65535]; DN 0 (no data) stays 0."""
    if kind == "sentinel-2":
        value = dn.astype(np.int32) - dn_offset  # subtracted here and nowhere else
    else:
        value = np.rint((dn.astype(np.float64) * LANDSAT_SCALE + LANDSAT_OFFSET) * 10000)
    return np.where(dn == NODATA, NODATA, np.clip(value, 1, 65535)).astype(np.uint16)


def read_mosaic(
    collection: Collection,
    items: tuple[PlannedItem, ...],
    bands: list[str],
    bounds: Bounds,
    size: tuple[int, int],
    crs: str,
    settings: ImagerySettings,
    plan: str = "",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data (bands, rows, cols) uint16, valid, cloud) of one tile, mosaicked from `items` of the scene plan `plan`.

    Mosaic rule, with `items` in plan order (eo:cloud_cover ascending, then datetime): per pixel,
    the first item with a valid, cloud-free pixel wins; where every item is cloudy, the first
    valid one is kept and the pixel is marked cloud. Items stop being read once every pixel has a
    clear value, and an item is skipped without reading bands where it cannot change the result.
    """
    rows, cols = size
    data = np.zeros((len(bands), rows, cols), dtype=np.uint16)
    valid = np.zeros(size, dtype=bool)
    cloud = np.zeros(size, dtype=bool)
    clear = np.zeros(size, dtype=bool)
    sign = settings.href_signer() if collection.signed else None
    left, bottom, right, top = bounds
    fill_mask = SCL_NODATA if collection.kind == "sentinel-2" else QA_FILL
    with gdal_env(settings):
        for item in items:
            ix0, iy0, ix1, iy1 = item.bounds
            if ix0 >= right or ix1 <= left or iy0 >= top or iy1 <= bottom:
                continue
            if clear.all():
                break

            def read(key: str, fill: int, item=item) -> np.ndarray:
                href = item.hrefs[key]
                path = gdal_path(_signed(sign(href)) if sign else href)  # signed per read: tokens expire
                resampling = RESAMPLING["mask" if key == "mask" else "reflectance"]
                return read_window(
                    href, path, item.crs, bounds, size, crs, collection.resolution, fill, resampling, plan
                )

            item_valid, item_cloud = _decode_mask(collection.kind, read("mask", fill_mask))
            if not (item_valid & ~clear & (~item_cloud | ~valid)).any():
                continue
            dn = np.stack([read(b, NODATA) for b in bands])
            item_valid &= (dn != NODATA).all(axis=0)
            take = item_valid & ~clear & (~item_cloud | ~valid)
            for i, band in enumerate(bands):
                data[i][take] = to_reflectance(collection.kind, dn[i][take], item.dn_offsets[band])
            cloud[take] = item_cloud[take]
            valid |= take
            clear |= take & ~item_cloud
    return data, valid, cloud
