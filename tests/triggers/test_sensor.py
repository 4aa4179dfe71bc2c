"""The scene_arrivals sensor's evaluation against a real store and instance: the exact run requests,
arrivals that wait for their region, regions registered from a footprint, the tick's log lines."""

import json
import logging
import os
import time
import uuid
from datetime import UTC, datetime

import dagster as dg
import pytest
from trigger_stores import FARM

from devtools.arrivals import write_item, write_scene
from geo_assets.assets.common import digest
from geo_assets.cli.commands import register
from geo_assets.geo.regions import Region, add_region, load_catalogue
from geo_assets.geo.store import Store, local_root
from geo_assets.triggers.arrivals import PENDING_MAX, interval_seconds, scene_arrivals
from resources.arrivals import ArrivalsResource, arrivals_from_env
from resources.storage import StorageResource

TODAY = datetime.now(UTC).date().isoformat()


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store(local_root(tmp_path / "storage"))
    add_region(s, FARM)
    return s


@pytest.fixture
def instance(store):
    with dg.instance_for_test() as inst:
        register(inst, regions=[FARM.name])
        yield inst


def evaluate(store, instance, cursor=None, **settings):
    """One tick, as the daemon runs it; returns (result, log lines)."""
    lines = Lines()
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={
            "storage": StorageResource(root=store.root),
            "arrivals": ArrivalsResource(settle_seconds=0.2, **settings),
        },
    )
    context.log.addHandler(lines)
    return scene_arrivals(context), lines.lines


def settled():
    time.sleep(0.4)


def ref(store, key):
    return next(o.ref for o in store.scan(key.rsplit("/", 1)[0])[0] if o.key == key)


def test_arrivals_become_one_run_request_per_partition(store, instance):
    first, _ = evaluate(store, instance)  # the first tick: the watch starts now
    a = f"incoming/arrival-farm/{TODAY}/S2A_1.json"
    b1, b2 = "incoming/arrival-farm/2024-06-01/S2A_2.json", "incoming/arrival-farm/2024-06-01/S2B_3.json"
    for key in (
        a,
        b1,
        b2,
        f"incoming/arrival-farm/{TODAY}/S2A_1/B04.tif",
        "incoming/notes.txt",
        "incoming/arrival-farm/2014-01-01/too-early.json",
    ):
        write_item(store, key)
    settled()
    result, lines = evaluate(store, instance, first.cursor)
    requests = sorted(result.run_requests, key=lambda r: r.partition_key)
    refs_b = sorted([ref(store, b1), ref(store, b2)])
    assert [(r.run_key, r.partition_key, r.run_config, r.tags) for r in requests] == [
        (
            f"arrivals:2024-06-01|arrival-farm:{digest(refs_b)}",
            dg.MultiPartitionKey({"region": "arrival-farm", "date": "2024-06-01"}),
            {"ops": {"imagery_tiles": {"config": {"arrivals": "incoming/arrival-farm/2024-06-01"}}}},
            {"geo-assets/arrivals": " ".join(refs_b)},
        ),
        (
            f"arrivals:{TODAY}|arrival-farm:{digest([ref(store, a)])}",
            dg.MultiPartitionKey({"region": "arrival-farm", "date": TODAY}),
            {"ops": {"imagery_tiles": {"config": {"arrivals": f"incoming/arrival-farm/{TODAY}"}}}},
            {"geo-assets/arrivals": ref(store, a)},
        ),
    ]
    assert scene_arrivals.job_name == "imagery_job"
    assert "skipped incoming/notes.txt: does not lie under a partition folder incoming/{region}/{date}" in lines
    assert any(
        line.startswith(
            "skipped incoming/arrival-farm/2014-01-01/too-early.json: 2014-01-01 is not an acquisition date partition"
        )
        for line in lines
    )
    assert result.dynamic_partitions_requests in (None, [])  # the region has its partition
    assert len(result.cursor) < 500
    # The next tick finds nothing new.
    again, _ = evaluate(store, instance, result.cursor)
    assert again.run_requests == []


