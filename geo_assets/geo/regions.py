"""Regions: a validated name plus a footprint, kept in a JSON catalogue.

Region names become partition keys and storage paths, so they are restricted to slugs.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from importlib import resources

from geo_assets.geo.grid import HALF_SPAN_M, Bounds, TileGrid, projected_crs
from geo_assets.geo.messages import shown
from geo_assets.geo.store import ObjectNotFoundError

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class UnknownRegionError(ValueError):
    pass


def validate_region_name(name: str) -> str:
    """Return `name` if it is a slug (lowercase letters, digits, inner hyphens, <= 63 chars)."""
    if not isinstance(name, str) or not _SLUG.fullmatch(name):
        raise ValueError(
            f"invalid region name {shown(name)}: use lowercase letters, digits and hyphens "
            "(not at either end), at most 63 characters, e.g. 'lake-geneva-2'"
        )
    return name


def validate_date(date: str) -> str:
    import datetime

    if not isinstance(date, str) or not _DATE.fullmatch(date):
        raise ValueError(f"invalid acquisition date {shown(date)}: use YYYY-MM-DD")
    try:
        datetime.date.fromisoformat(date)
    except ValueError:
        raise ValueError(f"invalid acquisition date {date!r}: not a calendar date") from None
    return date


@dataclass(frozen=True)
class Region:
    name: str
    bbox: Bounds  # (minx, miny, maxx, maxy) in `crs`
    crs: str
    source: str = "synthetic"  # default imagery source for this region
    labels: str | None = None  # label source: "synthetic", "sample:<scene>" (polygons) or None
    dates: tuple[str, ...] = field(default_factory=tuple)  # known acquisition dates, for the demo

    def __post_init__(self) -> None:
        validate_region_name(self.name)
        projected_crs(self.crs)
        minx, miny, maxx, maxy = (float(v) for v in self.bbox)
        if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)):
            raise ValueError(f"region {self.name!r}: bbox {self.bbox} must be finite numbers (no inf or nan)")
        if not (minx < maxx and miny < maxy):
            raise ValueError(f"region {self.name!r}: bbox {self.bbox} must be minx < maxx and miny < maxy")
        if max(abs(minx), abs(miny), abs(maxx), abs(maxy)) > HALF_SPAN_M:
            raise ValueError(
                f"region {self.name!r}: bbox {self.bbox} reaches beyond {HALF_SPAN_M / 1000:,.0f} km from the "
                f"origin of {self.crs}, outside any projected CRS's valid area; give the footprint in metres of that CRS"
            )
        object.__setattr__(self, "bbox", (minx, miny, maxx, maxy))
        object.__setattr__(self, "dates", tuple(validate_date(d) for d in self.dates))

    def to_json(self) -> dict:
        d = asdict(self)
        d["bbox"] = list(self.bbox)
        d["dates"] = list(self.dates)
        return d


def builtin_regions() -> dict[str, Region]:
    """The regions every installation knows: synthetic training/evaluation areas and the samples."""
    text = (resources.files("geo_assets") / "data" / "regions.json").read_text()
    return {r["name"]: Region(**{**r, "bbox": tuple(r["bbox"])}) for r in json.loads(text)["regions"]}


class RegionCatalogue:
    """Built-in regions plus the user's, the latter stored as JSON text by the caller's storage."""

    def __init__(self, user_regions: Iterable[Region] = ()):
        self._regions = dict(builtin_regions())
        for r in user_regions:
            self._regions[r.name] = r

    @classmethod
    def from_json(cls, text: str | None) -> RegionCatalogue:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(Region(**{**r, "bbox": tuple(r["bbox"])}) for r in data.get("regions", []))

    def user_json(self) -> str:
        builtins = builtin_regions()
        user = [r.to_json() for n, r in sorted(self._regions.items()) if builtins.get(n) != r]
        return json.dumps({"regions": user}, indent=2) + "\n"

    def names(self) -> list[str]:
        return sorted(self._regions)

    def get(self, name: str) -> Region:
        validate_region_name(name)
        try:
            return self._regions[name]
        except KeyError:
            raise UnknownRegionError(
                f"unknown region {shown(name)}; known regions: {', '.join(self.names())}. "
                "Add one with `geo-assets region add NAME --bbox MINX MINY MAXX MAXY --crs EPSG:XXXX`"
            ) from None

    def add(self, region: Region, replace: bool = False) -> None:
        if region.name in self._regions and not replace and self._regions[region.name] != region:
            raise ValueError(
                f"region {region.name!r} already exists with another footprint; pass --replace to change it"
            )
        self._regions[region.name] = region

    def remove(self, name: str) -> None:
        self.get(name)
        del self._regions[name]

    def __iter__(self):
        return iter(self._regions[n] for n in self.names())


def tile_count(grid: TileGrid, bbox: Bounds) -> int:
    """Tiles of `grid` that a box covers, by arithmetic: tile edges lie on the grid's origin plus multiples
    of the tile's ground size, so this needs no enumeration (which a huge box must never reach)."""
    ground = grid.resolution * grid.tile_size
    (ox, oy), (minx, miny, maxx, maxy) = grid.origin, bbox
    cols = math.ceil((maxx - ox) / ground) - math.floor((minx - ox) / ground)
    rows = math.ceil((maxy - oy) / ground) - math.floor((miny - oy) / ground)
    return cols * rows


