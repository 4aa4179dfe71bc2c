"""write_cog / read_raster: valid COGs that keep their georeferencing; corrupt files named."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.errors import RasterioIOError
from rio_cogeo.cogeo import cog_validate

from geo_assets.geo.cog import CorruptRasterError, _read, read_raster, write_cog

TRANSFORM = Affine(10.0, 0.0, 399360.0, 0.0, -10.0, 5130240.0)
SOUTH = Affine(30.0, 0.0, 732000.0, 0.0, -30.0, -2790000.0)  # negative northings


def _array(dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.floating):
        return rng.normal(1000.0, 300.0, shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(1, info.max, shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize(
    "dtype, nodata, shape, crs, transform",
    [
        (np.uint8, 255, (1, 300, 200), "EPSG:32631", TRANSFORM),
        (np.uint16, 0, (4, 512, 512), "EPSG:32621", SOUTH),
        (np.float64, float("nan"), (3, 257, 129), "EPSG:32719", TRANSFORM),
        (np.float32, -9999.0, (2, 64, 64), "EPSG:32631", TRANSFORM),
        (np.uint16, None, (1, 40, 50), "EPSG:32631", TRANSFORM),
    ],
)
def test_round_trip_is_valid_cog(tmp_path, dtype, nodata, shape, crs, transform):
    data = _array(dtype, shape)
    if nodata is not None:
        data[:, :3, :5] = nodata  # some nodata pixels (NaN for float64)
    names = [f"band-{i}" for i in range(shape[0])]
    path = tmp_path / "out.tif"
    write_cog(path, data, crs, transform, nodata, names, tags={"source": "test"})

    valid, errors, _ = cog_validate(str(path))
    assert valid, errors
    out, profile = read_raster(path)
    assert out.dtype == np.dtype(dtype) and profile["dtype"] == np.dtype(dtype).name
    np.testing.assert_array_equal(out, data)  # NaN == NaN for array_equal on floats
    assert profile["crs"] == crs
    assert profile["transform"] == transform
    assert (profile["width"], profile["height"]) == (shape[2], shape[1])
    assert profile["band_names"] == names
    if nodata is None:
        assert profile["nodata"] is None
    elif np.isnan(nodata):
        assert np.isnan(profile["nodata"])
        assert np.isnan(out[:, :3, :5]).all() and not np.isnan(out[:, 3:, 5:]).any()
    else:
        assert profile["nodata"] == nodata
    with rasterio.open(path) as src:
        assert src.tags()["source"] == "test"
        assert src.compression.name.lower() == "deflate"
        assert src.block_shapes[0] == (256, 256)  # tiled, blocksize 256, whatever the size


def test_two_dimensional_array_is_one_band(tmp_path):
    data = _array(np.uint8, (100, 70))
    write_cog(tmp_path / "m.tif", data, "EPSG:32631", TRANSFORM, 255, ["class"])
    out, profile = read_raster(tmp_path / "m.tif")
    assert out.shape == (1, 100, 70)
    np.testing.assert_array_equal(out[0], data)
    assert profile["band_names"] == ["class"]


def test_overviews_built_for_large_rasters_and_optional(tmp_path):
    data = _array(np.uint16, (1, 1024, 1024))
    write_cog(tmp_path / "ov.tif", data, "EPSG:32631", TRANSFORM, 0)
    write_cog(tmp_path / "no.tif", data, "EPSG:32631", TRANSFORM, 0, overviews=False)
    with rasterio.open(tmp_path / "ov.tif") as src:
        assert src.overviews(1)  # AUTO overviews down to the block size
    with rasterio.open(tmp_path / "no.tif") as src:
        assert src.overviews(1) == []
    for name in ("ov.tif", "no.tif"):
        assert cog_validate(str(tmp_path / name))[0]


def test_no_band_names_gives_empty_descriptions(tmp_path):
    write_cog(tmp_path / "a.tif", _array(np.uint8, (2, 32, 32)), "EPSG:32631", TRANSFORM)
    _, profile = read_raster(tmp_path / "a.tif")
    assert profile["band_names"] == [None, None]
    assert profile["nodata"] is None


@pytest.fixture
def good_cog(tmp_path):
    path = tmp_path / "good.tif"
    write_cog(path, _array(np.uint16, (3, 512, 512)), "EPSG:32631", TRANSFORM, 0, ["b", "g", "r"])
    return path


@pytest.mark.parametrize("damage", ["truncate-half", "truncate-header", "empty", "garbage", "zero-tail"])
def test_corrupt_raster_error_names_the_path(tmp_path, good_cog, damage):
    raw = good_cog.read_bytes()
    bad = tmp_path / f"{damage}.tif"
    bad.write_bytes(
        {
            "truncate-half": raw[: len(raw) // 2],
            "truncate-header": raw[:200],
            "empty": b"",
            "garbage": b"not a tiff at all " * 50,
            "zero-tail": raw[: len(raw) // 2] + bytes(len(raw) - len(raw) // 2),
        }[damage]
    )
    with pytest.raises(CorruptRasterError) as err:
        read_raster(bad)
    assert str(bad) in str(err.value)
    assert isinstance(err.value, ValueError)


def test_missing_raster_is_reported_with_its_path(tmp_path):
    missing = tmp_path / "nope.tif"
    with pytest.raises(CorruptRasterError, match="nope.tif"):
        read_raster(missing)


def test_intact_file_still_reads(good_cog):
    data, profile = read_raster(good_cog)  # the control for the corruption tests
    assert data.shape == (3, 512, 512) and profile["band_names"] == ["b", "g", "r"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_a_full_device_raises_enospc():
    """A device that takes no more bytes fails the write with OSError(ENOSPC), which the stores name as a full
    disk; GDAL's own TIFF writer says "IO error writing tag data" without the errno (CI's disk-full failure)."""
    with pytest.raises(OSError) as failed:
        write_cog("/dev/full", _array(np.uint16, (4, 256, 256)), "EPSG:32631", TRANSFORM, 0)
    assert failed.value.errno == errno.ENOSPC, repr(failed.value)


RETRIED = {"GDAL_HTTP_MAX_RETRY": "3", "GDAL_HTTP_RETRY_DELAY": "0.05", "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}


@pytest.fixture
def served(tmp_path):
    """A COG over HTTP (ranges answered, as an object store does), behind a fault proxy."""
    import http.server
    import re
    import threading

    from devtools.faults import FaultProxy

    path = tmp_path / "tile.tif"
    write_cog(path, np.arange(64 * 64, dtype=np.uint16).reshape(64, 64), "EPSG:32631", Affine(10, 0, 0, 0, -10, 640))
    body = [path.read_bytes()]  # what the server holds: a test may replace it, or remove it (None)

    class Ranges(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            data = body[0]
            if data is None:  # removed since its size was asked (HEAD still answers): 404 Not Found
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            asked = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
            first, last = (int(asked[1]), min(int(asked[2]), len(data) - 1)) if asked else (0, len(data) - 1)
            self.send_response(206 if asked else 200)
            if asked:
                self.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
            self.send_header("Content-Length", str(last - first + 1))
            self.end_headers()
            self.wfile.write(data[first : last + 1])

        def do_HEAD(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body[0] or b"x" * 4096)))
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ranges)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with FaultProxy("127.0.0.1", server.server_address[1]) as proxy:
        yield proxy, f"/vsicurl/{proxy.url}/tile.tif", body
    server.shutdown()


def test_a_remote_read_that_gdal_retried_is_counted_whatever_rasterios_log_level(served, caplog):
    """GDAL retries a 503 itself and says so only in a warning: counted (geo/retries.py) even where the
    deployment set rasterio's loggers to ERROR, and a read that runs out of retries is the store failing,
    not a corrupt raster."""
    import logging

    from geo_assets.geo import retries

    proxy, url, _ = served
    rasterio_logger = logging.getLogger("rasterio")
    level = rasterio_logger.level
    rasterio_logger.setLevel(logging.ERROR)
    try:
        with rasterio.Env(**RETRIED, CPL_VSIL_CURL_NON_CACHED=url):
            retries.count_gdal_retries()
            proxy.inject("503", times=2, methods=("GET", "HEAD"))
            with retries.collecting() as retried, caplog.at_level(logging.WARNING, logger="geo_assets"):
                data, _ = read_raster(url)
            assert retried == ["HTTP 503", "HTTP 503"] and data.sum() == sum(range(64 * 64))
            said = [r.getMessage() for r in caplog.records if r.name.startswith("geo_assets")]
            assert said == [f"reading {url}: succeeded after retries: 2 (HTTP 503 x2)"]  # said once, never silent
            proxy.inject("503", methods=("GET", "HEAD"))
            with pytest.raises(
                OSError, match=r"cannot read raster .*tile.tif: still failing after retries: (\d+) \(HTTP 503 x\1\)"
            ):
                read_raster(url)
    finally:
        rasterio_logger.setLevel(level)


def test_corrupt_bytes_fetched_after_a_retry_are_the_raster_s_fault_not_the_store_s(served):
    """A 503, then a whole answer of bytes that are no GeoTIFF: GDAL's failure comes after a retry, but a
    second read with no retry fails the same way, so the raster is named corrupt, not the store failing."""
    from geo_assets.geo import retries

    proxy, url, body = served
    body[0] = b"II*\x00" + b"not a tiff" * 100
    with rasterio.Env(**RETRIED, CPL_VSIL_CURL_NON_CACHED=url):
        retries.count_gdal_retries()
        proxy.inject("503", times=1, methods=("GET", "HEAD"))
        with retries.collecting() as retried, pytest.raises(CorruptRasterError) as failed:
            read_raster(url)
    assert retried == ["HTTP 503"]
    assert str(failed.value).startswith(f"cannot read raster {url}: ") and "retries" not in str(failed.value)


def test_a_read_that_ran_out_of_retries_unclearly_is_read_once_more(served, caplog):
    """Four 503s on the object's ranges (its size answered): GDAL gives up after its three retries saying only
    "not recognized", which corrupt bytes would say too. Read once more, it succeeds: the pixels, and the
    retries said in one line. A failure that names the failed request (HTTP 503 on every request) is the
    store's at once, with no second read."""
    import logging

    from geo_assets.geo import retries

    proxy, url, _ = served
    with rasterio.Env(**RETRIED, CPL_VSIL_CURL_NON_CACHED=url):
        retries.count_gdal_retries()
        proxy.inject("503", times=4, methods=("GET",))
        with retries.collecting() as retried, caplog.at_level(logging.WARNING, logger="geo_assets"):
            data, _ = read_raster(url)
        assert data.sum() == sum(range(64 * 64)) and retried == ["HTTP 503"] * 3
        said = [r.getMessage() for r in caplog.records if r.name.startswith("geo_assets")]
        assert said == [f"reading {url}: succeeded after retries: 3 (HTTP 503 x3)"]

        proxy.inject("503", methods=("GET", "HEAD"))
        with retries.collecting() as once, pytest.raises(RasterioIOError):
            _read(url)  # one read, alone
        with retries.collecting() as retried, pytest.raises(OSError) as failed:
            read_raster(url)
    assert "HTTP response code: 503" in str(failed.value) and "still failing after retries" in str(failed.value)
    assert retried == once  # one read's retries: not read again


def test_an_object_gone_after_a_retry_is_the_object_s_fault_not_the_store_s(served):
    """A 503, retried, then 404 Not Found: the failure came after a retry, so it is read once more, and with
    no retry then, the raster is blamed (a removed object), not the store."""
    from geo_assets.geo import retries

    proxy, url, body = served
    body[0] = None
    with rasterio.Env(**RETRIED, CPL_VSIL_CURL_NON_CACHED=url):
        retries.count_gdal_retries()
        proxy.inject("503", times=1, methods=("GET",))
        with retries.collecting() as retried, pytest.raises(CorruptRasterError) as failed:
            read_raster(url)
    assert retried == ["HTTP 503"] and "retries" not in str(failed.value)
