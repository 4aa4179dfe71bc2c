"""S3Store and GCSStore against real servers: every Store method, atomicity, errors, pickling."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from geo_assets.geo.cog import read_raster, write_cog
from geo_assets.geo.store import BucketNotFoundError, GCSStore, S3Store, Store, make_store

TRANSFORM = from_origin(400000.0, 5121280.0, 10.0, 10.0)


def _cog(path: str, array: np.ndarray) -> None:
    write_cog(path, array, "EPSG:32631", TRANSFORM, 0, [f"b{i}" for i in range(array.shape[0])])


def _scene(seed: int, bands: int = 3, size: int = 600) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 10000, (bands, size, size), dtype=np.uint16)


def test_uri_path_and_class_by_scheme(remote_store):
    scheme, vsi, cls = (
        ("s3", "/vsis3/", S3Store) if remote_store.root.startswith("s3://") else ("gs", "/vsigs/", GCSStore)
    )
    assert type(remote_store) is cls
    bucket, prefix = remote_store.bucket, remote_store.prefix
    assert remote_store.uri("a/b.tif") == f"{scheme}://{bucket}/{prefix}/a/b.tif"
    assert remote_store.path("a/b.tif") == f"{vsi}{bucket}/{prefix}/a/b.tif"
    assert type(Store(remote_store.root)) is cls  # the base picks the class by scheme too


def test_bytes_and_json_round_trip(remote_store):
    assert not remote_store.exists("a/b/c.bin")
    remote_store.write_bytes("a/b/c.bin", b"\x00\x01payload")
    assert remote_store.read_bytes("a/b/c.bin") == b"\x00\x01payload"
    assert remote_store.exists("a/b/c.bin")
    assert not remote_store.exists("a/b") and not remote_store.exists("a/b/c")  # a prefix is not an object
    remote_store.write_bytes("a/b/c.bin", b"new")
    assert remote_store.read_bytes("a/b/c.bin") == b"new"
    remote_store.write_json("region=x/date=y.json", {"b": [1, 2], "a": None})
    assert remote_store.read_json("region=x/date=y.json") == {"b": [1, 2], "a": None}
    remote_store.delete("a/b/c.bin")
    assert not remote_store.exists("a/b/c.bin")
    remote_store.delete("a/b/c.bin")  # deleting nothing is not an error


def test_list_sorted_recursive_and_complete(remote_store):
    keys = [
        "p/z.tif",
        "p/a.tif",
        "p/sub/m.tif",
        "p/sub/deeper/b.json",
        "p/x=1/y+z@v.json",
        "q/other.tif",
        "pp/not-under-p",
    ]
    for key in keys:
        remote_store.write_bytes(key, key.encode())
    assert remote_store.list("p") == sorted(k for k in keys if k.startswith("p/"))
    assert remote_store.list("p/sub") == ["p/sub/deeper/b.json", "p/sub/m.tif"]
    assert remote_store.list("missing") == []
    assert remote_store.list("p/a.tif") == []  # an object is not a prefix
    for key in remote_store.list("p"):
        assert remote_store.read_bytes(key) == key.encode()


def test_cog_written_through_writing_reads_windowed_through_gdal(remote_store, tmp_path):
    scene = _scene(1)
    key = "imagery/r/2024-06-01/band=all/0_0.tif"  # '=' in the key: GDAL must sign it as the server sees it
    with remote_store.writing(key) as tmp:
        _cog(tmp, scene)
    local = str(tmp_path / "local.tif")
    _cog(local, scene)
    windows = [Window(0, 0, 600, 600), Window(10, 20, 30, 40), Window(300, 256, 256, 100), Window(599, 599, 1, 1)]
    with remote_store.env(), rasterio.open(remote_store.path(key)) as remote, rasterio.open(local) as ref:
        assert remote.profile == ref.profile
        for w in windows:
            np.testing.assert_array_equal(remote.read(window=w), ref.read(window=w))
            np.testing.assert_array_equal(
                remote.read(2, window=w), scene[1, w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width]
            )
        assert remote.overviews(1)  # a COG: overviews are read remotely too
        np.testing.assert_array_equal(remote.read(1, out_shape=(300, 300)), ref.read(1, out_shape=(300, 300)))
    with remote_store.env():
        data, profile = read_raster(remote_store.path(key))
    np.testing.assert_array_equal(data, scene)
    assert profile["band_names"] == ["b0", "b1", "b2"]


def test_reads_on_a_pool_each_enter_the_env_and_see_overwrites(remote_store):
    """GDAL config is per thread; and GDAL must not serve a replaced object from its cache."""
    keys = [f"t/{i}.tif" for i in range(4)]
    for i, key in enumerate(keys):
        with remote_store.writing(key) as tmp:
            _cog(tmp, _scene(i, bands=1, size=64))

    def read(key):
        with remote_store.env():
            return read_raster(remote_store.path(key))[0]

    with ThreadPoolExecutor(2) as pool:
        first = list(pool.map(read, keys))
    for i, data in enumerate(first):
        np.testing.assert_array_equal(data, _scene(i, bands=1, size=64))
    with remote_store.writing(keys[0]) as tmp:  # replaced by another shape entirely
        _cog(tmp, _scene(9, bands=2, size=96))
    with ThreadPoolExecutor(2) as pool:
        again = list(pool.map(read, keys))
    np.testing.assert_array_equal(again[0], _scene(9, bands=2, size=96))


def test_local_copy(remote_store):
    remote_store.write_bytes("models/m/v/model.pt2", b"weights" * 1000)
    with remote_store.local_copy("models/m/v/model.pt2") as path:
        assert Path(path).read_bytes() == b"weights" * 1000
        assert path.endswith("model.pt2")
    assert not Path(path).exists() and not Path(path).parent.exists()
    with pytest.raises(FileNotFoundError, match=remote_store.uri("models/m/v/none.pt2")):
        with remote_store.local_copy("models/m/v/none.pt2"):
            pass


def test_writing_is_invisible_until_done_and_failure_uploads_nothing(remote_store):
    remote_store.write_bytes("x/tile.tif", b"precious")
    with pytest.raises(RuntimeError, match="boom"):
        with remote_store.writing("x/tile.tif") as tmp:
            Path(tmp).write_bytes(b"half-written")
            Path(tmp + ".ovr.tmp").write_bytes(b"overviews")  # what GDAL's COG driver writes beside it
            assert remote_store.read_bytes("x/tile.tif") == b"precious"  # not published yet
            assert remote_store.list("x", temporaries=True) == ["x/tile.tif"]  # and no temporary object either
            raise RuntimeError("boom")
    assert not Path(tmp).parent.exists()  # the local temporary folder, with what the writer put beside the file
    assert remote_store.read_bytes("x/tile.tif") == b"precious"
    with pytest.raises(KeyboardInterrupt):
        with remote_store.writing("y/new.tif") as tmp:
            Path(tmp).write_bytes(b"partial")
            raise KeyboardInterrupt
    assert not Path(tmp).exists()
    assert not remote_store.exists("y/new.tif")
    assert remote_store.list("x") == ["x/tile.tif"]
    assert remote_store.list("y") == []
    with remote_store.writing("y/new.tif") as tmp:
        Path(tmp).write_bytes(b"whole")
    assert not Path(tmp).exists()
    assert remote_store.list("y") == ["y/new.tif"] and remote_store.read_bytes("y/new.tif") == b"whole"


def test_a_full_local_temporary_is_named_and_uploads_nothing(remote_store, tmp_path, monkeypatch):
    """A write to a bucket goes through a local temporary: when its device is full, the error names the
    store, the object and that temporary's device, and nothing reaches the bucket."""
    import tempfile

    from devtools.tmpfs import MountRefused, tmpfs

    disk = tmp_path / "tmp-disk"
    disk.mkdir()
    remote_store.write_bytes("x/tile.tif", b"precious")
    try:
        with tmpfs(disk, "256k"):
            monkeypatch.setattr(tempfile, "tempdir", str(disk))  # where TMPDIR would put it
            with pytest.raises(OSError) as failed:
                with remote_store.writing("x/tile.tif") as tmp:
                    _cog(tmp, _scene(2))  # 2 MB of noise: does not fit
            message = str(failed.value)
            assert failed.value.errno == 28 and "no space left on the device of the local temporary" in message
            assert remote_store.uri("x/tile.tif") in message and str(disk) in message, message
            assert list(disk.iterdir()) == []
    except MountRefused as exc:
        pytest.skip(f"no small disk to fill: {exc}")
    assert remote_store.read_bytes("x/tile.tif") == b"precious"


