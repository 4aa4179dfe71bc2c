"""What the map shows, found in the store from identifiers alone: a request names a region, a date, a
model and a version, never a path. Each is checked against its own rule, keys are built here (and
checked again by the store), and the paths GDAL opens come from the platform's own manifests. So no
text of a request (`../`, another bucket, `file://`, `/vsicurl/`) can reach GDAL.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import rasterio
from cachetools import TTLCache, cached
from rasterio.enums import Resampling
from rasterio.warp import transform_bounds, transform_geom

from geo_assets.geo import acquisitions
from geo_assets.geo.landcover import CLASSES, COLOURS
from geo_assets.geo.manifests import ImageryManifest
from geo_assets.geo.messages import shown
from geo_assets.geo.regions import load_catalogue, validate_date, validate_region_name
from geo_assets.geo.store import Store, validate_key
from geo_assets.ml import registry

_VERSION = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_VARIANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
STRETCH_SAMPLE_TILES = 16  # tiles read (decimated) to find an imagery version's stretch
STRETCH_PX = 64  # each read at most this many pixels a side
COMPOSITES = {"true-colour": ("red", "green", "blue"), "false-colour": ("nir", "red", "green")}
# Which manifest a layer reads is looked up (a listing and a read) once per this many seconds, not once
# per map tile: a view asks for dozens of tiles at once. A new materialisation shows within it.
LOOKUP_TTL_S = 30
_LOOKUPS_LOCK = threading.Lock()


class BadRequest(ValueError):
    """A request the map cannot answer as asked (400)."""


class NotFound(LookupError):
    """Nothing stored for what the request names (404)."""


def check_model(name: str) -> str:
    try:
        return validate_region_name(name)  # model names are slugs, as regions are (partitions.validate_model_name)
    except ValueError:
        raise BadRequest(f"invalid model name {shown(name)}: lowercase letters, digits and hyphens") from None


def check_version(version: str) -> str:
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise BadRequest(f"invalid model version {version!r}: lowercase letters, digits and hyphens")
    return version


def check_region(name: str) -> str:
    try:
        return validate_region_name(name)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def check_date(date: str) -> str:
    try:
        return validate_date(date)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def legend() -> list[dict]:
    return [
        {"value": i, "class": c, "colour": "#{:02x}{:02x}{:02x}".format(*COLOURS[i])} for i, c in enumerate(CLASSES)
    ]


def colormap() -> dict[int, tuple[int, int, int, int]]:
    return {i: (*COLOURS[i], 255) for i in range(len(CLASSES))}


@contextmanager
def open_cog(path: str) -> Iterator[rasterio.DatasetReader]:
    """A stored COG, opened as GeoTIFF only: GDAL picks a driver from the content, so a ".tif" that is
    really a VRT (whoever may write to the store could put one there) would read files outside the root."""
    with rasterio.open(path, driver="GTiff") as src:
        yield src


def _stored_path(store: Store, key: str) -> str:
    """What GDAL opens for a key a manifest names: checked as any key (manifests are ours, but a key is
    a key), and only ever under the store's root."""
    return store.path(validate_key(key))


@dataclass(frozen=True)
class Imagery:
    key: str  # the manifest's key
    manifest: ImageryManifest

    @property
    def variant(self) -> str:
        return acquisitions.variant_of(self.manifest)

    def tiles_over(self, store: Store, lonlat_bounds: tuple[float, float, float, float]) -> list[str]:
        """GDAL paths of the imagery tiles that meet a box given in longitude/latitude."""
        w, s, e, n = transform_bounds("EPSG:4326", self.manifest["crs"], *lonlat_bounds, densify_pts=21)
        return [
            _stored_path(store, t["path"])
            for t in self.manifest["tiles"]
            if t["bounds"][0] < e and t["bounds"][2] > w and t["bounds"][1] < n and t["bounds"][3] > s
        ]

    def band_indexes(self, composite: str) -> list[int]:
        if composite not in COMPOSITES:
            raise BadRequest(f"unknown composite {composite!r}: one of {', '.join(COMPOSITES)}")
        missing = [b for b in COMPOSITES[composite] if b not in self.manifest["bands"]]
        if missing:
            raise NotFound(f"imagery {self.variant} has no {', '.join(missing)} band for {composite}")
        return [self.manifest["bands"].index(b) + 1 for b in COMPOSITES[composite]]


@cached(TTLCache(maxsize=1024, ttl=LOOKUP_TTL_S), lock=_LOOKUPS_LOCK)
def imagery(store: Store, region: str, date: str, variant: str | None = None) -> Imagery:
    """The acquisition's imagery: the variant named, else the one with the most bands (false colour
    needs near infrared), then the region's own source."""
    check_region(region), check_date(date)
    if variant is not None and not _VARIANT.fullmatch(variant):
        raise BadRequest(f"invalid imagery variant {variant!r}")
    stored = acquisitions.imagery_variants(store, region, date)
    if variant is not None:
        stored = {k: m for k, m in stored.items() if acquisitions.variant_of(m) == variant}
    if not stored:
        raise NotFound(
            f"no imagery_tiles of region {region!r} on {date}" + (f" in variant {variant!r}" if variant else "")
        )
    key = sorted(stored, key=lambda k: (-len(stored[k]["bands"]), stored[k]["tile_size"], k))[0]
    return Imagery(key, stored[key])


