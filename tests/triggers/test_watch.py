"""The arrivals watch against real stores (a local folder, S3, GCS): every item version is found
once, rewrites again, deletions never; late dates by the sweep; bounded work per tick; a cursor of
a few hundred bytes that a restarted daemon picks up."""

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from geo_assets.geo.arrivals import Layout, Watcher, WatchState
from geo_assets.geo.store import LocalStore, Store, local_root

SETTLE = 0.2
TODAY = datetime.now(UTC).date().isoformat()
YESTERDAY = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()


def watcher(layout="incoming/{region}/{date}", **kw) -> Watcher:
    return Watcher(Layout.parse(layout), **{"settle_seconds": SETTLE, "lookback_days": 30, "sweep_seconds": 0, **kw})


def start(w, since=None) -> WatchState:
    return WatchState.start(time.time() if since is None else since, w.layout.template, w.lookback_days)


def settled():
    """Until what was written has settled: S3 lists LastModified in whole seconds, taken as the second's end."""
    time.sleep(SETTLE + 1.1)


def refs(store, *keys) -> set[str]:
    """The current version of each key, as the store lists it."""
    found = {}
    for k in keys:
        page, _ = store.scan(k.rsplit("/", 1)[0])
        found[k] = next(o.ref for o in page if o.key == k)
    return set(found.values())


def again(store, *keys) -> set[str]:
    """The versions a new file in their partition's folder offers again, on a local store only: there
    a folder's ctime stamps its files' arrival (so a folder moved in arrives), and a new file moves the
    folder's; the sensor then asks for one run of the partition for all (or repeats a run key). An object
    store has no folders."""
    return refs(store, *keys) if isinstance(store, LocalStore) else set()


def run(w, store, state, ticks=1):
    got, unrecognised = [], []
    for _ in range(ticks):
        t = w.tick(store, state, time.time())
        got += [a.ref for a in t.arrivals]
        unrecognised += t.unrecognised
    return got, unrecognised


def write(store, *keys):
    for k in keys:
        store.write_bytes(k, b"{}")


def test_each_item_version_is_found_once_rewrites_again_deletions_never(any_store):
    write(any_store, "incoming/old-farm/2020-01-01/before-start.json")  # there before the watch: not an arrival
    settled()
    w = watcher()
    state = start(w)
    settled()
    assert run(w, any_store, state) == ([], [])
    a, b = f"incoming/farm-a/{TODAY}/S2A_1.json", f"incoming/farm-b/{YESTERDAY}/S2B_2.json"
    write(
        any_store,
        a,
        b,
        f"incoming/farm-a/{TODAY}/S2A_1/B04.tif",  # an item's COG: an asset, not an arrival
        "incoming/readme.txt",
        "incoming/Farm_C/2024-01-01/x.json",
        "incoming/farm-d/2024-02-30/y.json",
    )
    settled()
    got, unrecognised = run(w, any_store, state, ticks=3)
    assert sorted(got) == sorted(refs(any_store, a, b))
    assert sorted(k for k, _ in unrecognised) == [
        "incoming/Farm_C/2024-01-01/x.json",
        "incoming/farm-d/2024-02-30/y.json",
        "incoming/readme.txt",
    ]
    assert "invalid region name 'Farm_C'" in dict(unrecognised)["incoming/Farm_C/2024-01-01/x.json"]
    assert "not a calendar date" in dict(unrecognised)["incoming/farm-d/2024-02-30/y.json"]

    time.sleep(1.0)  # a later second for S3
    write(any_store, a)  # the same bytes again: a new version
    any_store.delete(b)
    settled()
    got, unrecognised = run(w, any_store, state, ticks=3)
    assert got == sorted(refs(any_store, a)) and unrecognised == []


def test_an_item_that_sorts_before_the_ones_seen_is_still_found(any_store):
    w = watcher()
    state = start(w)
    write(any_store, f"incoming/farm/{TODAY}/S2B.json")
    settled()
    assert len(run(w, any_store, state)[0]) == 1
    write(any_store, f"incoming/farm/{TODAY}/S2A.json", f"incoming/farm/{YESTERDAY}/S2A.json")
    settled()
    assert sorted(run(w, any_store, state)[0]) == sorted(
        refs(any_store, f"incoming/farm/{TODAY}/S2A.json", f"incoming/farm/{YESTERDAY}/S2A.json")
        | again(any_store, f"incoming/farm/{TODAY}/S2B.json")
    )


