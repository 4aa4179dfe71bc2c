"""Deterministic Sentinel-2-like scenes with a ground-truth land-cover mask.

Land cover is drawn from smooth noise fields defined on world coordinates, so any window of any
size can be generated on its own and always matches the same window cut from a larger scene.
Land cover is seeded by the region, clouds by region and date. Class spectra approximate
Sentinel-2 L2A surface reflectance (x 10000) for each class.
"""

from __future__ import annotations

import hashlib

import numpy as np

from geo_assets.geo.grid import Bounds
from geo_assets.geo.landcover import CLASSES

BANDS: tuple[str, ...] = ("blue", "green", "red", "nir", "swir1", "swir2")
RESOLUTION = 10.0
NODATA = 0  # never produced: reflectances are clipped to >= 1

# Mean reflectance x 10000 per class and band (B2, B3, B4, B8, B11, B12), after typical S2 L2A values.
SPECTRA = np.array(
    [
        [620, 540, 330, 180, 90, 60],  # water: dark, NIR and SWIR absorbed
        [350, 650, 380, 3300, 1700, 800],  # vegetation: red edge, bright NIR
        [1050, 1120, 1230, 1850, 2150, 1900],  # built-up: flat, moderately bright
        [900, 1250, 1700, 2300, 3100, 2600],  # bare soil: rising towards SWIR
        [6800, 6900, 7100, 7400, 4800, 3700],  # cloud: bright and white
    ],
    dtype=np.float64,
)
assert SPECTRA.shape[0] == len(CLASSES)

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
    spectra = SPECTRA[classes][..., band_idx]  # rows, cols, bands
    # Within-class texture (+-12 %) and sensor noise, both deterministic for the window.
    texture = 0.88 + 0.24 * _fbm(xs, ys, _TEXTURE_CELL, _seed("texture", region, date))
    rng = np.random.default_rng(_seed("noise", region, date, *(f"{v:.3f}" for v in bounds)))
    # Noise is drawn for every band and then selected, so a band's pixels do not depend on which
    # other bands were requested.
    noise = rng.normal(0.0, 1.0, (*classes.shape, len(BANDS)))[..., band_idx] * (0.03 * spectra + 25.0)
    values = spectra * texture[..., np.newaxis] + noise
    image = np.clip(np.rint(values), 1, 65535).astype(np.uint16).transpose(2, 0, 1)
    return image, classes
