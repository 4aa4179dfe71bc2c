"""Soak: 10,000 item versions land in an S3 bucket (SeaweedFS) in four waves while a real
`dagster-daemon run` ticks, with three daemon restarts in between (one a SIGKILL in the middle of a
wave); every version is requested in exactly one run, and deletions in none.

Deselected by default (5 to 10 minutes); run it with

    .venv/bin/python -m pytest -p no:logging -m soak tests/triggers/test_soak.py
"""

import os
import signal
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from daemon_process import Daemon, dagster_home, finished_ticks, sensor_ticks, wait_for
from trigger_stores import BUCKET, s3_settings

from geo_assets.geo.regions import Region, add_region
from geo_assets.geo.store import make_store

pytestmark = [pytest.mark.soak, pytest.mark.timeout(2400)]

REGIONS = ["soak-a", "soak-b"]
TODAY = datetime.now(UTC).date()


def wave_keys(w: int, n_recent: int = 2100, n_late: int = 400) -> list[str]:
    """2100 items under the 3 latest dates (found by the recent-dates pass) and 400 under old
    dates (found by the sweep), a few hundred per partition, so that a wave is a few dozen runs."""
    recent = [
        f"incoming/{r}/{TODAY - timedelta(days=d)}/w{w}-{i:03d}.json"
        for r in REGIONS
        for d in range(3)
        for i in range(350)
    ]
    late = [
        f"incoming/{r}/2019-0{w + 1}-{d + 1:02d}/w{w}-{i:03d}.json"
        for r in REGIONS
        for d in range(2)
        for i in range(100)
    ]
    return recent[:n_recent] + late[:n_late]


def put(store, keys, payload=b"{}"):
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: store.write_bytes(k, payload), keys))


def versions(store) -> set[str]:
    refs, after = set(), ""
    while True:
        page, more = store.scan("incoming", after)
        refs |= {o.ref for o in page}
        if not more:
            return refs
        after = page[-1].key


def requested(instance) -> Counter:
    runs = instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name": "scene_arrivals"}))
    return Counter(ref for run in runs for ref in run.tags["geo-assets/arrivals"].split(" "))


def test_ten_thousand_versions_each_run_once_across_three_restarts(tmp_path, s3_server, prefix):
    home = dagster_home(tmp_path / "home", max_concurrent_runs=0)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "GEO_ASSETS_PROFILE": "aws",
        "GEO_ASSETS_STORAGE_ROOT": f"s3://{BUCKET}/{prefix}",
        "AWS_ENDPOINT_URL_S3": s3_server.endpoint_url,
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_REGION": "us-east-1",
        "GEO_ASSETS_ARRIVALS_INTERVAL": "1",
        "GEO_ASSETS_ARRIVALS_SETTLE_SECONDS": "2",
    }
    store = make_store(f"s3://{BUCKET}/{prefix}", **s3_settings(s3_server))
    for name in REGIONS:
        add_region(store, Region(name, (399360.0, 5140480.0, 400640.0, 5141760.0), "EPSG:32631", "earth-search"))
    daemon = Daemon(env, tmp_path / "daemon.log")
    daemon.cli("dagster", "sensor", "start", "scene_arrivals", "-w", "workspace.yaml")
    instance = dg.DagsterInstance.from_config(str(home))
    expected: set[str] = set()

    def all_requested(timeout=600):
        wait_for(
            lambda: set(requested(instance)) >= expected,
            timeout,
            f"runs for all {len(expected)} versions so far",
            daemon,
            every=3,
        )

    daemon.start()
    try:
        wait_for(lambda: finished_ticks(instance), 180, "the first tick to end", daemon)

        put(store, wave_keys(0))
        expected |= versions(store)
        all_requested()
        daemon.stop()  # restart 1: between waves

        daemon.start()
        put(store, wave_keys(1))
        expected |= versions(store)
        wait_for(
            lambda: len(requested(instance)) > len(expected) - 2500 + 200, 300, "part of wave 1", daemon, every=0.5
        )
        daemon.stop(signal.SIGKILL)  # restart 2: killed in the middle of a wave
        daemon.start()
        all_requested()

        daemon.stop()  # restart 3: the daemon is down while a wave lands
        put(store, wave_keys(2))
        put(store, wave_keys(0)[:250], b'{"rewritten": true}')  # new versions of items already run
        put(store, wave_keys(3, n_recent=1850, n_late=400))
        for key in wave_keys(1)[:200]:
            store.delete(key)  # deletions of items already run: nothing to run
        expected |= versions(store)
        assert len(expected) == 10_000
        daemon.start()
        all_requested()
        ticks = len(sensor_ticks(instance))
        wait_for(lambda: len(sensor_ticks(instance)) >= ticks + 3, 120, "three more ticks", daemon)
    finally:
        daemon.stop()

    counts = requested(instance)
    runs = len(instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name": "scene_arrivals"})))
    print(f"{len(expected)} versions in {runs} runs over {len(sensor_ticks(instance))} ticks")  # shown with -s
    assert set(counts) == expected
    assert [ref for ref, n in counts.items() if n != 1] == []
    state = next(s for s in instance.all_instigator_state() if s.name == "scene_arrivals")
    assert len(state.instigator_data.cursor) < 1000  # the same size at 10,000 objects as at 10
