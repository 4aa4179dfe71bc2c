"""Search a STAC API and plan a scene's items, once per scene: plain, picklable data for the reads."""

from __future__ import annotations

import ipaddress
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import cast
from urllib.parse import urlsplit

import antimeridian
import numpy as np
import pyproj
import shapely.geometry
from rasterio.warp import transform_bounds
from shapely.geometry import Polygon

from geo_assets.geo.grid import Bounds
from geo_assets.geo.stac.collections import Collection, s2_dn_offset
from geo_assets.geo.stac.errors import ImageryError, ItemMismatchError, NoItemsError
from geo_assets.geo.stac.http import HttpRetry


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
