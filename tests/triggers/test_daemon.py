"""scene_arrivals through a real `dagster-daemon run`: real ticks over real buckets, the exact runs
they create, a daemon restart that neither loses nor repeats an arrival, and (on the embedded
default) an arrived scene run to the end behind a running run of the same partition."""

import os
from datetime import datetime, timezone

import dagster as dg
import pytest

from daemon_process import Daemon, dagster_home, sensor_ticks, tick_log_lines, wait_for
from devtools.arrivals import write_item, write_scene
from geo_assets.assets.common import digest
from geo_assets.geo.store import make_store
from trigger_stores import BUCKET, FARM, gcs_settings, s3_settings

TODAY = datetime.now(timezone.utc).date().isoformat()
FAST = {"GEO_ASSETS_ARRIVALS_INTERVAL": "1", "GEO_ASSETS_ARRIVALS_SETTLE_SECONDS": "1"}
REGION_ADD = ["geo-assets", "region", "add", FARM.name, "--bbox", *map(str, FARM.bbox), "--crs", FARM.crs, "--source", "earth-search"]


def queued(runs):
    """All of `runs`, once each has reached the queue (a run is created, then submitted)."""
    return len(runs) and all(r.status == dg.DagsterRunStatus.QUEUED for r in runs) and runs


def runs_of(instance):
    return sorted(instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name": "scene_arrivals"})), key=lambda r: r.tags["dagster/partition"])


def ref(store, key):
    return next(o.ref for o in store.scan(key.rsplit("/", 1)[0])[0] if o.key == key)


def profile_env(request, profile: str, prefix: str) -> tuple[dict, object]:
    """The environment of the aws or gcp profile against the local S3 or GCS server, and a store on it."""
    if profile == "aws":
        s3 = request.getfixturevalue("s3_server")
        env = {"GEO_ASSETS_STORAGE_ROOT": f"s3://{BUCKET}/{prefix}", "AWS_ENDPOINT_URL_S3": s3.endpoint_url,
               "AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key, "AWS_REGION": "us-east-1"}
        return env, make_store(f"s3://{BUCKET}/{prefix}", **s3_settings(s3))
    gcs = request.getfixturevalue("gcs_server")
    env = {"GEO_ASSETS_STORAGE_ROOT": f"gs://{BUCKET}/{prefix}", "STORAGE_EMULATOR_HOST": gcs, "GOOGLE_CLOUD_PROJECT": "test-project"}
    return env, make_store(f"gs://{BUCKET}/{prefix}", **gcs_settings(gcs))


@pytest.mark.parametrize("profile", ["aws", "gcp"])
def test_ticks_through_the_daemon_request_each_arrival_once_across_a_restart(tmp_path, request, profile, prefix):
    """On S3 (SeaweedFS, signatures checked) and GCS (fake-gcs-server), with the queue held at 0 so
    the requested runs stay queued."""
    home = dagster_home(tmp_path / "home", max_concurrent_runs=0)
    cloud, store = profile_env(request, profile, prefix)
    env = {**os.environ, **FAST, **cloud, "DAGSTER_HOME": str(home), "GEO_ASSETS_PROFILE": profile}
    daemon = Daemon(env, tmp_path / "daemon.log")
    daemon.cli(*REGION_ADD)
    daemon.cli("dagster", "sensor", "start", "scene_arrivals", "-w", "workspace.yaml")
    instance = dg.DagsterInstance.from_config(str(home))
    daemon.start()
    try:
        wait_for(lambda: sensor_ticks(instance), 120, "the first tick", daemon)
        a = f"incoming/arrival-farm/{TODAY}/S2A_1.json"
        b1, b2 = "incoming/arrival-farm/2024-06-01/S2A_2.json", "incoming/arrival-farm/2024-06-01/S2B_3.json"
        for key in (a, b1, b2, f"incoming/arrival-farm/{TODAY}/S2A_1/B04.tif", "incoming/notes.txt"):
            write_item(store, key)
        runs = wait_for(lambda: len(runs_of(instance)) >= 2 and queued(runs_of(instance)), 90, "two queued runs", daemon)
        refs_b = sorted([ref(store, b1), ref(store, b2)])
        assert [(r.job_name, r.status, r.tags["dagster/partition"], r.tags["dagster/run_key"], r.tags["geo-assets/arrivals"],
                 r.run_config) for r in runs] == [
            ("imagery_job", dg.DagsterRunStatus.QUEUED, "2024-06-01|arrival-farm", f"arrivals:2024-06-01|arrival-farm:{digest(refs_b)}",
             " ".join(refs_b), {"ops": {"imagery_tiles": {"config": {"arrivals": "incoming/arrival-farm/2024-06-01"}}}}),
            ("imagery_job", dg.DagsterRunStatus.QUEUED, f"{TODAY}|arrival-farm", f"arrivals:{TODAY}|arrival-farm:{digest([ref(store, a)])}",
             ref(store, a), {"ops": {"imagery_tiles": {"config": {"arrivals": f"incoming/arrival-farm/{TODAY}"}}}}),
        ]
        assert all(r.tags["dagster/partition/region"] == "arrival-farm" for r in runs)  # what the queue limits by
        skipped = lambda: [l for l in tick_log_lines(instance, sensor_ticks(instance)) if "skipped incoming/notes.txt" in l]  # noqa: E731
        (line,) = wait_for(skipped, 30, "the tick's log line")  # in the UI's tick log, once
        assert line.endswith("scene_arrivals - skipped incoming/notes.txt: does not lie under a partition folder incoming/{region}/{date}")

        daemon.stop()
        write_item(store, b1, b'{"rewritten": true}')  # a new version of an item already run
        store.delete(a)  # a deletion: nothing to run
        late = "incoming/arrival-farm/2019-03-01/S2A_late.json"  # an old date delivered now: the sweep's
        write_item(store, late)
        daemon.start()
        seen = {r.run_id for r in runs}
        later = lambda: [r for r in runs_of(instance) if r.run_id not in seen]  # noqa: E731
        new = wait_for(lambda: len(later()) >= 2 and queued(later()), 90, "two more queued runs", daemon)
        assert sorted((r.tags["dagster/partition"], r.tags["geo-assets/arrivals"]) for r in new) == [
            ("2019-03-01|arrival-farm", ref(store, late)), ("2024-06-01|arrival-farm", ref(store, b1))]
        ticks = len(sensor_ticks(instance))
        wait_for(lambda: len(sensor_ticks(instance)) >= ticks + 3, 60, "three more ticks", daemon)
        assert len(runs_of(instance)) == 4  # nothing twice, nothing for the deletion
    finally:
        daemon.stop()


def test_an_arrived_scene_runs_to_the_end_behind_a_running_run_of_its_partition(tmp_path):
    """The embedded default: a local folder, the project's queue (one run per partition at a time)."""
    home = dagster_home(tmp_path / "home", max_concurrent_runs=2)
    env = {**os.environ, **FAST, "DAGSTER_HOME": str(home), "GEO_ASSETS_STORAGE_ROOT": (tmp_path / "storage").as_uri()}
    env.pop("GEO_ASSETS_PROFILE", None)
    store = make_store((tmp_path / "storage").as_uri())
    daemon = Daemon(env, tmp_path / "daemon.log")
    daemon.cli(*REGION_ADD)
    daemon.cli("dagster", "sensor", "start", "scene_arrivals", "-w", "workspace.yaml")
    instance = dg.DagsterInstance.from_config(str(home))
    folder = f"incoming/arrival-farm/{TODAY}"
    daemon.start()
    try:
        wait_for(lambda: sensor_ticks(instance), 120, "the first tick", daemon)
        write_scene(store, folder, "S2A_1", FARM.bbox, FARM.crs, date=TODAY, seed=1)
        (first,) = wait_for(lambda: runs_of(instance), 60, "the first run", daemon)
        # A second scene for the same partition lands while the first run is being launched.
        write_scene(store, folder, "S2B_2", FARM.bbox, FARM.crs, date=TODAY, seed=2, cloud=50.0)
        second = wait_for(lambda: [r for r in runs_of(instance) if r.run_id != first.run_id], 60, "the second run", daemon)[0]
        done = lambda: all(instance.get_run_by_id(r.run_id).is_finished for r in (first, second))  # noqa: E731
        wait_for(done, 240, "both runs to finish", daemon, every=2)
        records = {r.dagster_run.run_id: r for r in instance.get_run_records(dg.RunsFilter(run_ids=[first.run_id, second.run_id]))}
        one, two = records[first.run_id], records[second.run_id]
        assert one.dagster_run.status == two.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        assert two.dagster_run.tags["dagster/partition"] == one.dagster_run.tags["dagster/partition"] == f"{TODAY}|arrival-farm"
        assert two.create_timestamp.timestamp() < one.end_time, "the second run was requested after the first ended"
        assert two.start_time >= one.end_time  # the queue held it until the first had ended
        manifest = store.read_json(f"manifests/imagery_tiles/region=arrival-farm/date={TODAY}.json")
        assert [i["id"] for i in manifest["scene"]["items"]] == ["S2A_1", "S2B_2"]  # the later run read both
        assert manifest["scene"]["arrivals"]["folder"] == folder
    finally:
        daemon.stop()
