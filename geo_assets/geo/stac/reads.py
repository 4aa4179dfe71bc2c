"""Read a scene's COG windows, per tile, anywhere (a thread here, a Dask worker)."""

from __future__ import annotations

import re
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.session import AWSSession
from rasterio.transform import from_origin
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window as RasterWindow

from geo_assets.geo import retries
from geo_assets.geo.grid import Bounds
from geo_assets.geo.stac.collections import (
    LANDSAT_OFFSET,
    LANDSAT_SCALE,
    NODATA,
    QA_CLOUD,
    QA_FILL,
    RESAMPLING,
    SCL_CLOUD,
    SCL_NODATA,
    Collection,
)
from geo_assets.geo.stac.errors import CorruptObjectError, ImageryError, ItemMismatchError, ObjectMissingError
from geo_assets.geo.stac.http import TRANSIENT_STATUSES
from geo_assets.geo.stac.search import PlannedItem
from geo_assets.geo.stac.settings import ImagerySettings
from geo_assets.geo.stac.signing import redact_gdal_lines, redacted, remember_signed


@lru_cache(maxsize=8)
def _aws_session(
    no_sign: bool, access_key: str | None, secret_key: str | None, region: str | None, requester_pays: bool
) -> AWSSession:
    # Cached: building one creates a boto3 session, which is slow; rasterio only reads credentials from it.
    if no_sign:
        return AWSSession(aws_unsigned=True, region_name=region)
    return AWSSession(
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        requester_pays=requester_pays,
    )


def gdal_env(settings: ImagerySettings) -> rasterio.Env:
    """GDAL configuration for reading source COGs: the S3 endpoint and credentials, HTTP retries (counted
    from here on, geo/retries.py)."""
    retries.count_gdal_retries()
    redact_gdal_lines()
    options = {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # a COG is one object: never list its "directory"
        "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        **settings.http.gdal(),
    }
    if settings.s3_endpoint:
        parts = urlsplit(settings.s3_endpoint if "://" in settings.s3_endpoint else f"https://{settings.s3_endpoint}")
        options.update(
            AWS_S3_ENDPOINT=parts.netloc,
            AWS_HTTPS="YES" if parts.scheme == "https" else "NO",
            AWS_VIRTUAL_HOSTING="FALSE",
        )
    session = _aws_session(
        settings.s3_no_sign,
        settings.s3_access_key,
        settings.s3_secret_key,
        settings.s3_region,
        settings.s3_requester_pays,
    )
    return rasterio.Env(session=session, **options)


def gdal_path(href: str) -> str:
    if href.startswith("s3://"):
        return "/vsis3/" + href[len("s3://") :]
    if href.startswith(("http://", "https://")):
        return "/vsicurl/" + href
    return href


def _read_error(href: str, exc: Exception, retried: list[str]) -> ImageryError:
    """GDAL's failure to read `href` as ours: missing, denied, unavailable (after retries) or corrupt."""
    text = "; ".join(dict.fromkeys(str(e) for e in (exc, exc.__cause__, exc.__context__) if e))  # GDAL's own words
    text = redacted(text)  # GDAL names the signed URL it read: never its token
    lowered = text.lower()
    status = re.search(r"(?:response|error) code:? ?(\d{3})", lowered)
    code = int(status.group(1)) if status else None
    if code == 404 or any(s in lowered for s in ("does not exist", "no such file", "nosuchkey", "blobnotfound")):
        return ObjectMissingError(f"{href}: object not found ({text[:300]})")
    if code in (401, 403) or any(s in lowered for s in ("access denied", "accessdenied", "authenticationfailed")):
        return ImageryError(f"{href}: access denied ({text[:300]})")
    # GDAL gave up after its retries (and, where it named no failed request, on a second read: retries.read):
    # whatever it says then ("not recognized"), the server failed.
    if retried:
        return ImageryError(
            f"{href}: unavailable, still failing after retries: {retries.describe(retried)} ({text[:300]})"
        )
    if (code is not None and code in TRANSIENT_STATUSES) or any(
        s in lowered for s in ("connect", "timed out", "timeout")
    ):
        return ImageryError(f"{href}: unavailable, still failing after the HTTP retries ({text[:300]})")
    if any(
        s in lowered for s in ("not recognized", "tiff", "failed", "corrupt", "truncat", "short read", "ireadblock")
    ):
        return CorruptObjectError(f"{href}: corrupt or truncated GeoTIFF ({text[:300]})")
    return ImageryError(f"{href}: cannot read ({text[:300]})")


def _integral(*values: float) -> bool:
    return all(abs(v - round(v)) < 1e-6 for v in values)


@dataclass(frozen=True)
class _Open:
    src: rasterio.DatasetReader
    crs: CRS
    transform: Any  # rasterio's Affine and BoundingBox (rasterio ships no types)
    bounds: Any
    dtype: str


_OPEN_PER_THREAD = 32