def test_a_chmod_of_an_arrived_item_asks_for_the_run_already_asked_for(store, instance):
    """`chmod` changes a local file's ctime, its arrival time, not its bytes: a later pass may take the
    item again, but as the same version, so the run request repeats the first one's run key, which
    the daemon skips (Dagster launches one run per run key of a sensor). A rewrite is a new version."""
    import os

    first, _ = evaluate(store, instance)
    key = f"incoming/arrival-farm/{TODAY}/S2A_1.json"
    write_item(store, key)
    settled()
    arrived, _ = evaluate(store, instance, first.cursor)
    (request,) = arrived.run_requests

    os.chmod(store.path(key), 0o600)
    settled()
    again, _ = evaluate(store, instance, arrived.cursor)
    assert [r.run_key for r in again.run_requests] in ([], [request.run_key])

    time.sleep(0.01)  # a new modification time
    write_item(store, key)
    settled()
    rewritten, _ = evaluate(store, instance, again.cursor)
    assert [r.run_key for r in rewritten.run_requests] != [request.run_key] and rewritten.run_requests


def test_a_scene_folder_moved_in_arrives_when_it_moved(store, instance, tmp_path):
    """A scene staged elsewhere and moved in with `mv` (a rename: its files keep their old ctimes)
    arrives when it moved, by the recent-dates pass (today) and by the sweep (an old date); a later
    file in its folder asks for one run of the partition with both versions."""
    import os

    staged = Store(local_root(tmp_path / "staging"))  # the same file system as the storage root
    for date in (TODAY, "2024-06-02"):
        write_item(staged, f"{date}/S2A_9.json")
    settled()
    first, _ = evaluate(store, instance)  # the watch starts after the files were written
    settled()  # a ctime is read from the kernel's coarse clock, a few ms behind time.time()
    os.makedirs(store.path("incoming/arrival-farm"))
    for date in (TODAY, "2024-06-02"):
        os.rename(staged.path(date), store.path(f"incoming/arrival-farm/{date}"))
    settled()
    moved, lines = evaluate(store, instance, first.cursor)
    keys = {date: f"incoming/arrival-farm/{date}/S2A_9.json" for date in (TODAY, "2024-06-02")}
    assert sorted((r.partition_key, r.tags["geo-assets/arrivals"]) for r in moved.run_requests) == sorted(
        (dg.MultiPartitionKey({"region": "arrival-farm", "date": d}), ref(store, k)) for d, k in keys.items()
    ), lines

    later = f"incoming/arrival-farm/{TODAY}/S2B_10.json"
    write_item(store, later)
    settled()
    both, _ = evaluate(store, instance, moved.cursor)
    (request,) = both.run_requests
    assert request.tags["geo-assets/arrivals"] == " ".join(sorted([ref(store, keys[TODAY]), ref(store, later)]))


def test_a_region_folder_moved_in_whole_is_named_in_the_tick_log(store, instance, tmp_path):
    """Above the partition folders a folder's ctime stamps nothing (it would offer the whole history under
    it again): a region folder moved in whole is not offered, and the tick's log says so, once."""
    import os

    staged = Store(local_root(tmp_path / "staging"))
    write_item(staged, f"arrival-farm/{TODAY}/S2A_9.json")
    settled()
    first, _ = evaluate(store, instance)
    settled()  # a ctime is read from the kernel's coarse clock, a few ms behind time.time()
    os.makedirs(store.path("incoming"), exist_ok=True)
    os.rename(staged.path("arrival-farm"), store.path("incoming/arrival-farm"))
    settled()
    moved, lines = evaluate(store, instance, first.cursor)
    assert moved.run_requests == []
    (said,) = [line for line in lines if line.startswith("skipped incoming/arrival-farm/: a folder changed itself")]
    assert "move the partition folders in one by one, or `touch` their items" in said
    settled()
    again, lines = evaluate(store, instance, moved.cursor)
    assert again.run_requests == [] and not [line for line in lines if "a folder changed itself" in line]


def _ran(instance, request, status):
    """The run the daemon makes of a request (its tags, the partition's and the sensor's), ended in `status`."""
    tags = {**request.tags, "dagster/partition": str(request.partition_key), "dagster/sensor_name": "scene_arrivals"}
    instance.add_run(dg.DagsterRun(job_name="imagery_job", run_id=str(uuid.uuid4()), tags=tags, status=status))


