"""Mosaics of tiles cut on one grid, read one tile at a time.

rasterio.merge opens every source at once, which fails past the open-file limit (1024 on many
systems) for large regions. Tiles of one grid need no resampling, so pasting each at its pixel
offset is exact and keeps a single file open.

`write_mosaic_cog` never holds the region in memory: it describes the tiles as a GDAL VRT (each
tile a source at its pixel offset) and lets GDAL's COG driver copy it window by window, overviews
included, within a fixed block cache.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Sequence
from xml.sax.saxutils import escape

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling

from geo_assets.geo.cog import CorruptRasterError
from geo_assets.geo.landcover import IGNORE
from geo_assets.geo.store import Store

CACHE_MB = 256  # GDAL's block cache while a mosaic is written: its memory, whatever the region


def _extent(tiles: Sequence[tuple[str, Sequence[float]]], res: float) -> tuple[float, float, int, int]:
    """(west, north, width px, height px) of the tiles' union."""
    minx = min(b[0] for _, b in tiles)
    maxy = max(b[3] for _, b in tiles)
    width = round((max(b[2] for _, b in tiles) - minx) / res)
    height = round((maxy - min(b[1] for _, b in tiles)) / res)
    return minx, maxy, width, height


def mosaic_vrt(
    tiles: Sequence[tuple[str, Sequence[float]]], crs: str, fill: float, description: str | None = None
) -> str:
    """A VRT (XML) of single-band (path, bounds) tiles of one grid, each pasted at its pixel offset;
    pixels no tile covers are `fill` (the band's nodata). Its size grows with the tile count only."""
    if not tiles:
        raise ValueError("no tiles to mosaic")
    try:
        with rasterio.open(tiles[0][0]) as first:
            res, dtype, (block_h, block_w) = first.res[0], first.dtypes[0], first.block_shapes[0]
    except rasterio.errors.RasterioIOError as exc:
        raise CorruptRasterError(f"cannot read tile {tiles[0][0]} for the mosaic: {exc}") from None
    minx, maxy, width, height = _extent(tiles, res)
    gdal_type = {
        "uint8": "Byte",
        "uint16": "UInt16",
        "int16": "Int16",
        "uint32": "UInt32",
        "int32": "Int32",
        "float32": "Float32",
        "float64": "Float64",
    }[dtype]
    sources = []
    for path, (left, bottom, right, top) in tiles:
        col, row = round((left - minx) / res), round((maxy - top) / res)
        w, h = round((right - left) / res), round((top - bottom) / res)
        sources.append(
            f'<SimpleSource><SourceFilename relativeToVRT="0">{escape(path)}</SourceFilename><SourceBand>1</SourceBand>'
            f'<SourceProperties RasterXSize="{w}" RasterYSize="{h}" DataType="{gdal_type}" BlockXSize="{block_w}" BlockYSize="{block_h}"/>'
            f'<SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/><DstRect xOff="{col}" yOff="{row}" xSize="{w}" ySize="{h}"/>'
            "</SimpleSource>"
        )
    return (
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">'
        f'<SRS dataAxisToSRSAxisMapping="1,2">{escape(CRS.from_user_input(crs).to_wkt())}</SRS>'
        f"<GeoTransform>{minx!r}, {res!r}, 0.0, {maxy!r}, 0.0, {-res!r}</GeoTransform>"
        f'<VRTRasterBand dataType="{gdal_type}" band="1">'
        + (f"<Description>{escape(description)}</Description>" if description else "")
        + f"<NoDataValue>{fill!r}</NoDataValue>"
        + "".join(sources)
        + "</VRTRasterBand></VRTDataset>"
    )