def test_missing_object_names_its_uri(remote_store):
    uri = remote_store.uri("no/such.json")
    for op in (remote_store.read_bytes, remote_store.read_json):
        with pytest.raises(FileNotFoundError) as err:
            op("no/such.json")
        assert uri in str(err.value) and not isinstance(err.value, BucketNotFoundError)
    assert not remote_store.exists("no/such.json")


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_missing_bucket_names_the_bucket(scheme, request):
    settings = request.getfixturevalue("s3_settings" if scheme == "s3" else "gcs_settings")
    store = make_store(f"{scheme}://no-such-bucket-here/p", **settings)
    for op in (
        lambda: store.read_bytes("k"),
        lambda: store.exists("k"),
        lambda: store.list("k"),
        lambda: store.write_bytes("k", b"x"),
    ):
        with pytest.raises(BucketNotFoundError, match="bucket 'no-such-bucket-here' does not exist"):
            op()
    with pytest.raises(BucketNotFoundError, match="no-such-bucket-here"):
        with store.writing("k") as tmp:
            Path(tmp).write_bytes(b"x")


def test_wrong_secret_is_permission_error_without_the_secret(s3_settings, s3_store):
    s3_store.write_bytes("k", b"v")
    wrong = "WrOnG-" + s3_settings["secret_access_key"][::-1]
    bad = make_store(s3_store.root, **{**s3_settings, "secret_access_key": wrong})
    good_secret = s3_settings["secret_access_key"]
    for text in (repr(bad), str(bad), repr(s3_store), str(s3_store)):
        assert wrong not in text and good_secret not in text and s3_settings["access_key_id"] not in text
    ops = {
        "read": lambda: bad.read_bytes("k"),
        "exists": lambda: bad.exists("k"),
        "list": lambda: bad.list("p"),
        "write": lambda: bad.write_bytes("k", b"x"),
        "copy": lambda: bad.local_copy("k").__enter__(),
    }
    for name, op in ops.items():
        with pytest.raises(PermissionError) as err:
            op()
        message = str(err.value)
        assert f"bucket {s3_store.bucket!r}" in message, name
        assert wrong not in message and wrong not in repr(err.value), name
        assert err.value.__cause__ is None and err.value.__suppress_context__, name  # no backend text chained
    assert s3_store.read_bytes("k") == b"v"  # the failed write changed nothing
    # GDAL's reads are refused too, and its message carries no secret either.
    with bad.env(), pytest.raises(rasterio.errors.RasterioIOError) as err:
        rasterio.open(bad.path("k"))
    assert wrong not in str(err.value)