def test_versions_offered_again_on_a_local_root_run_only_where_no_finished_run_had_them(store, instance):
    """A removal in a partition's folder offers what is left again. After a run that succeeded with it, no
    run (it would mosaic fewer scenes); after a run that failed, a run (the removal may be the fix)."""
    first, _ = evaluate(store, instance)
    a, b = (f"incoming/arrival-farm/{TODAY}/{name}.json" for name in ("S2A_1", "S2B_2"))
    write_item(store, a)
    write_item(store, b)
    settled()
    both, _ = evaluate(store, instance, first.cursor)
    (request,) = both.run_requests
    _ran(instance, request, dg.DagsterRunStatus.FAILURE)
    store.delete(b)  # the item that failed the run, removed
    settled()
    retried, _ = evaluate(store, instance, both.cursor)
    (again,) = retried.run_requests
    assert again.tags["geo-assets/arrivals"] == ref(store, a)

    _ran(instance, again, dg.DagsterRunStatus.SUCCESS)
    os.chmod(store.path(f"incoming/arrival-farm/{TODAY}"), 0o750)  # the folder's ctime moves: a offered again
    settled()
    skipped, lines = evaluate(store, instance, retried.cursor)
    assert skipped.run_requests == []
    assert any("0 new item version(s) and 1 asked for before (their folder changed)" in line for line in lines), lines


def test_a_busy_partition_crowds_no_other_out_of_the_runs_asked_for(store, instance):
    """The runs read for the check are the last 50 of each partition, not the last 50 x N of all: a partition
    with 100 newer runs leaves the other's run in the check, so a chmod of both folders asks for nothing."""
    first, _ = evaluate(store, instance)
    busy, quiet = f"incoming/arrival-farm/{TODAY}/S2A_1.json", "incoming/arrival-farm/2024-06-01/S2A_2.json"
    write_item(store, busy)
    write_item(store, quiet)
    settled()
    arrived, _ = evaluate(store, instance, first.cursor)
    for request in sorted(arrived.run_requests, key=lambda r: str(r.partition_key) != "2024-06-01|arrival-farm"):
        for _ in range(1 if str(request.partition_key) == "2024-06-01|arrival-farm" else 100):
            _ran(instance, request, dg.DagsterRunStatus.SUCCESS)  # the quiet partition's run first: the oldest
    for folder in (f"incoming/arrival-farm/{TODAY}", "incoming/arrival-farm/2024-06-01"):
        os.chmod(store.path(folder), 0o750)
    settled()
    again, lines = evaluate(store, instance, arrived.cursor)
    assert again.run_requests == [], lines


def test_arrivals_for_an_unknown_region_wait_until_it_is_added(store, instance):
    first, _ = evaluate(store, instance)
    key = f"incoming/new-farm/{TODAY}/S2A_1.json"
    write_item(store, key)
    settled()
    waiting, lines = evaluate(store, instance, first.cursor)
    assert waiting.run_requests == []
    assert any(
        "region 'new-farm' is not in the region catalogue: 1 arrived item version(s) wait for it. "
        "Add it with `geo-assets region add new-farm" in line
        for line in lines
    ), lines
    assert [p["key"] for p in json.loads(waiting.cursor)["pending"]] == [key]
    still, _ = evaluate(store, instance, waiting.cursor)
    assert still.run_requests == [] and json.loads(still.cursor)["pending"] == json.loads(waiting.cursor)["pending"]

    add_region(store, Region("new-farm", (399360.0, 5140480.0, 400640.0, 5141760.0), "EPSG:32631"))
    released, _ = evaluate(store, instance, still.cursor)
    (request,) = released.run_requests
    assert request.partition_key == dg.MultiPartitionKey({"region": "new-farm", "date": TODAY})
    assert request.tags == {"geo-assets/arrivals": ref(store, key)}
    # The catalogue's region gets its partition in the same tick, before the run is created.
    (add,) = released.dynamic_partitions_requests
    assert (add.partitions_def_name, list(add.partition_keys)) == ("regions", ["new-farm"])
    assert json.loads(released.cursor)["pending"] == []