@cached(TTLCache(maxsize=1024, ttl=LOOKUP_TTL_S), lock=_LOOKUPS_LOCK)
def predictions(store: Store, region: str, date: str, model: str, version: str) -> dict:
    """The manifest of one model version's predictions of the acquisition; of several (imagery variants,
    margins), the newest."""
    check_region(region), check_date(date), check_model(model), check_version(version)
    folder = validate_key(f"manifests/predictions/{model}/{version}/region={region}/date={date}")
    infos = []
    more, after = True, ""
    while more:
        page, more = store.scan(folder, after)
        infos += [i for i in page if i.key.endswith(".json")]
        after = page[-1].key if page else after
        more = more and bool(page)
    if not infos:
        raise NotFound(f"no predictions of model {model} version {version} for region {region!r} on {date}")
    return store.read_json(max(infos, key=lambda i: (i.modified, i.key)).key)


def mosaic_path(store: Store, manifest: dict) -> str:
    return _stored_path(store, manifest["mosaic"])


def model_record(store: Store, model: str, version: str) -> dict:
    """The version's architecture, creation and evaluations, as the page shows them."""
    for record in registry.list_versions(store, check_model(model)):
        if record["version"] == check_version(version):
            return {
                "model": model,
                "version": version,
                "created_at": record.get("created_at"),
                "architecture": record.get("config", {}).get("architecture"),
                "bands": record.get("bands"),
                "evaluations": [
                    {k: e.get(k) for k in ("miou", "regions", "min_miou", "passed", "evaluated_at")}
                    for e in record.get("evaluations", [])
                ],
            }
    raise NotFound(f"model {model} has no version {version}")


def _lonlat_polygon(bounds, crs: str, densify: int = 16) -> dict:
    minx, miny, maxx, maxy = bounds
    xs = np.linspace(minx, maxx, densify + 1)
    ys = np.linspace(miny, maxy, densify + 1)
    ring = (
        [(x, miny) for x in xs]
        + [(maxx, y) for y in ys[1:]]
        + [(x, maxy) for x in xs[::-1][1:]]
        + [(minx, y) for y in ys[::-1][1:]]
    )
    return transform_geom(crs, "EPSG:4326", {"type": "Polygon", "coordinates": [ring]})


def footprint(store: Store, region: str) -> tuple[dict, str]:
    """The region's box as a GeoJSON polygon in longitude/latitude, and its CRS."""
    try:
        found = load_catalogue(store).get(check_region(region))
    except ValueError as exc:  # an unknown region
        raise NotFound(str(exc)) from None
    return _lonlat_polygon(found.bbox, found.crs), found.crs


def tile_grid(imagery_: Imagery) -> dict:
    """The imagery's grid cells as GeoJSON features (longitude/latitude), each named by its key."""
    crs = imagery_.manifest["crs"]
    return {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {"key": t["key"]}, "geometry": _lonlat_polygon(t["bounds"], crs, 2)}
            for t in imagery_.manifest["tiles"]
        ],
    }


@lru_cache(maxsize=256)
def _stretch(store: Store, key: str, digest: str, indexes: tuple[int, ...]) -> tuple[tuple[float, float], ...]:
    manifest = store.read_json(key)
    tiles = manifest["tiles"]
    step = max(1, len(tiles) // STRETCH_SAMPLE_TILES)
    values: list[list[np.ndarray]] = [[] for _ in indexes]
    with store.env():
        for t in tiles[::step][:STRETCH_SAMPLE_TILES]:
            with open_cog(_stored_path(store, t["path"])) as src:
                side = min(STRETCH_PX, src.width)
                data = src.read(
                    list(indexes), out_shape=(len(indexes), side, side), resampling=Resampling.nearest, masked=True
                )
            valid = ~np.ma.getmaskarray(data).any(axis=0) & (np.asarray(data) > 0).all(axis=0)
            for i, band in enumerate(np.asarray(data)):
                values[i].append(band[valid].astype(np.float64))
    out = []
    for band in values:
        merged = np.concatenate(band) if band else np.array([])
        lo, hi = np.percentile(merged, (2, 98)) if merged.size else (0.0, 1.0)
        out.append((float(lo), float(max(hi, lo + 1e-6))))
    return tuple(out)


def stretch(store: Store, imagery_: Imagery, indexes: list[int]) -> list[tuple[float, float]]:
    """The imagery version's own stretch: each band from its 2nd to its 98th percentile over valid
    pixels of a sample of its tiles (as the reports' previews), cached per manifest version."""
    version = hashlib.sha256(json.dumps(imagery_.manifest, sort_keys=True).encode()).hexdigest()
    return list(_stretch(store, imagery_.key, version, tuple(indexes)))
