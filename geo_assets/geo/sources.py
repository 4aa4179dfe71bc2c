"""Imagery sources: where a region's pixels come from, read one tile window at a time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from geo_assets.geo import sample, synthetic
from geo_assets.geo.grid import Bounds
from geo_assets.geo.regions import Region


@dataclass(frozen=True)
class SourceSpec:
    """What a source delivers for a region: its bands, native resolution, dtype and fill value."""

    source: str
    bands: tuple[str, ...]
    resolution: float
    dtype: str
    nodata: float | None


@dataclass
class Window:
    data: np.ndarray  # (bands, rows, cols) in the source's dtype
    valid: np.ndarray  # (rows, cols) bool: False where the source has no data
    cloud: np.ndarray | None  # (rows, cols) bool cloud mask, when the source provides one


class ImagerySource(Protocol):
    name: str

    def spec(self, region: Region) -> SourceSpec: ...

    def read(self, region: Region, date: str, bounds: Bounds, bands: list[str]) -> Window: ...


def check_bands(spec: SourceSpec, bands: list[str]) -> list[str]:
    unknown = [b for b in bands if b not in spec.bands]
    if not bands or unknown:
        raise ValueError(
            f"unknown band(s) {unknown or bands} for source {spec.source!r}; accepted: {', '.join(spec.bands)}"
        )
    return list(bands)


class SyntheticSource:
    name = "synthetic"

    def spec(self, region: Region) -> SourceSpec:
        return SourceSpec(self.name, synthetic.BANDS, synthetic.RESOLUTION, "uint16", synthetic.NODATA)

    def read(self, region: Region, date: str, bounds: Bounds, bands: list[str]) -> Window:
        image, truth = synthetic.scene(region.name, date, bounds, synthetic.RESOLUTION, bands)
        valid = np.ones(truth.shape, dtype=bool)
        return Window(image, valid, truth == synthetic.CLASSES.index("cloud"))


class SampleSource:
    """The real sample scenes shipped with the package; a region uses the scene it lies in."""

    name = "sample"

    def scene(self, region: Region) -> sample.SampleScene:
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
        s = self.scene(region)
        return SourceSpec(self.name, s.bands, s.resolution, s.dtype, s.nodata)

    def read(self, region: Region, date: str, bounds: Bounds, bands: list[str]) -> Window:
        s = self.scene(region)
        data, valid = sample.read_sample(s.name, bounds, region.crs, s.resolution, bands)
        return Window(data, valid, None)


SOURCES: dict[str, ImagerySource] = {s.name: s for s in (SyntheticSource(), SampleSource())}


def get_source(name: str) -> ImagerySource:
    try:
        return SOURCES[name]
    except KeyError:
        raise ValueError(f"unknown imagery source {name!r}; accepted: {', '.join(sorted(SOURCES))}") from None