def test_unsupported_scheme_and_misplaced_settings():
    for root in ("ftp://host/x", "/plain/path", "http://host/x"):
        with pytest.raises(ValueError, match=r"unsupported storage root .*file://, gs://, s3://"):
            make_store(root)
    with pytest.raises(ValueError, match="access_key_id, secret_access_key not accepted for gs:// roots") as err:
        make_store("gs://bucket-a", access_key_id="AKIA-should-not-leak", secret_access_key="hush-hush-1234")
    assert "hush-hush-1234" not in str(err.value) and "AKIA-should-not-leak" not in str(err.value)
    with pytest.raises(ValueError, match="not accepted for file:// roots"):
        make_store("file:///tmp/x", endpoint_url="http://127.0.0.1:1")
    with pytest.raises(ValueError, match="not a bucket name"):
        make_store("s3://Bad_Bucket!/x")
    with pytest.raises(ValueError, match="invalid endpoint_url '127.0.0.1:9000'"):
        make_store("s3://bucket-a/x", endpoint_url="127.0.0.1:9000")
    with pytest.raises(ValueError, match="give both access_key_id and secret_access_key"):
        make_store("s3://bucket-a/x", access_key_id="only-the-id")


def test_pickled_store_reads_in_another_process(remote_store):
    remote_store.write_bytes("k.bin", b"from the parent")
    with remote_store.writing("t.tif") as tmp:
        _cog(tmp, _scene(3, bands=1, size=32))
    # Build and cache the clients (fsspec filesystem, GDAL session): they must not travel.
    assert remote_store.exists("k.bin")
    with remote_store.env():
        read_raster(remote_store.path("t.tif"))
    data = pickle.dumps(remote_store)
    clone = pickle.loads(data)
    assert clone == remote_store and type(clone) is type(remote_store)
    assert clone.read_bytes("k.bin") == b"from the parent"
    with clone.env():
        np.testing.assert_array_equal(read_raster(clone.path("t.tif"))[0], _scene(3, bands=1, size=32))
    script = "import pickle, sys; s = pickle.load(sys.stdin.buffer); sys.stdout.buffer.write(s.read_bytes('k.bin'))"
    out = subprocess.run(
        [sys.executable, "-c", script],
        input=data,
        capture_output=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
        env={**os.environ},
    )
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert out.stdout == b"from the parent"
