"""Real sample imagery shipped with the package (``geo_assets/data/sample/``).

Two small scenes, for tests, the demo and benchmarks, readable without any network or external
folder:

* ``"sentinel2"`` -- Sentinel-2 L2A blue/green/red/nir (10 m) and swir1/swir2 (20 m pixels
  repeated 2 x 2), 300 x 200 px at 10 m, EPSG:32719, stored as float64 reflectance DN with NaN
  fill; acquisition date unknown.
* ``"landsat8"`` -- Landsat 8 L1TP blue/green/red (B2/B3/B4), 30 m, EPSG:32621, uint16 DN,
  nodata 0, 2020-05-18: two clips of adjacent scenes on one grid, mosaicked on read (the first
  file's valid pixels win), plus 4 land-cover polygons.

Whatever the files store, `read_sample` delivers the convention of every imagery source: uint16
reflectance x 10000, 0 = no data. Sentinel-2 L2A DN already are surface reflectance x 10000. The
Landsat L1TP DN are converted to top-of-atmosphere reflectance with the OLI Level-1 rescaling
(reflectance = (2.0e-05 DN - 0.1) / sin(sun elevation), the constants of every OLI L1 product's
metadata), then to an approximate surface reflectance by dark-object subtraction (DOS1): no
surface reflectance product exists for this scene, and that is said where it is shown.

The files are built by :mod:`devtools.sample_build`; their provenance (sources, licences,
what was clipped or dropped) is in ``PROVENANCE.md`` next to them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.merge import merge
from rasterio.transform import from_origin
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds

from geo_assets.geo.grid import lattice_origin
from geo_assets.geo.landcover import REFLECTANCE_SCALE

Bounds = tuple[float, float, float, float]


@dataclass(frozen=True)
class SampleScene:
    """One sample scene: its files (in mosaic order) and what they contain."""

    name: str
    files: tuple[str, ...]  # file names in the sample folder; mosaic order, first valid wins
    bands: tuple[str, ...]  # band names, in file band order (band i+1 = bands[i])
    crs: str
    resolution: float  # metres per pixel (square pixels)
    dtype: str
    nodata: float  # fill value; NaN for float scenes
    acquired: str | None  # ISO date, None if unknown
    label_file: str | None = None  # GeoJSON land-cover polygons in ``crs``, if any
    # Indexes (in label_file) of the polygons held out whole: never trained on, scored in region_report.
    held_out_polygons: tuple[int, ...] = ()
    # DN -> reflectance: (DN * scale + offset) / sin(sun_elevation); sun_elevation None: no correction.
    scale: float = 1e-4
    offset: float = 0.0
    sun_elevation: float | None = None  # degrees
    haze: tuple[float, ...] | None = None  # per band, reflectance of path radiance to subtract (dark object)
    product: str = "surface reflectance"

    def reflectance(self, dn: np.ndarray, valid: np.ndarray, bands: Sequence[str]) -> np.ndarray:
        """DN of `bands` -> uint16 reflectance x 10000, clipped to [1, 65535] where valid, 0 elsewhere."""
        value = np.nan_to_num(dn.astype(np.float64)) * self.scale + self.offset
        if self.sun_elevation is not None:
            value /= math.sin(math.radians(self.sun_elevation))
        if self.haze is not None:
            value -= np.array([self.haze[self.bands.index(b)] for b in bands])[:, None, None]
        value = np.clip(np.rint(value * REFLECTANCE_SCALE), 1, 65535)
        return np.where(valid, value, NODATA).astype(np.uint16)


SAMPLES: dict[str, SampleScene] = {
    "sentinel2": SampleScene(
        name="sentinel2",
        files=("s2_sample.tif",),
        bands=("blue", "green", "red", "nir", "swir1", "swir2"),
        crs="EPSG:32719",
        resolution=10.0,
        dtype="float64",
        nodata=float("nan"),
        acquired=None,
        label_file=None,
    ),
    "landsat8": SampleScene(
        name="landsat8",
        files=("landsat8_224078.tif", "landsat8_224077.tif"),
        bands=("blue", "green", "red"),
        crs="EPSG:32621",
        resolution=30.0,
        dtype="uint16",
        nodata=0.0,
        acquired="2020-05-18",
        label_file="landsat8_polygons.geojson",
        # "developed" (the town, 79 px): the one polygon that lies apart from the others' tiles on the
        # default 256 px grid (water, crop and tree share a tile there). The other three are trained on.
        held_out_polygons=(3,),
        # OLI L1 REFLECTANCE_MULT/ADD (the same for every band and product). The sun elevation is
        # the solar position at the clip's centre (54.62 W, 25.30 S) at 13:38 UTC, path 224's
        # overpass time: the product's metadata file was not shipped with the sample.
        scale=2.0e-05,
        offset=-0.1,
        sun_elevation=36.8,
        # Dark-object subtraction (DOS1, Chavez 1996): per band, the darkest 0.01 % of the clip's
        # top-of-atmosphere reflectance is taken to be 1 % reflectance; the rest is path radiance.
        haze=(0.0699, 0.0384, 0.0196),
        product="surface reflectance approximated from L1TP (top of atmosphere, then dark-object subtraction)",
    ),
}
NODATA = 0  # the fill value of what read_sample delivers

_RES_TOL = 1e-9  # relative tolerance for "same resolution"


def _sample_dir() -> Path:
    return Path(str(files("geo_assets") / "data" / "sample"))


def sample_path(name_or_file: str) -> Path:
    """Path of a sample file, by file name (``"s2_sample.tif"``) or scene name.

    A scene name resolves to the scene's first (primary) file. Raises ``FileNotFoundError``
    if the file is not installed.
    """
    scene = SAMPLES.get(name_or_file)
    name = scene.files[0] if scene is not None else name_or_file
    if not name or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"expected a sample file name or one of {sorted(SAMPLES)}, got {name!r}")
    path = _sample_dir() / name
    if not path.is_file():
        raise FileNotFoundError(
            f"sample file {name!r} not found at {path}: the geo_assets sample package data is "
            "missing. Reinstall geo-assets (its wheel ships geo_assets/data/sample/), or in a "
            "development checkout regenerate it with "
            "`python -m devtools.sample_build <path to the sample-data folder>`."
        )
    return path


def _scene(scene: str) -> SampleScene:
    try:
        return SAMPLES[scene]
    except (KeyError, TypeError):
        raise ValueError(f"unknown sample scene {scene!r}; accepted names: {', '.join(sorted(SAMPLES))}") from None


@cache
def _footprint(scene: str) -> Bounds:
    boxes = []
    for f in SAMPLES[scene].files:
        with rasterio.open(sample_path(f)) as src:
            boxes.append(tuple(src.bounds))
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


@cache
def sample_origin(scene: str) -> tuple[float, float]:
    """A pixel corner of the scene's lattice, as an offset in [0, resolution) from the CRS origin."""
    s = _scene(scene)
    with rasterio.open(sample_path(s.files[0])) as src:
        return lattice_origin(src.transform.c, src.transform.f, s.resolution)


