"""Deterministic Sentinel-2-like scenes with a ground-truth land-cover mask.

Land cover is drawn from smooth noise fields defined on world coordinates, so any window of any
size can be generated on its own and always matches the same window cut from a larger scene.
Land cover is seeded by the region, clouds by region and date.

Pixel spectra are drawn from real per-class surface reflectance (`data/spectra.csv`, built by
`devtools.spectra_build` from the earthlib spectral library: measured soils and urban materials,
PROSAIL canopies, in Sentinel-2 bands; water and cloud from typical values). Each patch of ground
(a 400 m field; a 30 m block of a town: roofs, roads and yards) takes one library spectrum of its
class, and what real 10 m pixels show is
added: vegetation and built-up mixed with the soil below (cover fractions that keep the classes
apart: vegetation >= 55 % canopy, bare soil <= 10 %, built-up <= 25 %), soil darkened by roughness and moisture
(0.55-1.0 of the laboratory value), a smooth residual haze (up to +600 in blue, fading to 0 in
the SWIR: what imperfect atmospheric correction leaves, as in the Sentinel-2 sample, whose blue
exceeds its green), within-class texture and sensor noise.
"""

from __future__ import annotations

import csv
import hashlib
from functools import lru_cache
from importlib.resources import files

import numpy as np

from geo_assets.geo.grid import Bounds
from geo_assets.geo.landcover import CLASSES

BANDS: tuple[str, ...] = ("blue", "green", "red", "nir", "swir1", "swir2")
RESOLUTION = 10.0
NODATA = 0  # never produced: reflectances are clipped to >= 1