class _ThreadDatasets:
    """The source datasets one thread keeps open, all of one scene plan; its lock is held while
    the thread reads, so another thread may close them only while they are idle."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.plan: str | None = None
        self.open: OrderedDict[str, _Open] = OrderedDict()

    def close(self) -> None:
        for entry in self.open.values():
            entry.src.close()
        self.open.clear()
        self.plan = None

    def dataset(self, path: str, plan: str) -> _Open:
        """An open dataset for `path`, kept and reused by this thread's following tiles of `plan`.

        A source COG's blocks (512-1024 px) span several 256 px tiles, and GDAL caches decoded blocks
        per open dataset: reopening for every tile would fetch and decompress each block again.
        Datasets are not shared between threads (GDAL handles are not thread-safe); a small LRU
        bounds how many stay open. Its georeferencing is read once, with it.

        Threads outlive a run (engine.threads, Dask workers), and an object may be rewritten at the same
        path between runs (a scene delivered again). So a thread keeps one plan's datasets only: its
        first read of another plan closes them, and the idle ones other threads keep for older plans
        (closing also drops what GDAL cached of a remote object), so the new plan reads each object
        as it is now.
        """
        if self.plan != plan:
            self.close()
            self.plan = plan
            with _ALL_LOCK:
                others = list(_ALL_THREADS)
            for other in others:
                if other is not self and other.plan not in (None, plan) and other.lock.acquire(blocking=False):
                    try:
                        other.close()
                    finally:
                        other.lock.release()
        entry = self.open.get(path)
        if entry is None or entry.src.closed:
            src = rasterio.open(path)
            entry = self.open[path] = _Open(src, src.crs, src.transform, src.bounds, src.dtypes[0])
            while len(self.open) > _OPEN_PER_THREAD:
                self.open.popitem(last=False)[1].src.close()
        else:
            self.open.move_to_end(path)
        return entry


_ALL_THREADS: weakref.WeakSet[_ThreadDatasets] = weakref.WeakSet()  # a thread's entry goes with the thread
_ALL_LOCK = threading.Lock()  # a set must not change while it is copied
_LOCAL = threading.local()


def _thread_datasets() -> _ThreadDatasets:
    mine = getattr(_LOCAL, "datasets", None)
    if mine is None:
        mine = _LOCAL.datasets = _ThreadDatasets()
        with _ALL_LOCK:
            _ALL_THREADS.add(mine)
    return mine


@lru_cache(maxsize=64)
def _same_crs(src_crs: CRS, crs: str) -> bool:
    return src_crs == CRS.from_user_input(crs)


def same_crs(a: str, b: str) -> bool:
    return _same_crs(CRS.from_user_input(a), b)


def close_datasets() -> None:
    """Close this thread's kept-open datasets (e.g. between benchmark runs, or to drop cached blocks)."""
    mine = _thread_datasets()
    with mine.lock:
        mine.close()


def read_window(
    href: str,
    path: str,
    declared_crs: str | None,
    bounds: Bounds,
    size: tuple[int, int],
    crs: str,
    resolution: float,
    fill: int,
    resampling: Resampling = Resampling.nearest,
    plan: str = "",
) -> np.ndarray:
    """One band of one COG on the tile's grid (rows, cols); `fill` where the COG has no pixels.
    `plan` names the scene plan the read belongs to (datasets are kept open within it).

    In the tile's CRS with a pixel grid that lines up (same origin modulo pixel size; the source
    may be coarser, like 20 m SCL under a 10 m tile), it is a plain windowed read that GDAL serves
    from the COG's internal blocks: each tile pixel is the source pixel it lies in. Otherwise
    (another CRS, or a grid that does not line up) GDAL's warper resamples it onto the tile grid
    with `resampling` (bilinear for reflectance, nearest for quality masks; see `RESAMPLING`).
    """
    left, bottom, right, top = bounds
    rows, cols = size
    mine = _thread_datasets()

    def attempt() -> np.ndarray:
        with mine.lock:  # other threads close this thread's datasets only while it reads none
            ds = mine.dataset(path, plan)  # kept open for the plan's next tiles
            src = ds.src
            if declared_crs is not None and ds.crs != CRS.from_user_input(declared_crs):
                raise ItemMismatchError(f"{href}: the COG is in {ds.crs}, but its STAC item declares {declared_crs}")
            if src.count != 1 or not np.issubdtype(src.dtypes[0], np.unsignedinteger):
                raise ItemMismatchError(  # else band 1 of it would be read as if it were the band, or floats cast
                    f"{href}: the COG has {src.count} band(s) of {src.dtypes[0]}; a band asset is one band of "
                    "unsigned integers (reflectance DN or a quality mask)"
                )
            t = ds.transform
            if _same_crs(ds.crs, crs) and t.b == 0 and t.d == 0 and t.e < 0:
                sb = ds.bounds
                x0, x1, y0, y1 = max(left, sb.left), min(right, sb.right), max(bottom, sb.bottom), min(top, sb.top)
                if x0 >= x1 or y0 >= y1:
                    return np.full(size, fill, dtype=ds.dtype)
                c0, c1, r0, r1 = (
                    (x0 - left) / resolution,
                    (x1 - left) / resolution,
                    (top - y1) / resolution,
                    (top - y0) / resolution,
                )
                sc0, sc1, sr0, sr1 = ((x0 - t.c) / t.a, (x1 - t.c) / t.a, (t.f - y1) / -t.e, (t.f - y0) / -t.e)
                if _integral(c0, c1, r0, r1, sc0, sc1, sr0, sr1):
                    c0, c1, r0, r1, sc0, sc1, sr0, sr1 = (int(round(v)) for v in (c0, c1, r0, r1, sc0, sc1, sr0, sr1))
                    window = RasterWindow(sc0, sr0, sc1 - sc0, sr1 - sr0)
                    if (r0, c0, r1, c1) == (0, 0, rows, cols) and (window.height, window.width) == size:
                        return src.read(1, window=window)  # the common case: the tile lies inside the COG, same pixels
                    out = np.full(size, fill, dtype=ds.dtype)
                    out[r0:r1, c0:c1] = src.read(
                        1, window=window, out_shape=(r1 - r0, c1 - c0), resampling=Resampling.nearest
                    )
                    return out
            with WarpedVRT(
                src,
                crs=crs,
                transform=from_origin(left, top, resolution, resolution),
                width=cols,
                height=rows,
                resampling=resampling,
                src_nodata=src.nodata if src.nodata is not None else fill,
                nodata=fill,
            ) as vrt:
                return vrt.read(1)

    return retries.read(href, RasterioError, partial(_read_error, href), attempt)