def check_size(region: Region, grid: TileGrid, max_tiles: int) -> int:
    """The region's tile count on `grid`, or a ValueError when it exceeds `max_tiles`."""
    count = tile_count(grid, region.bbox)
    if count > max_tiles:
        minx, miny, maxx, maxy = region.bbox
        raise ValueError(
            f"region {region.name!r} covers {count:,} tiles of {grid.tile_size} px at {grid.resolution:g} m "
            f"({(maxx - minx) / 1000:,.1f} x {(maxy - miny) / 1000:,.1f} km); the limit is {max_tiles:,} tiles per "
            "partition (GEO_ASSETS_MAX_TILES): split the region, use larger tiles or raise the limit"
        )
    return count


CATALOGUE_KEY = "catalogue/regions.json"


class CatalogueError(ValueError):
    """The store holds a region catalogue that cannot be read as one (not UTF-8 JSON of valid regions)."""


def stored_catalogue(store) -> RegionCatalogue | None:
    """The catalogue kept in a store (built-in regions plus those users added), or None when the store
    holds none: a store no one has initialised, or a storage root that points elsewhere."""
    try:
        raw = store.read_bytes(CATALOGUE_KEY)
    except ObjectNotFoundError:
        return None
    try:
        return RegionCatalogue.from_json(raw.decode())
    except (
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
    ) as exc:  # not UTF-8 or JSON, or entries that are not regions
        raise CatalogueError(
            f"region catalogue {store.uri(CATALOGUE_KEY)} cannot be read: {type(exc).__name__}: {exc}"
        ) from None


def load_catalogue(store) -> RegionCatalogue:
    """The catalogue kept in a store; the built-in regions alone when it holds none yet."""
    catalogue = stored_catalogue(store)
    return RegionCatalogue() if catalogue is None else catalogue


def init_catalogue(store) -> RegionCatalogue:
    """The store's catalogue, written first (built-in regions only) if it holds none: from then on the
    store's catalogue is what the region_partitions sensor removes unknown partitions against."""
    catalogue = stored_catalogue(store)
    if catalogue is None:
        catalogue = RegionCatalogue()
        save_catalogue(store, catalogue)
    return catalogue


def save_catalogue(store, catalogue: RegionCatalogue) -> None:
    store.write_bytes(CATALOGUE_KEY, catalogue.user_json().encode())


def add_region(store, region: Region, replace: bool = False, tile_size: int = 256) -> Region:
    """The one validated way to add a region to a store's catalogue: `geo-assets region add` and the
    scene_arrivals sensor both come through here. Region() has checked the name, CRS and box; the size
    limit is checked at the default tile size (a run with other tiles checks again before its first)."""
    from geo_assets.geo.labels import LABEL_SOURCES  # these modules import this one
    from geo_assets.geo.sources import SOURCES, get_source
    from geo_assets.limits import max_tiles

    if region.source not in SOURCES:
        raise ValueError(f"unknown imagery source {region.source!r}; accepted: {', '.join(sorted(SOURCES))}")
    if region.labels is not None and region.labels not in LABEL_SOURCES:
        raise ValueError(f"unknown label source {region.labels!r}; accepted: {', '.join(LABEL_SOURCES)}")
    builtin = builtin_regions().get(region.name)
    if builtin is not None and builtin != region:  # its footprint is what the samples and held-out areas were cut to
        raise ValueError(
            f"region {region.name!r} is built in and cannot be redefined; add your area under another name"
        )
    check_size(region, get_source(region.source).spec(region).grid(region.crs, tile_size), max_tiles())
    catalogue = load_catalogue(store)
    catalogue.add(region, replace=replace)
    save_catalogue(store, catalogue)
    return region
