"""Cloud-Optimised GeoTIFF writing and reading, through GDAL's COG driver."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import RasterioIOError
from rasterio.io import MemoryFile

from geo_assets.geo import retries

log = logging.getLogger(__name__)


class CorruptRasterError(ValueError):
    """A raster that cannot be opened or read, named by its path."""


def write_cog(
    path: str | Path,
    array: np.ndarray,
    crs: str,
    transform: Affine,
    nodata: float | None = None,
    band_names: Sequence[str] | None = None,
    tags: dict[str, str] | None = None,
    overviews: bool = True,
    blocksize: int = 256,
) -> None:
    """Write a (bands, rows, cols) or (rows, cols) array as a DEFLATE-compressed COG at a local path.

    GDAL builds the COG in memory and Python writes its bytes: GDAL's TIFF writer reports a full
    device as "IO error writing tag data", without the errno, whereas Python's write raises
    OSError(ENOSPC), which the local store names as a full disk (geo_assets.geo.store). The cost is
    the encoded COG held beside GDAL's copy of the array while it is built: nothing at the default
    256 px tile; at the largest tile allowed (4096 px) of bands that do not compress, about twice
    the peak of a write straight to disk. Callers make the file visible atomically (see
    resources.storage).
    """
    data = array[np.newaxis] if array.ndim == 2 else array
    count, height, width = data.shape
    options = dict(
        compress="DEFLATE",
        predictor="YES",  # horizontal differencing for integers, floating-point predictor for floats
        blocksize=blocksize,
        overviews="AUTO" if overviews else "NONE",
        overview_resampling="NEAREST",
        num_threads=1,  # tiles are written in parallel already
    )
    with MemoryFile() as memory:
        with memory.open(
            driver="COG",
            width=width,
            height=height,
            count=count,
            dtype=data.dtype,
            crs=crs,
            transform=transform,
            nodata=nodata,
            **options,
        ) as dst:
            dst.write(data)
            if band_names:
                for i, name in enumerate(band_names, start=1):
                    dst.set_band_description(i, name)
            if tags:
                dst.update_tags(**tags)
        Path(path).write_bytes(memory.getbuffer())


def read_raster(path: str | Path) -> tuple[np.ndarray, dict]:
    """Read every band of a raster; the profile carries crs, transform, nodata and band names.

    A remote read that GDAL retried (geo/retries.py counts its retries) says so once it succeeds; one that
    failed after retries is the store's failure, not a corrupt raster, and its error says so."""
    return retries.read(str(path), RasterioIOError, partial(_read_error, path), partial(_read, path))


def _read_error(path: str | Path, exc: Exception, retried: list[str]) -> Exception:
    if retried:
        return OSError(f"cannot read raster {path}: still failing after retries: {retries.describe(retried)}: {exc}")
    return CorruptRasterError(f"cannot read raster {path}: {exc}")


def _read(path: str | Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as src:
        data = src.read()
        profile = dict(
            crs=src.crs.to_string() if src.crs else None,
            transform=src.transform,
            nodata=src.nodata,
            width=src.width,
            height=src.height,
            dtype=src.dtypes[0],
            band_names=list(src.descriptions),
        )
    return data, profile
