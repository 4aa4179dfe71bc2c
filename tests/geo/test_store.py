"""Store: file:// roots, validated keys, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from geo_assets.geo.store import Store, local_root, validate_key


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_write_read_round_trip(store):
    store.write_bytes("a/b/c.bin", b"\x00\x01payload")
    assert store.read_bytes("a/b/c.bin") == b"\x00\x01payload"
    assert store.exists("a/b/c.bin") and not store.exists("a/b/other")
    assert Path(store.path("a/b/c.bin")).read_bytes() == b"\x00\x01payload"
    assert store.uri("a/b/c.bin") == store.root + "/a/b/c.bin"
    store.write_json("m.json", {"b": [1, 2], "a": None})
    assert store.read_json("m.json") == {"b": [1, 2], "a": None}


def test_overwrite_replaces_content(store):
    store.write_bytes("k", b"old")
    store.write_bytes("k", b"new")
    assert store.read_bytes("k") == b"new"


def test_atomic_write_leaves_no_temporaries_on_success(store):
    with store.writing("x/tile.tif") as tmp:
        assert Path(tmp).parent == store.base / "x"
        assert Path(tmp).name.startswith(".tmp-") and Path(tmp).name.endswith("tile.tif")
        Path(tmp).write_bytes(b"data")
        assert not store.exists("x/tile.tif")  # not visible before the block ends
        assert store.list("x") == []  # the temporary is not listed either
    assert store.read_bytes("x/tile.tif") == b"data"
    assert _files(store.base) == ["x/tile.tif"]


def test_failed_write_loses_nothing_already_stored(store):
    store.write_bytes("x/tile.tif", b"precious")
    with pytest.raises(RuntimeError, match="boom"):
        with store.writing("x/tile.tif") as tmp:
            Path(tmp).write_bytes(b"half-writt")
            raise RuntimeError("boom")
    assert store.read_bytes("x/tile.tif") == b"precious"
    assert _files(store.base) == ["x/tile.tif"]


def test_failed_first_write_publishes_nothing(store):
    with pytest.raises(KeyboardInterrupt):
        with store.writing("y/new.tif") as tmp:
            Path(tmp).write_bytes(b"partial")
            raise KeyboardInterrupt
    assert not store.exists("y/new.tif")
    assert _files(store.base) == []


def test_failure_before_anything_written_is_clean(store):
    with pytest.raises(ValueError):
        with store.writing("z/k"):
            raise ValueError("nothing written")
    assert _files(store.base) == []


def test_concurrent_writers_use_distinct_temporaries(store):
    with store.writing("k") as a, store.writing("k") as b:
        assert a != b
        Path(a).write_bytes(b"A")
        Path(b).write_bytes(b"B")
    assert store.read_bytes("k") == b"A"  # the outer (last to finish) wins, whole
    assert _files(store.base) == ["k"]


@pytest.mark.parametrize(
    "key",
    [
        "../x",
        "a/../../x",
        "/abs",
        "/etc/passwd",
        "a//b",
        "a/./b",
        "./a",
        "a/",
        "a\\b",
        "..\\x",
        "a\x00b",
        "",
        ".",
        "..",
        "a\nb",
        "a\n",
        "a/b\n",
        "a b",
        "a\tb",
        "é",
    ],
)
def test_hostile_keys_refused(store, key):
    with pytest.raises(ValueError, match="invalid storage key"):
        validate_key(key)
    for op in (store.exists, store.read_bytes, store.path, store.uri, store.list):
        with pytest.raises(ValueError, match="invalid storage key"):
            op(key)
    with pytest.raises(ValueError, match="invalid storage key"):
        store.write_bytes(key, b"x")
    assert not (store.base.parent / "x").exists()


@pytest.mark.parametrize("key", [None, 3, b"a"])
def test_non_string_keys_refused(key):
    with pytest.raises(ValueError, match="invalid storage key"):
        validate_key(key)


@pytest.mark.parametrize(
    "key", ["a", "a/b/c.tif", "imagery/synth-train-a/2024-06-01/10_20.tif", "x=1/y+z@v.json", ".hidden", "a..b"]
)
def test_ordinary_keys_accepted(key):
    assert validate_key(key) == key


@pytest.mark.parametrize("root", ["/tmp/plain/path", "http://host/x", "relative/dir", "ftp://host/x"])
def test_unsupported_roots_refused(root):  # gs:// and s3:// roots: tests/cloud
    with pytest.raises(ValueError, match=r"unsupported storage root .*accepted schemes: file://, gs://, s3://") as err:
        Store(root)
    assert repr(root) in str(err.value)


def test_local_root_with_awkward_characters(tmp_path):
    base = tmp_path / "dir with space#and%percent"
    root = local_root(base)
    assert root.startswith("file://")
    s = Store(root)
    assert s.base == base.resolve()
    s.write_bytes("a/b", b"x")
    assert (base / "a" / "b").read_bytes() == b"x"


def test_trailing_slash_root(tmp_path):
    s = Store(local_root(tmp_path) + "/")
    s.write_bytes("k", b"v")
    assert s.uri("k") == local_root(tmp_path) + "/k"
    assert s.read_bytes("k") == b"v"


def test_list_sorted_recursive_without_temporaries(store):
    for key in ("p/z.tif", "p/a.tif", "p/sub/m.tif", "p/sub/deeper/b.json", "q/other.tif", "pp/not-under-p"):
        store.write_bytes(key, b"x")
    # Leftover temporaries (e.g. from a killed writer) are never listed.
    (store.base / "p" / ".tmp-deadbeef-a.tif").write_bytes(b"half")
    (store.base / "p" / "sub" / ".tmp-0-m.tif").write_bytes(b"half")
    assert store.list("p") == ["p/a.tif", "p/sub/deeper/b.json", "p/sub/m.tif", "p/z.tif"]
    assert store.list("p/sub") == ["p/sub/deeper/b.json", "p/sub/m.tif"]
    assert store.list("missing") == []
    assert store.list("p/a.tif") == []  # a file is not a prefix


def test_read_missing_key_names_the_uri(store):
    with pytest.raises(FileNotFoundError) as err:
        store.read_bytes("no/such.tif")
    assert store.root + "/no/such.tif" in str(err.value)
    with pytest.raises(FileNotFoundError, match="no/such.json"):
        store.read_json("no/such.json")


def test_store_creates_no_files_outside_root(tmp_path):
    root = tmp_path / "root"
    s = Store(local_root(root))
    s.write_bytes("deep/er/k", b"v")
    assert sorted(os.listdir(tmp_path)) == ["root"]
