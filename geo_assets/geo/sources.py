"""Imagery sources: where a region's pixels come from.

A source turns (region, date, options) into a *scene*: a picklable plan of what to read (for a
STAC source, the items chosen by one search, their band hrefs, harmonisation offsets and CRS).
The scene is made once per asset run and handed to every tile's work unit, which calls
`scene.read(bounds, bands)`: searching once and reading per tile keeps the catalogue out of the
tile loop, and keeps tile work a plain function that any worker can run.

    source = get_source("earth-search")
    scene = source.scene(region, "2024-06-01", settings, bands=["red", "nir"], max_cloud=20)
    window = scene.read(tile.bounds, ["red", "nir"])   # Window(data, valid, cloud)
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from geo_assets.geo import sample, stac, synthetic
from geo_assets.geo.grid import Bounds, TileGrid
from geo_assets.geo.messages import shown
from geo_assets.geo.regions import Region
from geo_assets.geo.stac import ImagerySettings

DEFAULT_BANDS = ("blue", "green", "red", "nir")


@dataclass(frozen=True)
class SourceSpec:
    """What a source delivers for a region: its bands, native pixel lattice, dtype and fill value.

    Every source delivers one convention: uint16 reflectance x 10000, 0 = no data. `origin` is a
    pixel corner of the source's native lattice in the region's CRS: the tile grid is anchored
    there, so tiles are cut from the source's own pixels, never resampled.
    """

    source: str
    bands: tuple[str, ...]
    resolution: float
    dtype: str
    nodata: float | None
    origin: tuple[float, float] = (0.0, 0.0)

    def grid(self, crs: str, tile_size: int) -> TileGrid:
        """The tile grid a region in `crs` is cut on for this source: its own pixel lattice."""
        return TileGrid(crs, self.resolution, tile_size, self.origin)


@dataclass
class Window:
    data: np.ndarray  # (bands, rows, cols) in the source's dtype
    valid: np.ndarray  # (rows, cols) bool: False where the source has no data
    cloud: np.ndarray | None  # (rows, cols) bool cloud mask, when the source provides one


class Scene(Protocol):
    """A source's plan for one region and date. Picklable; `read` may run on any worker."""

    # Read-only (properties), so frozen dataclasses are scenes.
    @property
    def spec(self) -> SourceSpec: ...  # spec.bands: the bands this scene can read

    @property
    def crs(self) -> str: ...  # the CRS of the tile grid it reads onto (the region's)

    def read(self, bounds: Bounds, bands: list[str]) -> Window: ...

    def describe(self) -> dict: ...  # JSON-able: what was chosen (items), for manifests and metadata


class ImagerySource(Protocol):
    name: str

    def spec(self, region: Region) -> SourceSpec: ...  # no network: what the source can deliver

    def scene(
        self,
        region: Region,
        date: str,
        settings: ImagerySettings | None = None,
        *,
        bands: list[str] | None = None,
        max_cloud: float = 100.0,
    ) -> Scene: ...


def check_bands(spec: SourceSpec, bands: list[str]) -> list[str]:
    unknown = [b for b in bands if b not in spec.bands]
    if not bands or unknown:
        raise ValueError(
            f"unknown band(s) {unknown or bands} for source {spec.source!r}; accepted: {', '.join(spec.bands)}"
        )
    return list(bands)


def _size(bounds: Bounds, resolution: float) -> tuple[int, int]:
    return int(round((bounds[3] - bounds[1]) / resolution)), int(round((bounds[2] - bounds[0]) / resolution))


# --- synthetic -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticScene:
    spec: SourceSpec
    crs: str
    region: str
    date: str

    def read(self, bounds: Bounds, bands: list[str]) -> Window:
        image, truth = synthetic.scene(self.region, self.date, bounds, synthetic.RESOLUTION, bands)
        valid = np.ones(truth.shape, dtype=bool)
        return Window(image, valid, truth == synthetic.CLASSES.index("cloud"))

    def describe(self) -> dict:
        return {}


class SyntheticSource:
    name = "synthetic"

    def spec(self, region: Region) -> SourceSpec:
        return SourceSpec(self.name, synthetic.BANDS, synthetic.RESOLUTION, "uint16", synthetic.NODATA)

    def scene(self, region, date, settings=None, *, bands=None, max_cloud=100.0) -> SyntheticScene:
        return SyntheticScene(self.spec(region), region.crs, region.name, date)


# --- sample ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleScene:
    spec: SourceSpec
    crs: str
    sample: str  # the sample scene's name

    def read(self, bounds: Bounds, bands: list[str]) -> Window:
        data, valid = sample.read_sample(self.sample, bounds, self.crs, self.spec.resolution, bands)
        return Window(data, valid, None)

    def describe(self) -> dict:
        return {}