def sample_footprint(scene: str) -> tuple[Bounds, str]:
    """``((minx, miny, maxx, maxy), crs)``: the union of the scene files' bounds, in its CRS."""
    s = _scene(scene)
    return _footprint(s.name), s.crs


def _band_indexes(s: SampleScene, bands: Sequence[str] | None) -> list[int]:
    if bands is None:
        return list(range(1, len(s.bands) + 1))
    if isinstance(bands, str):
        bands = [bands]
    out = []
    for b in bands:
        if b not in s.bands:
            raise ValueError(f"unknown band {b!r} for sample scene {s.name!r}; its bands are {list(s.bands)}")
        out.append(s.bands.index(b) + 1)
    if not out:
        raise ValueError(f"no bands requested for sample scene {s.name!r}")
    return out


def _nodata_mask(data: np.ndarray, nodata: float) -> np.ndarray:
    """True where a value equals the fill value (NaN-aware)."""
    if math.isnan(nodata):
        return np.isnan(data)
    return data == nodata


def read_sample(
    scene: str,
    bounds: Bounds,
    crs: str,
    resolution: float,
    bands: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Read a sample scene over ``bounds`` (in ``crs``) at ``resolution``.

    The output grid has its upper-left corner at ``(minx, maxy)``, square pixels of
    ``resolution`` and ``round((maxx - minx) / resolution)`` x ``round((maxy - miny) /
    resolution)`` pixels. When that grid lies on the scene's own pixel lattice (same CRS and
    resolution, corners on the lattice: `sample_origin`) the pixels are copied; otherwise they
    are warped, bilinear (reflectance is continuous; a shifted nearest-neighbour copy would move
    every pixel by up to half a pixel). Multi-file scenes are mosaicked in ``SampleScene.files``
    order: the first valid pixel wins.

    Returns ``(data, valid)``: ``data`` is ``(bands, H, W)`` uint16 reflectance x 10000 with 0
    where nothing is known; ``valid`` is ``(H, W)`` bool, True where every requested band has
    data (and where it is False every band is 0).
    """
    s = _scene(scene)
    indexes = _band_indexes(s, bands)
    minx, miny, maxx, maxy = (float(v) for v in bounds)
    res = float(resolution)
    if not (math.isfinite(res) and res > 0):
        raise ValueError(f"resolution must be a positive number, got {resolution!r}")
    if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)) or minx >= maxx or miny >= maxy:
        raise ValueError(f"bounds must be finite (minx, miny, maxx, maxy) with min < max, got {bounds!r}")
    width = int(round((maxx - minx) / res))
    height = int(round((maxy - miny) / res))
    if width < 1 or height < 1:
        raise ValueError(f"bounds {bounds!r} are smaller than one {res} pixel (would give {width} x {height})")
    dst_crs = CRS.from_user_input(crs)
    scene_crs = CRS.from_user_input(s.crs)

    footprint = _footprint(s.name)
    if dst_crs == scene_crs:
        req = (minx, miny, maxx, maxy)
    else:
        req = transform_bounds(dst_crs, scene_crs, minx, miny, maxx, maxy, densify_pts=21)
    fx0, fy0, fx1, fy1 = footprint
    if not (req[0] < fx1 and req[2] > fx0 and req[1] < fy1 and req[3] > fy0):
        raise ValueError(
            f"requested bounds {tuple(bounds)} in {crs} do not intersect sample scene "
            f"{s.name!r}, whose footprint is {footprint} in {s.crs}"
        )

    paths = [sample_path(f) for f in s.files]
    with ExitStack() as stack:
        datasets = [stack.enter_context(rasterio.open(p)) for p in paths]
        ox, oy = sample_origin(s.name)
        on_lattice = (
            dst_crs == scene_crs
            and math.isclose(res, s.resolution, rel_tol=_RES_TOL)
            and _integral((minx - ox) / res, (maxy - oy) / res)
        )
        if on_lattice:
            data, _ = merge(
                datasets,
                bounds=(minx, miny, maxx, maxy),
                res=(s.resolution, s.resolution),
                nodata=s.nodata,
                indexes=indexes,
                resampling=Resampling.nearest,
                method="first",
            )
        else:
            transform = from_origin(minx, maxy, res, res)
            data = np.full((len(indexes), height, width), s.nodata, dtype=s.dtype)
            missing = np.ones(data.shape, dtype=bool)
            for src in datasets:
                with WarpedVRT(
                    src,
                    crs=dst_crs,
                    transform=transform,
                    width=width,
                    height=height,
                    resampling=Resampling.bilinear,
                    src_nodata=s.nodata,
                    nodata=s.nodata,
                ) as vrt:
                    part = vrt.read(indexes)
                take = missing & ~_nodata_mask(part, s.nodata)
                data[take] = part[take]
                missing &= ~take
                if not missing.any():
                    break
    expected = (len(indexes), height, width)
    if data.shape != expected:  # merge rounds the same way; be sure
        raise RuntimeError(f"internal error: read {data.shape}, expected {expected}")
    valid = np.asarray(~_nodata_mask(data, s.nodata).any(axis=0))  # an array to the type checker too
    return s.reflectance(data, valid, [s.bands[i - 1] for i in indexes]), valid


def _integral(*values: float) -> bool:
    return all(abs(v - round(v)) < 1e-6 for v in values)


def read_label_polygons(scene: str) -> tuple[list[tuple[dict, str]], str]:
    """``([(geojson_geometry, class_name), ...], crs)`` for a scene that ships labels.

    Geometries are GeoJSON geometry dicts in the returned CRS (the scene's CRS).
    """
    s = _scene(scene)
    if s.label_file is None:
        labelled = [n for n, sc in SAMPLES.items() if sc.label_file]
        raise ValueError(f"sample scene {s.name!r} has no label polygons; scenes with labels: {labelled}")
    with open(sample_path(s.label_file), encoding="utf-8") as f:
        fc = json.load(f)
    crs_name = (fc.get("crs") or {}).get("properties", {}).get("name")
    # Pre-2016 GeoJSON "crs" member; without one, RFC 7946 says WGS 84 lon/lat.
    crs = CRS.from_user_input(crs_name).to_string() if crs_name else "EPSG:4326"
    return [(feat["geometry"], str(feat["properties"]["name"])) for feat in fc["features"]], crs