def test_late_dates_are_found_by_the_sweep_once_over_many_ticks(any_store):
    """A date older than the lookback (delivered late) is not listed by the recent-dates pass; the
    sweep finds it however many ticks its pass takes, and only once."""
    write(any_store, *[f"incoming/farm/2019-01-{d:02d}/old-{d}.json" for d in range(1, 21)])
    settled()  # history, from before the watch
    w = watcher(page_size=4, sweep_seconds=0)
    state = start(w)
    late, recent = "incoming/farm/2019-02-01/late.json", f"incoming/farm/{TODAY}/new.json"  # late: on the last page
    write(any_store, late, recent)
    settled()
    first = w.tick(any_store, state, time.time())
    assert [a.ref for a in first.arrivals] == sorted(refs(any_store, recent))  # the recent one at once
    assert first.sweep_listed == 4 and first.sweep_requests == 1  # one page of the sweep per tick
    got, _ = run(w, any_store, state, ticks=20)  # three passes of the sweep over 22 keys
    assert got == sorted(refs(any_store, late))


def test_a_version_arrives_only_once_it_has_settled(any_store):
    w = watcher(settle_seconds=60)
    state = start(w, time.time() - 1)
    write(any_store, f"incoming/farm/{TODAY}/a.json")
    assert run(w, any_store, state) == ([], [])  # the upload may still be landing
    t = w.tick(any_store, state, time.time() + 61)
    assert [a.ref for a in t.arrivals] == sorted(refs(any_store, f"incoming/farm/{TODAY}/a.json"))
    assert w.tick(any_store, state, time.time() + 62).arrivals == []


def test_work_per_tick_is_bounded_and_the_rest_comes_next(any_store):
    keys = [f"incoming/farm-{r}/{TODAY}/item-{i}.json" for r in "abc" for i in range(3)]
    w = watcher(max_arrivals=4, max_requests=2, page_size=2)
    state = start(w)
    write(any_store, *keys)
    settled()
    sizes, got = [], []
    for _ in range(8):
        t = w.tick(any_store, state, time.time())
        assert t.hot_requests <= 3  # the folder listing and two pages
        sizes.append(len(t.arrivals))
        got += [a.ref for a in t.arrivals]
    assert max(sizes) <= 4 and sum(sizes) == 9
    assert sorted(got) == sorted(refs(any_store, *keys))


def test_the_cursor_is_small_and_a_restarted_watch_goes_on_from_it(any_store):
    write(any_store, *[f"incoming/farm/2019-01-0{d}/x.json" for d in range(1, 6)])
    settled()
    w = watcher(page_size=2, sweep_seconds=0)
    state = start(w)
    write(any_store, f"incoming/farm/{TODAY}/a.json")
    settled()
    got, _ = run(w, any_store, state)
    cursor = json.dumps(state.to_json())
    assert len(cursor) < 400, cursor
    # A new process: nothing but the cursor string survives.
    restarted = WatchState.from_json(json.loads(cursor))
    write(any_store, f"incoming/farm/{TODAY}/b.json")
    settled()
    got += run(watcher(page_size=2, sweep_seconds=0), any_store, restarted, ticks=6)[0]
    a, b = f"incoming/farm/{TODAY}/a.json", f"incoming/farm/{TODAY}/b.json"
    assert sorted(got) == sorted([*refs(any_store, a, b), *again(any_store, a)])


def test_the_sweep_goes_on_past_its_last_key_when_that_key_is_deleted(any_store):
    """Unlike a cursor that must exist (get_gcs_keys returns every key when it is deleted)."""
    write(any_store, *[f"incoming/farm/2019-01-0{d}/x.json" for d in range(1, 7)])
    settled()
    w = watcher(page_size=2, sweep_seconds=0)
    state = start(w)
    w.tick(any_store, state, time.time())
    assert state.sweep.after
    any_store.delete(state.sweep.after)
    t = w.tick(any_store, state, time.time())
    assert t.sweep_listed == 2 and t.arrivals == []
    assert state.sweep.after > "incoming/farm/2019-01-02"