def write_mosaic_cog(
    path: str,
    tiles: Sequence[tuple[str, Sequence[float]]],
    crs: str,
    fill: float,
    description: str | None = None,
    blocksize: int = 512,
) -> None:
    """Write single-band (path, bounds) tiles of one grid as one COG at a local `path`, with overviews,
    copied by GDAL window by window (memory bounded by CACHE_MB, not by the region)."""
    vrt = mosaic_vrt(tiles, crs, fill, description)
    fd, vrt_path = tempfile.mkstemp(suffix=".vrt", dir=os.path.dirname(os.path.abspath(path)) or None)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(vrt)
        with rasterio.Env(GDAL_CACHEMAX=CACHE_MB):
            rasterio.shutil.copy(
                vrt_path,
                path,
                driver="COG",
                compress="DEFLATE",
                predictor="YES",
                blocksize=blocksize,
                overviews="AUTO",
                overview_resampling="NEAREST",
            )
    except rasterio.errors.RasterioIOError as exc:
        raise CorruptRasterError(f"cannot read the tiles for the mosaic: {exc}") from None
    finally:
        os.unlink(vrt_path)
    _check_whole(path)


def _check_whole(path: str) -> None:
    """Every block of every level of the COG at `path` lies within the file. GDAL's COG driver has
    returned success for a file cut short on a full device: libtiff's write errors reach stderr, not
    the caller. A lookup of each block's offset (no pixel is decoded), not a read-back."""
    size = os.path.getsize(path)
    with rasterio.open(path) as top:
        levels = len(top.overviews(1))
    for level in range(-1, levels):
        with rasterio.open(path, **({"overview_level": level} if level >= 0 else {})) as ds:
            for (row, col), _ in ds.block_windows(1):
                offset = ds.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=1)
                length = ds.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=1)
                end = int(offset or 0) + int(length or 0)
                if end > size:
                    raise OSError(
                        errno.EIO,
                        f"GDAL wrote the mosaic {path} cut short: block {row},{col} of "
                        f"{'the full resolution' if level < 0 else f'overview {level + 1}'} ends at byte {end:,} "
                        f"of a {size:,}-byte file (a full device? GDAL reports such write errors only on stderr)",
                    )


def mosaic(
    tiles: Sequence[tuple[str, Sequence[float]]],
    fill: float,
    indexes: list[int] | None = None,
    factor: int = 1,
    resampling: Resampling = Resampling.nearest,
) -> tuple[np.ndarray, Affine]:
    """(bands, rows, cols) mosaic of (path, bounds) tiles, decimated by an integer `factor`."""
    if not tiles:
        raise ValueError("no tiles to mosaic")
    with rasterio.open(tiles[0][0]) as first:
        res = first.res[0] * factor
        indexes = indexes or list(first.indexes)
        dtype = first.dtypes[0]
    minx, maxy, width, height = _extent(tiles, res)
    out = np.full((len(indexes), height, width), fill, dtype=dtype)
    for path, (left, bottom, right, top) in tiles:
        col, row = round((left - minx) / res), round((maxy - top) / res)
        w, h = round((right - left) / res), round((top - bottom) / res)
        try:
            with rasterio.open(path) as src:
                out[:, row : row + h, col : col + w] = src.read(
                    indexes, out_shape=(len(indexes), h, w), resampling=resampling
                )
        except rasterio.errors.RasterioIOError as exc:
            raise CorruptRasterError(f"cannot read tile {path} for the mosaic: {exc}") from None
    return out, Affine(res, 0.0, minx, 0.0, -res, maxy)


def write_class_mosaic(store: Store, tiles: Sequence[tuple[str, Sequence[float]]], crs: str, key: str) -> None:
    """Merge class tiles, given as (store key, bounds), into one COG at `key` with overviews for
    browsing whole regions; GDAL copies them window by window: memory does not grow with the region."""
    paths = [store.path(k) for k, _ in tiles]
    # About what the mosaic takes: what its tiles take, where they are local files (a stat each). GDAL
    # removes a mosaic it failed to write and drops the errno: the store refuses it before it starts instead.
    room = sum(os.path.getsize(p) for p in paths if os.path.isfile(p))
    with store.writing(key, room=room) as tmp, store.env():
        write_mosaic_cog(tmp, [(p, b) for p, (_, b) in zip(paths, tiles)], crs, IGNORE, "class", blocksize=512)