def _decode_mask(kind: str, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(valid, cloud) from a quality band."""
    if kind == "sentinel-2":
        return mask != SCL_NODATA, np.isin(mask, SCL_CLOUD)
    return (mask & QA_FILL) == 0, (mask & QA_CLOUD) != 0


def to_reflectance(kind: str, dn: np.ndarray, dn_offset: int = 0) -> np.ndarray:
    """Source DN -> uint16 reflectance x 10000, clipped to [1, 65535]; DN 0 (no data) stays 0."""
    if kind == "sentinel-2":
        value = dn.astype(np.int32) - dn_offset  # subtracted here and nowhere else
    else:
        value = np.rint((dn.astype(np.float64) * LANDSAT_SCALE + LANDSAT_OFFSET) * 10000)
    return np.where(dn == NODATA, NODATA, np.clip(value, 1, 65535)).astype(np.uint16)


def read_mosaic(
    collection: Collection,
    items: tuple[PlannedItem, ...],
    bands: list[str],
    bounds: Bounds,
    size: tuple[int, int],
    crs: str,
    settings: ImagerySettings,
    plan: str = "",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data (bands, rows, cols) uint16, valid, cloud) of one tile, mosaicked from `items` of the scene plan `plan`.

    Mosaic rule, with `items` in plan order (eo:cloud_cover ascending, then datetime): per pixel,
    the first item with a valid, cloud-free pixel wins; where every item is cloudy, the first
    valid one is kept and the pixel is marked cloud. Items stop being read once every pixel has a
    clear value, and an item is skipped without reading bands where it cannot change the result.
    """
    rows, cols = size
    data = np.zeros((len(bands), rows, cols), dtype=np.uint16)
    valid = np.zeros(size, dtype=bool)
    cloud = np.zeros(size, dtype=bool)
    clear = np.zeros(size, dtype=bool)
    sign = settings.href_signer() if collection.signed else None
    left, bottom, right, top = bounds
    fill_mask = SCL_NODATA if collection.kind == "sentinel-2" else QA_FILL
    with gdal_env(settings):
        for item in items:
            ix0, iy0, ix1, iy1 = item.bounds
            if ix0 >= right or ix1 <= left or iy0 >= top or iy1 <= bottom:
                continue
            if clear.all():
                break

            def read(key: str, fill: int, item=item) -> np.ndarray:
                href = item.hrefs[key]
                path = gdal_path(remember_signed(sign(href)) if sign else href)  # signed per read: tokens expire
                resampling = RESAMPLING["mask" if key == "mask" else "reflectance"]
                return read_window(
                    href, path, item.crs, bounds, size, crs, collection.resolution, fill, resampling, plan
                )

            item_valid, item_cloud = _decode_mask(collection.kind, read("mask", fill_mask))
            if not (item_valid & ~clear & (~item_cloud | ~valid)).any():
                continue
            dn = np.stack([read(b, NODATA) for b in bands])
            item_valid &= (dn != NODATA).all(axis=0)
            take = item_valid & ~clear & (~item_cloud | ~valid)
            for i, band in enumerate(bands):
                data[i][take] = to_reflectance(collection.kind, dn[i][take], item.dn_offsets[band])
            cloud[take] = item_cloud[take]
            valid |= take
            clear |= take & ~item_cloud
    return data, valid, cloud