def test_date_first_layouts_list_one_root(any_store):
    write(any_store, "landing/s2/2019-01-01/farm-a/z.json")
    settled()
    w = watcher("landing/s2/{date}/{region}")
    state = start(w)
    write(any_store, f"landing/s2/{TODAY}/farm-a/x.json", f"landing/s2/{TODAY}/farm-b/y.json")
    settled()
    t = w.tick(any_store, state, time.time())
    assert t.hot_requests == 1 and t.hot_listed == 2  # the 2019 key is history: not listed
    assert {(a.region, a.date) for a in t.arrivals} == {("farm-a", TODAY), ("farm-b", TODAY)}


def test_the_recent_pass_lists_recent_keys_only_however_long_the_history(any_store):
    """1200 keys of history under 3 regions: the recent-dates pass lists the 6 new keys in one request
    per region (plus the folder listing), the sweep one page (of 500 here): neither grows with the
    history."""
    first = datetime(2016, 1, 1).date()
    history = [f"incoming/farm-{i % 3}/{first + timedelta(days=i // 3)}/h-{i}.json" for i in range(1200)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: any_store.write_bytes(k, b"{}"), history))
    settled()
    w = watcher(page_size=500)
    state = start(w)
    new = [f"incoming/farm-{r}/{d}/n.json" for r in range(3) for d in (TODAY, YESTERDAY)]
    write(any_store, *new)
    settled()
    t = w.tick(any_store, state, time.time())
    assert sorted(a.ref for a in t.arrivals) == sorted(refs(any_store, *new))
    assert (t.hot_requests, t.hot_listed) == (1 + 3, 6)
    assert (t.sweep_requests, t.sweep_listed) == (1, 500)


def test_layouts_are_checked():
    for bad in (
        "{region}/{date}",
        "incoming/{region}",
        "incoming/{region}/{date}/items",
        "in coming/{region}/{date}",
        "incoming/{region}/{region}/{date}",
        7,
    ):
        with pytest.raises(ValueError, match="invalid arrivals layout"):
            Layout.parse(bad)
    layout = Layout.parse("landing/{region}/s2/{date}")
    assert layout.folder("my-farm", "2024-06-01") == "landing/my-farm/s2/2024-06-01"
    assert layout.classify("landing/my-farm/s2/2024-06-01/a/b.json") == ("item", "my-farm", "2024-06-01")
    assert layout.classify("landing/my-farm/s2/2024-06-01/a/B04.tif") == ("asset", "my-farm", "2024-06-01")
    assert layout.classify("landing/my-farm/l8/2024-06-01/a.json")[0] == "unrecognised"
    with pytest.raises(ValueError, match="invalid region name"):
        layout.folder("../etc", "2024-06-01")


def test_a_new_lookback_classifies_each_version_once(tmp_path):
    """Changing lookback_days mid-way neither repeats a version the recent pass took nor loses one
    that the sweep had not reached: the new setting applies to versions that arrive afterwards."""
    store = Store(local_root(tmp_path))
    write(store, *[f"incoming/farm/2019-01-0{d}/x.json" for d in range(1, 8)])
    settled()
    ten_days_ago = (datetime.now(UTC).date() - timedelta(days=10)).isoformat()
    w30 = watcher(lookback_days=30, page_size=3)
    state = start(w30)
    a = f"incoming/farm/{ten_days_ago}/a.json"  # recent for 30 days, late for 7
    write(store, a)
    settled()
    got = run(w30, store, state)[0]  # the recent pass takes a; the sweep is part-way through its pass
    assert got == sorted(refs(store, a)) and state.sweep.after
    w7 = watcher(lookback_days=7, page_size=3)
    # Arrives under the new setting: late, the sweep's. In another partition's folder: a new file in a's
    # would offer a again (see `again`).
    b = f"incoming/farm/{(datetime.now(UTC).date() - timedelta(days=11)).isoformat()}/b.json"
    write(store, b)
    settled()
    got += run(w7, store, state, ticks=12)[0]
    assert sorted(got) == sorted(refs(store, a, b))
    assert [d for _, d in state.lookbacks] == [7]  # the old setting is dropped once no pass can meet it

    with pytest.raises(ValueError, match="made for layout 'incoming/{region}/{date}', not 'incoming/{date}/{region}'"):
        watcher("incoming/{date}/{region}").tick(store, state, time.time())