class SampleSource:
    """The real sample scenes shipped with the package; a region uses the scene it lies in."""

    name = "sample"

    def sample_scene(self, region: Region) -> sample.SampleScene:
        minx, miny, maxx, maxy = region.bbox
        for scene in sample.SAMPLES.values():
            (sminx, sminy, smaxx, smaxy), crs = sample.sample_footprint(scene.name)
            if crs == region.crs and minx < smaxx and sminx < maxx and miny < smaxy and sminy < maxy:
                return scene
        known = "; ".join(
            f"{n} ({sample.sample_footprint(n)[1]} {sample.sample_footprint(n)[0]})" for n in sample.SAMPLES
        )
        raise ValueError(f"no sample scene covers region {region.name!r} ({region.crs} {region.bbox}); scenes: {known}")

    def spec(self, region: Region) -> SourceSpec:
        s = self.sample_scene(region)
        return SourceSpec(self.name, s.bands, s.resolution, "uint16", sample.NODATA, sample.sample_origin(s.name))

    def scene(self, region, date, settings=None, *, bands=None, max_cloud=100.0) -> SampleScene:
        return SampleScene(self.spec(region), region.crs, self.sample_scene(region).name)


# --- STAC ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StacScene:
    """The items one search chose, in mosaic order, and how to read them; tiles read windows."""

    spec: SourceSpec
    crs: str
    collection: stac.Collection
    items: tuple[stac.PlannedItem, ...]
    settings: ImagerySettings
    # Each plan is its own: COGs read for it are not read through datasets another plan opened.
    plan: str = field(default_factory=lambda: uuid.uuid4().hex)

    def read(self, bounds: Bounds, bands: list[str]) -> Window:
        data, valid, cloud = stac.read_mosaic(
            self.collection,
            self.items,
            check_bands(self.spec, bands),
            bounds,
            _size(bounds, self.spec.resolution),
            self.crs,
            self.settings,
            self.plan,
        )
        return Window(data, valid, cloud)

    def describe(self) -> dict:
        # Items in another CRS than the region's are warped onto the tile grid: say so, and how.
        warped = [i.id for i in self.items if i.crs and not stac.same_crs(i.crs, self.crs)]
        return {
            "collection": self.collection.collection,
            "items": [i.describe() for i in self.items],
            **(
                {"reprojected": warped, "resampling": {k: r.name for k, r in stac.RESAMPLING.items()}} if warped else {}
            ),
        }


class StacSource:
    """A STAC API collection of COGs: Earth Search, Planetary Computer, Landsat Collection 2."""

    def __init__(self, collection: stac.Collection):
        self.collection = collection
        self.name = collection.source

    def spec(self, region: Region) -> SourceSpec:
        c = self.collection
        return SourceSpec(self.name, tuple(c.assets), c.resolution, "uint16", stac.NODATA, c.origin)

    def scene(self, region, date, settings=None, *, bands=None, max_cloud=100.0) -> StacScene:
        settings = settings or ImagerySettings()
        spec = self.spec(region)
        bands = check_bands(spec, list(bands or DEFAULT_BANDS))  # every item must carry each band planned
        url = settings.url(self.name)
        items = stac.search(self.collection, url, region.bbox, region.crs, date, max_cloud, settings.http)
        planned = stac.plan_items(self.collection, items, bands, region.crs)
        return StacScene(replace(spec, bands=tuple(bands)), region.crs, self.collection, tuple(planned), settings)


_ALL: tuple[ImagerySource, ...] = (
    SyntheticSource(),
    SampleSource(),
    *(StacSource(c) for c in stac.COLLECTIONS.values()),
)
SOURCES: dict[str, ImagerySource] = {s.name: s for s in _ALL}


def get_source(name: str) -> ImagerySource:
    try:
        return SOURCES[name]
    except KeyError:
        raise ValueError(f"unknown imagery source {shown(name)}; accepted: {', '.join(sorted(SOURCES))}") from None


def plan_scene(
    source: str,
    region: Region,
    date: str,
    settings: ImagerySettings | None = None,
    *,
    bands: list[str] | None = None,
    max_cloud: float = 100.0,
) -> Scene:
    """`get_source(source).scene(...)`: the one call an asset (or a notebook) makes per region and date."""
    return get_source(source).scene(region, date, settings, bands=bands, max_cloud=max_cloud)


def fixed_dates(source: str, region: Region) -> tuple[str, ...] | None:
    """The only dates a source has imagery of for a region, or None for any date. A sample is one scene:
    its acquisition date, or where that is unknown, the dates the region's catalogue entry names."""
    if source != "sample":
        return None
    scene = SampleSource().sample_scene(region)
    return (scene.acquired,) if scene.acquired else region.dates


def check_dates(source: str, region: Region, dates: list[str]) -> None:
    """Refuse dates a source has no imagery of for the region (a sample's other dates)."""
    fixed = fixed_dates(source, region)
    refused = [d for d in dates if fixed is not None and d not in fixed]
    if refused:
        listed = ", ".join(refused[:3]) + (f" and {len(refused) - 3} more" if len(refused) > 3 else "")
        raise ValueError(
            f"source {source!r} of region {region.name!r} is one fixed scene of {', '.join(fixed or ()) or 'no known date'}: "
            f"{len(refused)} of {len(dates)} date(s) have no imagery ({listed}); choose that date or another source"
        )
