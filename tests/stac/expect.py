"""What a tile should contain, computed from the local copies of the objects with plain numpy
(slicing and np.repeat), independently of the reader under test."""

from __future__ import annotations

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import reproject

from devtools.emulators.stac_data import Catalogue

BANDS = ["blue", "green", "red", "nir"]
SCL_CLOUD = [3, 8, 9, 10]


def local(cat: Catalogue, item_id: str, asset: str) -> tuple[np.ndarray, rasterio.Affine, str]:
    with rasterio.open(cat.local(item_id, asset)) as src:
        return src.read(1), src.transform, src.crs.to_string()


def window(array: np.ndarray, transform, bounds, resolution: float) -> np.ndarray:
    """The tile's pixels from an array on an aligned grid, coarser grids repeated (nearest)."""
    factor = int(round(transform.a / resolution))
    if factor > 1:
        array = np.repeat(np.repeat(array, factor, axis=0), factor, axis=1)
    col = int(round((bounds[0] - transform.c) / resolution))
    row = int(round((transform.f - bounds[3]) / resolution))
    size = int(round((bounds[2] - bounds[0]) / resolution))
    assert col >= 0 and row >= 0, "the test tiles lie inside the test scenes"
    return array[row : row + size, col : col + size]


def warped(
    array: np.ndarray, transform, crs: str, bounds, resolution: float, dst_crs: str, nodata: int, resampling: Resampling
) -> np.ndarray:
    size = int(round((bounds[2] - bounds[0]) / resolution))
    out = np.full((size, size), nodata, dtype=array.dtype)
    reproject(
        array,
        out,
        src_transform=transform,
        src_crs=crs,
        src_nodata=nodata,
        dst_nodata=nodata,
        dst_crs=dst_crs,
        dst_transform=rasterio.transform.from_origin(bounds[0], bounds[3], resolution, resolution),
        resampling=resampling,
    )
    return out


def s2_layer(cat: Catalogue, item_id: str, bounds, offset: int, dst_crs: str = "EPSG:32719"):
    """(harmonised bands, valid, cloud) of one Sentinel-2 item on a 10 m tile."""
    assets = (
        {b: b for b in BANDS}
        if "blue" in cat.item(item_id)["assets"]
        else dict(zip(BANDS, ["B02", "B03", "B04", "B08"]))
    )
    scl_key = "scl" if "scl" in cat.item(item_id)["assets"] else "SCL"

    def tile(asset):
        array, transform, crs = local(cat, item_id, asset)
        if crs == dst_crs:
            return window(array, transform, bounds, 10.0)
        # The documented rule off the lattice: reflectance bilinear, the SCL mask nearest.
        return warped(
            array,
            transform,
            crs,
            bounds,
            10.0,
            dst_crs,
            0,
            Resampling.nearest if asset == scl_key else Resampling.bilinear,
        )

    dn = np.stack([tile(assets[b]) for b in BANDS]).astype(np.int64)
    scl = tile(scl_key)
    valid = (scl != 0) & (dn != 0).all(axis=0)
    harmonised = np.where(dn == 0, 0, np.clip(dn - offset, 1, 65535))
    return harmonised, valid, np.isin(scl, SCL_CLOUD)


def landsat_layer(cat: Catalogue, item_id: str, bounds):
    dn = np.stack(
        [window(*local(cat, item_id, a)[:2], bounds, 30.0) for a in ("blue", "green", "red", "nir08")]
    ).astype(np.float64)
    qa = window(*local(cat, item_id, "qa_pixel")[:2], bounds, 30.0)
    valid = ((qa & 1) == 0) & (dn != 0).all(axis=0)
    cloud = (qa & ((1 << 1) | (1 << 3) | (1 << 4))) != 0
    reflectance = np.where(dn == 0, 0, np.clip(np.rint((dn * 2.75e-05 - 0.2) * 10000), 1, 65535))
    return reflectance, valid, cloud


def mosaic(layers):
    """The documented rule, per pixel: the first clear valid layer; else the first valid one, as cloud."""
    data = np.stack([layer[0] for layer in layers])  # (items, bands, rows, cols)
    valid = np.stack([layer[1] for layer in layers])
    clear = valid & ~np.stack([layer[2] for layer in layers])
    has_clear, has_valid = clear.any(axis=0), valid.any(axis=0)
    index = np.where(has_clear, clear.argmax(axis=0), valid.argmax(axis=0))
    out = np.take_along_axis(data, index[None, None], axis=0)[0]
    out[:, ~has_valid] = 0
    return out.astype(np.uint16), has_valid, has_valid & ~has_clear, index
