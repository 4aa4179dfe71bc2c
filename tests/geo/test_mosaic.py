"""Mosaics paste tiles of one grid exactly, one open file at a time."""

import resource
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from geo_assets.geo import mosaic as mosaic_module
from geo_assets.geo.cog import CorruptRasterError, write_cog
from geo_assets.geo.mosaic import mosaic, write_mosaic_cog


def _tiles(tmp_path, cols=3, rows=2, px=32):
    tiles, full = [], np.arange(rows * px * cols * px, dtype=np.uint16).reshape(rows * px, cols * px)
    for r in range(rows):
        for c in range(cols):
            left, top = 1000 + c * px * 10, 5000 - r * px * 10
            path = tmp_path / f"{c}_{r}.tif"
            write_cog(
                path,
                full[r * px : (r + 1) * px, c * px : (c + 1) * px],
                "EPSG:32631",
                Affine(10, 0, left, 0, -10, top),
                0,
            )
            tiles.append((str(path), (left, top - px * 10, left + px * 10, top)))
    return tiles, full


def test_mosaic_is_exact_and_georeferenced(tmp_path):
    tiles, full = _tiles(tmp_path)
    data, transform = mosaic(tiles[::-1], 0)  # order does not matter
    np.testing.assert_array_equal(data[0], full)
    assert transform == Affine(10, 0, 1000, 0, -10, 5000)


def test_missing_tiles_are_filled(tmp_path):
    tiles, full = _tiles(tmp_path)
    data, _ = mosaic(tiles[:1] + tiles[-1:], 7)
    assert data.shape == (1, 64, 96)
    assert (data[0, 32:, :32] == 7).all() and (data[0, :32, 32:64] == 7).all()
    np.testing.assert_array_equal(data[0, 32:, 64:], full[32:, 64:])


def test_decimation(tmp_path):
    tiles, _ = _tiles(tmp_path)
    data, transform = mosaic(tiles, 0, factor=4)
    assert data.shape == (1, 16, 24) and transform.a == 40