def test_waiting_arrivals_are_bounded(store, instance):
    first, _ = evaluate(store, instance)
    for i in range(PENDING_MAX + 5):
        write_item(store, f"incoming/new-farm/{TODAY}/item-{i:03d}.json")
    settled()
    result, lines = evaluate(store, instance, first.cursor)
    assert len(json.loads(result.cursor)["pending"]) == PENDING_MAX
    assert any(line.startswith("dropped 5 waiting arrival(s), oldest first") for line in lines), lines


def test_a_region_is_registered_from_its_first_items_footprint_when_enabled(store, instance):
    first, _ = evaluate(store, instance, register_regions=True)
    write_scene(store, f"incoming/new-farm/{TODAY}", "S2A_1", FARM.bbox, FARM.crs, date=TODAY)
    write_item(store, f"incoming/Bad-Farm/{TODAY}/x.json")  # not a slug: never a region
    write_item(store, f"incoming/no-footprint/{TODAY}/x.json", b'{"type": "Feature", "assets": {}, "properties": {}}')
    settled()
    result, lines = evaluate(store, instance, first.cursor, register_regions=True)
    region = load_catalogue(store).get("new-farm")
    assert (region.crs, region.source) == ("EPSG:32631", "earth-search")
    assert [r.partition_key for r in result.run_requests] == [
        dg.MultiPartitionKey({"region": "new-farm", "date": TODAY})
    ]
    assert [list(r.partition_keys) for r in result.dynamic_partitions_requests] == [["new-farm"]]
    assert any("registered region new-farm (EPSG:32631" in line for line in lines), lines
    assert any(
        "region 'no-footprint' could not be registered" in line and "declares no CRS" in line for line in lines
    ), lines
    assert "no-footprint" not in load_catalogue(store).names()
    assert [p["region"] for p in json.loads(result.cursor)["pending"]] == ["no-footprint"]


def test_settings_have_bounds_and_clear_errors(monkeypatch):
    assert interval_seconds() == 30
    for value in ("0", "1.5", "nan", "inf", "soon"):
        monkeypatch.setenv("GEO_ASSETS_ARRIVALS_INTERVAL", value)
        with pytest.raises(
            ValueError, match=f"GEO_ASSETS_ARRIVALS_INTERVAL='{value}': must be a whole number from 1 to 86,400$"
        ):
            interval_seconds()
    monkeypatch.delenv("GEO_ASSETS_ARRIVALS_INTERVAL")
    assert arrivals_from_env() == ArrivalsResource()
    monkeypatch.setenv("GEO_ASSETS_ARRIVALS_LAYOUT", "landing/{date}/{region}")
    monkeypatch.setenv("GEO_ASSETS_ARRIVALS_LOOKBACK_DAYS", "3")
    monkeypatch.setenv("GEO_ASSETS_ARRIVALS_REGISTER_REGIONS", "true")
    got = arrivals_from_env()
    assert (got.layout, got.lookback_days, got.register_regions) == ("landing/{date}/{region}", 3, True)
    for name, value, message in [
        ("SETTLE_SECONDS", "nan", "must be a number from 0 to 86,400"),
        ("SETTLE_SECONDS", "inf", "must be a number from 0 to 86,400"),
        ("LOOKBACK_DAYS", "400", "must be a whole number from 0 to 366"),
        ("MAX_ARRIVALS", "0", "must be a whole number from 1 to 10,000"),
        ("LAYOUT", "incoming/{date}", "invalid arrivals layout"),
        ("SINCE", "yesterday", "expected an ISO time"),
        ("REGISTER_REGIONS", "maybe", "must be true or false"),
    ]:
        with monkeypatch.context() as m:
            m.setenv(f"GEO_ASSETS_ARRIVALS_{name}", value)
            with pytest.raises(ValueError, match=message) as info:
                arrivals_from_env()
            assert str(info.value).startswith(f"GEO_ASSETS_ARRIVALS_{name}={value!r}: ")


def test_the_sensor_is_off_by_default_and_in_the_definitions():
    from geo_assets.definitions import defs

    sensor = defs.resolve_sensor_def("scene_arrivals")
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert sensor.minimum_interval_seconds == 30
    assert "arrivals" in defs.resources
