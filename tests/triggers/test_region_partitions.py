"""region_partitions through a real `dagster-daemon run`: a catalogue it cannot read (a storage root
that points nowhere, a corrupt catalogue file) removes no region's partition; the tick fails with a
message naming the storage root and the problem."""

import os

import dagster as dg
import pytest
from daemon_process import Daemon, dagster_home, sensor_ticks, wait_for
from dagster._core.scheduler.instigation import TickStatus
from trigger_stores import FARM

from geo_assets.geo.regions import CATALOGUE_KEY
from geo_assets.geo.store import make_store

BUILT_IN = {"synth-train-a", "synth-train-b", "synth-holdout", "s2-sample", "landsat-sample"}


def chain(error) -> str:
    """A tick error's message and those of its causes."""
    return "" if error is None else error.message + chain(error.cause) + chain(error.context)


@pytest.mark.parametrize("fault", ["root-points-nowhere", "corrupt-catalogue", "not-regions"])
def test_an_unreadable_catalogue_removes_no_partition(tmp_path, fault):
    home = dagster_home(tmp_path / "home", max_concurrent_runs=0)
    storage = (tmp_path / "storage").as_uri()
    env = {**os.environ, "DAGSTER_HOME": str(home), "GEO_ASSETS_STORAGE_ROOT": storage}
    env.pop("GEO_ASSETS_PROFILE", None)
    Daemon(env, tmp_path / "cli.log").cli(
        "geo-assets",
        "region",
        "add",
        FARM.name,
        "--bbox",
        *map(str, FARM.bbox),
        "--crs",
        FARM.crs,
        "--source",
        "earth-search",
    )
    instance = dg.DagsterInstance.from_config(str(home))
    for name in BUILT_IN:  # as `geo-assets init` registers them
        instance.add_dynamic_partitions("regions", [name])
    before = set(instance.get_dynamic_partitions("regions"))
    assert before == BUILT_IN | {FARM.name}

    store = make_store(storage)
    if fault == "root-points-nowhere":
        root = (tmp_path / "nowhere").as_uri()  # e.g. a mistyped GEO_ASSETS_STORAGE_ROOT
        problem = f"no region catalogue at {root}/{CATALOGUE_KEY} (storage root {root}), so region partition(s) {FARM.name} were kept"
    else:
        root = storage
        store.write_bytes(
            CATALOGUE_KEY,
            b'{"regions": [{"name": "arrival-farm", "bbox": [399360'
            if fault == "corrupt-catalogue"
            else b'{"regions": [{"name": "arrival-farm"}]}',
        )
        problem = (
            f"the region catalogue under storage root {root} cannot be read, so no region partition was added or removed: "
            f"region catalogue {root}/{CATALOGUE_KEY} cannot be read: "
            + ("JSONDecodeError" if fault == "corrupt-catalogue" else "KeyError")
        )

    daemon = Daemon({**env, "GEO_ASSETS_STORAGE_ROOT": root}, tmp_path / "daemon.log")
    daemon.start()  # region_partitions is on by default: the daemon's first pass ticks it
    try:
        (tick,) = wait_for(
            lambda: [t for t in sensor_ticks(instance, "region_partitions") if t.status != TickStatus.STARTED],
            120,
            "region_partitions' first tick",
            daemon,
        )
    finally:
        daemon.stop()
    assert set(instance.get_dynamic_partitions("regions")) == before  # nothing removed, nothing added
    assert tick.status == TickStatus.FAILURE, tick
    assert problem in chain(tick.error), chain(tick.error)  # as the UI shows the tick's error