def test_more_tiles_than_the_open_file_limit(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    tiles, full = _tiles(tmp_path, cols=12, rows=8, px=16)  # 96 tiles
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    try:
        data, _ = mosaic(tiles, 0)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    np.testing.assert_array_equal(data[0], full)


def test_corrupt_tile_is_named(tmp_path):
    tiles, _ = _tiles(tmp_path)
    with open(tiles[2][0], "r+b") as f:
        f.truncate(200)
    with pytest.raises(CorruptRasterError, match="2_0.tif"):
        mosaic(tiles, 0)


def test_the_mosaic_cog_equals_the_mosaic_and_fills_missing_tiles(tmp_path):
    tiles, full = _tiles(tmp_path)
    tiles = [t for t in tiles if not t[0].endswith("1_0.tif")]  # a hole: nodata there
    write_mosaic_cog(str(tmp_path / "m.tif"), tiles, "EPSG:32631", 0, "class", blocksize=64)
    expected, transform = mosaic(tiles, 0)
    with rasterio.open(tmp_path / "m.tif") as m:
        np.testing.assert_array_equal(m.read(), expected)
        assert (m.read(1)[:32, 32:64] == 0).all()
        assert m.transform == transform and m.crs.to_string() == "EPSG:32631" and m.nodata == 0
        assert m.descriptions == ("class",) and m.block_shapes == [(64, 64)] and m.overviews(1)


def test_the_mosaic_cog_is_written_by_windows(tmp_path, monkeypatch):
    """Writing a 64 MiB mosaic raises the process's peak memory by far less than the mosaic's size."""
    monkeypatch.setattr(mosaic_module, "CACHE_MB", 8)
    px, side = 512, 16
    tiles = []
    for r in range(side):
        for c in range(side):
            path = tmp_path / f"{c}_{r}.tif"
            data = np.add.outer(np.arange(px), np.arange(px)).astype(np.uint8) // 32 + (r * side + c) % 7
            write_cog(path, data, "EPSG:32631", Affine(10, 0, c * px * 10, 0, -10, 5_000_000 - r * px * 10), 255)
            tiles.append(
                (str(path), (c * px * 10, 5_000_000 - (r + 1) * px * 10, (c + 1) * px * 10, 5_000_000 - r * px * 10))
            )
    region_mb = (side * px) ** 2 / 2**20
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak (VmHWM) to the current resident size
    except OSError:
        pytest.skip("this kernel cannot reset a process's peak memory (/proc/self/clear_refs)")
    before = _status_mb("VmRSS")
    write_mosaic_cog(str(tmp_path / "m.tif"), tiles, "EPSG:32631", 255, "class")
    grew = _status_mb("VmHWM") - before
    assert grew < region_mb / 2, f"peak memory grew {grew:.0f} MB writing a {region_mb:.0f} MB mosaic"
    with rasterio.open(tmp_path / "m.tif") as m:
        assert m.shape == (side * px, side * px)
        np.testing.assert_array_equal(
            m.read(1, window=((px, 2 * px), (0, px))),
            np.add.outer(np.arange(px), np.arange(px)).astype(np.uint8) // 32 + side % 7,
        )


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def test_a_mosaic_on_a_full_disk_fails_naming_it_and_publishes_nothing(tmp_path):
    """GDAL removes a mosaic it failed to write and drops the errno ("TIFFAppendToStrip:Seek error"): the
    store refuses a mosaic whose device has less room than its tiles take, before GDAL starts, naming
    the device; it leaves no temporary, and the same write succeeds once the device has room."""
    from devtools.tmpfs import MountRefused, resize, tmpfs
    from geo_assets.geo.mosaic import write_class_mosaic
    from geo_assets.geo.store import Store, local_root

    disk = tmp_path / "disk"
    disk.mkdir()
    classes = np.random.default_rng(0).integers(0, 255, (4 * 128, 4 * 128), dtype=np.uint8)  # does not compress
    try:
        with tmpfs(disk, "400k"):  # the tiles fit, with room for about half a mosaic
            store = Store(local_root(disk))
            tiles = []
            for r in range(4):
                for c in range(4):
                    left, top = 1000 + c * 1280, 5000 - r * 1280
                    with store.writing(f"classes/{c}_{r}.tif") as tmp:
                        write_cog(
                            tmp,
                            classes[r * 128 : (r + 1) * 128, c * 128 : (c + 1) * 128],
                            "EPSG:32631",
                            Affine(10, 0, left, 0, -10, top),
                            255,
                        )
                    tiles.append((f"classes/{c}_{r}.tif", (left, top - 1280, left + 1280, top)))
            with pytest.raises(OSError) as failed:
                write_class_mosaic(store, tiles, "EPSG:32631", "classes/mosaic.tif")
            message = str(failed.value)
            assert failed.value.errno == 28 and "no space left" in message, message
            assert store.uri("classes/mosaic.tif") in message and str(disk) in message
            assert store.list("classes", temporaries=True) == sorted(k for k, _ in tiles)

            resize(disk, "4m")
            write_class_mosaic(store, tiles, "EPSG:32631", "classes/mosaic.tif")
            with rasterio.open(store.path("classes/mosaic.tif")) as written:
                np.testing.assert_array_equal(written.read(1), classes)
    except MountRefused as exc:
        pytest.skip(f"no small disk to fill: {exc}")


def test_a_mosaic_gdal_cut_short_on_a_full_device_raises_instead_of_returning(tmp_path):
    """On a device with about 160 KB free, GDAL's COG driver prints its write errors to stderr and returns
    success with the file cut short (a 12 KB file whose blocks reach past its end): the write raises.
    The tiles lie in a short folder under /tmp: the VRT naming them takes room on the small device too,
    and what GDAL does depends on the bytes left."""
    import shutil
    import tempfile

    from devtools.tmpfs import MountRefused, tmpfs

    folder = Path(tempfile.mkdtemp(dir="/tmp"))  # /tmp/tmpXXXXXXXX: the VRT's size is the same on every run
    tiles = []
    try:
        for r in range(20):
            for c in range(20):
                left, top = 1000 + c * 640, 500000 - r * 640
                path = folder / f"{c}_{r}.tif"
                tile = np.full((64, 64), (r * 20 + c) % 9, np.uint8)
                write_cog(path, tile, "EPSG:32631", Affine(10, 0, left, 0, -10, top), 255)
                tiles.append((str(path), (left, top - 640, left + 640, top)))
        disk = tmp_path / "disk"
        disk.mkdir()
        with tmpfs(disk, "160k"):
            with pytest.raises(OSError, match="cut short"):
                write_mosaic_cog(str(disk / "mosaic.tif"), tiles, "EPSG:32631", 255, "class")
    except MountRefused as exc:
        pytest.skip(f"no small disk to fill: {exc}")
    finally:
        shutil.rmtree(folder)
