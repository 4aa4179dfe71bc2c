"""Store.scan and Store.folders, the listings the arrivals watch is made of, on a local folder, S3 and GCS."""

import time

import pytest

from geo_assets.geo.store import BucketNotFoundError, make_store

KEYS = [
    "in/a/2024-01-01/x.json",
    "in/a/2024-01-02/y.json",
    "in/a/2024-01-02/y/B04.tif",
    "in/b/2024-01-01/z.json",
    "in/c.json",
]


def _write(store, keys):
    for k in keys:
        store.write_bytes(k, k.encode())


def _all(store, prefix, start_after="", limit=1000):
    keys, after = [], start_after
    while True:
        page, more = store.scan(prefix, after, limit)
        keys += [o.key for o in page]
        if not more:
            return keys
        assert len(page) == limit
        after = page[-1].key


def test_scan_pages_through_every_key_once_from_any_start(any_store):
    _write(any_store, KEYS + ["out/other.json"])
    everything = _all(any_store, "in")
    assert sorted(everything) == sorted(KEYS)
    # Pages of 2 go on from the last key, in the server's order (SeaweedFS lists a folder's
    # subfolders before its files; S3, GCS and the local store list keys as UTF-8 bytes).
    assert _all(any_store, "in", limit=2) == everything
    # A start key that does not exist (deleted, or a date prefix) neither fails nor starts over.
    later = ["in/a/2024-01-02/y.json", "in/a/2024-01-02/y/B04.tif"]
    assert sorted(_all(any_store, "in/a", "in/a/2024-01-01~")) == later
    assert sorted(_all(any_store, "in/a", "in/a/2024-01-01/x.json")) == later
    assert _all(any_store, "in", everything[-1]) == []
    assert any_store.scan("missing")[0] == [] and any_store.folders("missing") == []


def test_scan_reports_a_new_version_and_its_arrival_time_on_every_write(any_store):
    before = time.time()
    any_store.write_bytes("in/a/k.json", b"one")
    (first,), _ = any_store.scan("in")
    time.sleep(1.1)  # S3 LastModified has whole seconds
    any_store.write_bytes("in/a/k.json", b"one")  # the same bytes again: still a new version
    (second,), _ = any_store.scan("in")
    assert first.key == second.key == "in/a/k.json"
    assert first.version != second.version
    assert before - 1 <= first.modified < second.modified <= time.time() + 1
    assert second.ref == f"in/a/k.json@{second.version}"


def test_folders_are_the_common_prefixes(any_store):
    _write(any_store, KEYS)
    assert any_store.folders("in") == ["a", "b"]
    assert any_store.folders("in/a") == ["2024-01-01", "2024-01-02"]


def test_scan_limit_is_bounded(any_store):
    for bad in (0, 1001):
        with pytest.raises(ValueError, match="limit must be between 1 and 1000"):
            any_store.scan("in", limit=bad)


def test_local_scan_skips_temporaries_and_orders_keys_as_s3_does(tmp_path):
    from geo_assets.geo.store import Store, local_root

    store = Store(local_root(tmp_path))
    _write(store, ["in/a-b/1.json", "in/a/1.json", "in/a.json"])
    (tmp_path / "in" / "a" / ".tmp-123-2.json").write_bytes(b"half")
    # '-' and '.' sort before '/': S3 lists in/a-b/... and in/a.json before in/a/...
    assert _all(store, "in") == ["in/a-b/1.json", "in/a.json", "in/a/1.json"]
    assert _all(store, "in", "in/a.json") == ["in/a/1.json"]


def test_scan_of_a_missing_bucket_names_it(s3_server):
    from trigger_stores import s3_settings

    store = make_store("s3://no-such-bucket-here/x", **s3_settings(s3_server))
    with pytest.raises(BucketNotFoundError, match="S3 bucket 'no-such-bucket-here' does not exist"):
        store.scan("in")