@lru_cache(maxsize=1)
def library() -> dict[str, np.ndarray]:
    """Per class, (n, 6) surface reflectance x 10000 in BANDS order, from the package's spectra.csv."""
    rows: dict[str, list[list[float]]] = {c: [] for c in CLASSES}
    with open(str(files("geo_assets") / "data" / "spectra.csv"), encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rows[row["class"]].append([float(row[b]) for b in BANDS])
    empty = [c for c, r in rows.items() if not r]
    if empty:
        raise ValueError(f"spectra.csv has no spectra for class(es) {empty}; rebuild it with devtools.spectra_build")
    return {c: np.array(r) for c, r in rows.items()}


# Residual path radiance at full haze, x 10000 (strongest in blue, none in the SWIR).
_HAZE = np.array([600.0, 400.0, 250.0, 120.0, 20.0, 10.0])
# Canopy cover ranges per class (fraction of vegetation mixed over the soil spectrum).
_COVER = {"vegetation": (0.55, 1.0), "built-up": (0.0, 0.25), "bare-soil": (0.0, 0.1)}
# A field or a soil takes one spectrum per 400 m patch; a town is a fine mosaic of roofs, roads and
# yards, one material per 30 m block.
_PATCH_CELL, _BLOCK_CELL, _COVER_CELL, _HAZE_CELL = 400.0, 30.0, 300.0, 3000.0

# Noise-field feature sizes in metres: lakes and rivers, towns, fields, clouds, within-class texture.
_WATER_CELL, _URBAN_CELL, _SOIL_CELL, _CLOUD_CELL, _TEXTURE_CELL = 2400.0, 1100.0, 700.0, 1600.0, 250.0
_WATER_T, _URBAN_T, _SOIL_T, _CLOUD_T = 0.36, 0.64, 0.60, 0.67


def _seed(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("/".join(parts).encode()).digest()[:8], "little")


def _lattice(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Uniform [0, 1) values on integer lattice points: a splitmix64-style hash of (ix, iy, seed).

    Written by hand because it must be a pure function of position (no RNG stream), so that
    windows generated separately agree; numpy's generators are sequential.
    """
    with np.errstate(over="ignore"):
        h = (ix.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ (
            iy.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
        )
        h ^= np.uint64(seed & 0xFFFFFFFFFFFFFFFF)
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _value_noise(xs: np.ndarray, ys: np.ndarray, cell: float, seed: int) -> np.ndarray:
    """Smoothly interpolated lattice noise in [0, 1) at pixel centres xs (cols) by ys (rows)."""
    gx, gy = xs / cell, ys / cell
    x0, y0 = np.floor(gx).astype(np.int64), np.floor(gy).astype(np.int64)
    fx, fy = gx - x0, gy - y0
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)  # smoothstep
    lx = np.arange(x0.min(), x0.max() + 2)
    ly = np.arange(y0.min(), y0.max() + 2)
    lat = _lattice(lx[np.newaxis, :], ly[:, np.newaxis], seed)
    cx, cy = x0 - lx[0], y0 - ly[0]
    top = lat[cy][:, cx] * (1 - fx) + lat[cy][:, cx + 1] * fx
    bottom = lat[cy + 1][:, cx] * (1 - fx) + lat[cy + 1][:, cx + 1] * fx
    return top * (1 - fy)[:, np.newaxis] + bottom * fy[:, np.newaxis]


def _fbm(xs: np.ndarray, ys: np.ndarray, cell: float, seed: int, octaves: int = 3) -> np.ndarray:
    total = np.zeros((ys.size, xs.size))
    weight = 0.0
    for k in range(octaves):
        amp = 0.5**k
        total += amp * _value_noise(xs, ys, cell / 2**k, seed + k)
        weight += amp
    return total / weight


def _pixel_centres(bounds: Bounds, resolution: float) -> tuple[np.ndarray, np.ndarray]:
    minx, miny, maxx, maxy = bounds
    width = int(round((maxx - minx) / resolution))
    height = int(round((maxy - miny) / resolution))
    xs = minx + (np.arange(width) + 0.5) * resolution
    ys = maxy - (np.arange(height) + 0.5) * resolution
    return xs, ys


def land_cover(region: str, bounds: Bounds, resolution: float = RESOLUTION) -> np.ndarray:
    """Date-independent land-cover class indices (rows, cols) uint8 for a window of a region."""
    xs, ys = _pixel_centres(bounds, resolution)
    s = _seed("land-cover", region)
    cover = np.full((ys.size, xs.size), CLASSES.index("vegetation"), dtype=np.uint8)
    cover[_fbm(xs, ys, _SOIL_CELL, s + 300) > _SOIL_T] = CLASSES.index("bare-soil")
    cover[_fbm(xs, ys, _URBAN_CELL, s + 200) > _URBAN_T] = CLASSES.index("built-up")
    cover[_fbm(xs, ys, _WATER_CELL, s + 100) < _WATER_T] = CLASSES.index("water")
    return cover


def truth(region: str, date: str, bounds: Bounds, resolution: float = RESOLUTION) -> np.ndarray:
    """The ground truth of a scene: land cover with that date's clouds on top."""
    mask = land_cover(region, bounds, resolution)
    mask[cloud_mask(region, date, bounds, resolution)] = CLASSES.index("cloud")
    return mask


def cloud_mask(region: str, date: str, bounds: Bounds, resolution: float = RESOLUTION) -> np.ndarray:
    xs, ys = _pixel_centres(bounds, resolution)
    return _fbm(xs, ys, _CLOUD_CELL, _seed("clouds", region, date)) > _CLOUD_T


def _patch_uniform(xs: np.ndarray, ys: np.ndarray, seed: int, cell: float = _PATCH_CELL) -> np.ndarray:
    """One uniform [0, 1) value per square cell of ground (rows, cols): which library spectrum it takes."""
    return _lattice(np.floor(xs / cell)[np.newaxis, :], np.floor(ys / cell)[:, np.newaxis], seed)


def _spectra(region: str, date: str, classes: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """(rows, cols, 6) noise-free surface reflectance x 10000 of every pixel, from the class library."""
    lib = library()
    pick = _patch_uniform(xs, ys, _seed("patch", region))
    block = _patch_uniform(xs, ys, _seed("block", region), _BLOCK_CELL)
    under = _patch_uniform(xs + _PATCH_CELL / 2, ys + _PATCH_CELL / 2, _seed("soil", region))  # soil below cover
    cover = np.clip((_fbm(xs, ys, _COVER_CELL, _seed("cover", region)) - 0.3) / 0.4, 0.0, 1.0)
    bright = 0.55 + 0.45 * _fbm(xs, ys, _COVER_CELL * 2, _seed("bright", region))
    soil = lib["bare-soil"][(under * len(lib["bare-soil"])).astype(int)] * bright[..., np.newaxis]
    out = np.empty((*classes.shape, len(BANDS)))
    for k, name in enumerate(CLASSES):
        where = classes == k
        if not where.any():
            continue
        chosen = block if name == "built-up" else pick
        own = lib[name][(chosen[where] * len(lib[name])).astype(int)]
        if name == "bare-soil":
            own = own * bright[where][:, np.newaxis]
        if name in _COVER:
            lo, hi = _COVER[name]
            veg = lib["vegetation"][(under[where] * len(lib["vegetation"])).astype(int)]
            canopy = (lo + (hi - lo) * cover[where])[:, np.newaxis]
            base = soil[where] if name == "vegetation" else own
            own = canopy * (own if name == "vegetation" else veg) + (1 - canopy) * base
        out[where] = own
    haze = _fbm(xs, ys, _HAZE_CELL, _seed("haze", region, date))
    return out + np.clip((haze - 0.25) / 0.5, 0.0, 1.0)[..., np.newaxis] * _HAZE


def scene(
    region: str,
    date: str,
    bounds: Bounds,
    resolution: float = RESOLUTION,
    bands: tuple[str, ...] | list[str] = BANDS[:4],
) -> tuple[np.ndarray, np.ndarray]:
    """A window of a synthetic scene: (bands, rows, cols) uint16 reflectance x 10000 and its truth."""
    unknown = [b for b in bands if b not in BANDS]
    if unknown:
        raise ValueError(f"unknown band(s) {unknown} for source 'synthetic'; accepted: {', '.join(BANDS)}")
    classes = truth(region, date, bounds, resolution)
    xs, ys = _pixel_centres(bounds, resolution)
    band_idx = [BANDS.index(b) for b in bands]
    spectra = _spectra(region, date, classes, xs, ys)[..., band_idx]  # rows, cols, bands
    # Within-class texture (+-12 %) and sensor noise, both deterministic for the window.
    texture = 0.88 + 0.24 * _fbm(xs, ys, _TEXTURE_CELL, _seed("texture", region, date))
    rng = np.random.default_rng(_seed("noise", region, date, *(f"{v:.3f}" for v in bounds)))
    # Noise is drawn for every band and then selected, so a band's pixels do not depend on which
    # other bands were requested.
    noise = rng.normal(0.0, 1.0, (*classes.shape, len(BANDS)))[..., band_idx] * (0.03 * spectra + 25.0)
    values = spectra * texture[..., np.newaxis] + noise
    image = np.clip(np.rint(values), 1, 65535).astype(np.uint16).transpose(2, 0, 1)
    return image, classes
