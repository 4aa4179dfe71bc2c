"""scene_arrivals through a real `dagster-daemon run`: real ticks over a real bucket, the exact runs
they create, a daemon restart that neither loses nor repeats an arrival, and (on the embedded
default) the scenes of one partition run to the end one after the other."""

import os
from datetime import UTC, datetime

import dagster as dg
from daemon_process import Daemon, dagster_home, finished_ticks, sensor_ticks, tick_log_lines, wait_for
from trigger_stores import BUCKET, FARM, s3_settings

from devtools.arrivals import write_item, write_scene
from geo_assets.assets.common import digest
from geo_assets.geo.acquisitions import pick_imagery
from geo_assets.geo.store import make_store

TODAY = datetime.now(UTC).date().isoformat()
FAST = {"GEO_ASSETS_ARRIVALS_INTERVAL": "1", "GEO_ASSETS_ARRIVALS_SETTLE_SECONDS": "1"}
REGION_ADD = [
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
]


def queued(runs):
    """All of `runs`, once each has reached the queue (a run is created, then submitted)."""
    return len(runs) and all(r.status == dg.DagsterRunStatus.QUEUED for r in runs) and runs


def runs_of(instance):
    return sorted(
        instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name": "scene_arrivals"})),
        key=lambda r: r.tags["dagster/partition"],
    )


def ref(store, key):
    return next(o.ref for o in store.scan(key.rsplit("/", 1)[0])[0] if o.key == key)


def test_ticks_through_the_daemon_request_each_arrival_once_across_a_restart(tmp_path, s3_server, prefix):
    """On the aws profile against S3 (SeaweedFS, signatures checked), the queue held at 0 so the
    requested runs stay queued. (The gcp profile's listings and reads are the same code against
    fake-gcs-server in test_watch and test_arrived_scene; the daemon's part does not depend on the store.)"""
    home = dagster_home(tmp_path / "home", max_concurrent_runs=0)
    env = {
        **os.environ,
        **FAST,
        "DAGSTER_HOME": str(home),
        "GEO_ASSETS_PROFILE": "aws",
        "GEO_ASSETS_STORAGE_ROOT": f"s3://{BUCKET}/{prefix}",
        "AWS_ENDPOINT_URL_S3": s3_server.endpoint_url,
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_REGION": "us-east-1",
    }
    store = make_store(f"s3://{BUCKET}/{prefix}", **s3_settings(s3_server))
    daemon = Daemon(env, tmp_path / "daemon.log")
    daemon.cli(*REGION_ADD)
    daemon.cli("dagster", "sensor", "start", "scene_arrivals", "-w", "workspace.yaml")
    instance = dg.DagsterInstance.from_config(str(home))
    daemon.start()
    try:
        wait_for(lambda: finished_ticks(instance), 120, "the first tick to end", daemon)
        a = f"incoming/arrival-farm/{TODAY}/S2A_1.json"
        b1, b2 = "incoming/arrival-farm/2024-06-01/S2A_2.json", "incoming/arrival-farm/2024-06-01/S2B_3.json"
        for key in (a, b1, b2, f"incoming/arrival-farm/{TODAY}/S2A_1/B04.tif", "incoming/notes.txt"):
            write_item(store, key)
        runs = wait_for(
            lambda: len(runs_of(instance)) >= 2 and queued(runs_of(instance)), 180, "two queued runs", daemon
        )
        refs_b = sorted([ref(store, b1), ref(store, b2)])
        assert [
            (
                r.job_name,
                r.status,
                r.tags["dagster/partition"],
                r.tags["dagster/run_key"],
                r.tags["geo-assets/arrivals"],
                r.run_config,
            )
            for r in runs
        ] == [
            (
                "imagery_job",
                dg.DagsterRunStatus.QUEUED,
                "2024-06-01|arrival-farm",
                f"arrivals:2024-06-01|arrival-farm:{digest(refs_b)}",
                " ".join(refs_b),
                {"ops": {"imagery_tiles": {"config": {"arrivals": "incoming/arrival-farm/2024-06-01"}}}},
            ),
            (
                "imagery_job",
                dg.DagsterRunStatus.QUEUED,
                f"{TODAY}|arrival-farm",
                f"arrivals:{TODAY}|arrival-farm:{digest([ref(store, a)])}",
                ref(store, a),
                {"ops": {"imagery_tiles": {"config": {"arrivals": f"incoming/arrival-farm/{TODAY}"}}}},
            ),
        ]
        assert all(r.tags["dagster/partition/region"] == "arrival-farm" for r in runs)  # what the queue limits by

        def skipped():
            return [x for x in tick_log_lines(instance, sensor_ticks(instance)) if "skipped incoming/notes.txt" in x]

        (line,) = wait_for(skipped, 30, "the tick's log line")  # in the UI's tick log, once
        assert line.endswith(
            "scene_arrivals - skipped incoming/notes.txt: does not lie under a partition folder incoming/{region}/{date}"
        )

        daemon.stop()
        write_item(store, b1, b'{"rewritten": true}')  # a new version of an item already run
        store.delete(a)  # a deletion: nothing to run
        late = "incoming/arrival-farm/2019-03-01/S2A_late.json"  # an old date delivered now: the sweep's
        write_item(store, late)
        daemon.start()
        seen = {r.run_id for r in runs}
        later = lambda: [r for r in runs_of(instance) if r.run_id not in seen]  # noqa: E731
        new = wait_for(lambda: len(later()) >= 2 and queued(later()), 180, "two more queued runs", daemon)
        assert sorted((r.tags["dagster/partition"], r.tags["geo-assets/arrivals"]) for r in new) == [
            ("2019-03-01|arrival-farm", ref(store, late)),
            ("2024-06-01|arrival-farm", ref(store, b1)),
        ]
        ticks = len(sensor_ticks(instance))
        wait_for(lambda: len(sensor_ticks(instance)) >= ticks + 3, 180, "three more ticks", daemon)
        assert len(runs_of(instance)) == 4  # nothing twice, nothing for the deletion
    finally:
        daemon.stop()


def test_arrived_scenes_of_one_partition_run_one_after_the_other_to_the_end(tmp_path):
    """The embedded default (a local folder, the project's run queue: one run per partition at a
    time). Two scenes of one partition arrive in two ticks while the queue is held; once it is let
    go, the second run waits for the first to end, and both succeed."""
    home = dagster_home(tmp_path / "home", max_concurrent_runs=0)
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
        wait_for(lambda: finished_ticks(instance), 120, "the first tick to end", daemon)
        write_scene(store, folder, "S2A_1", FARM.bbox, FARM.crs, date=TODAY, seed=1)
        (first,) = wait_for(lambda: queued(runs_of(instance)), 180, "the first run", daemon)
        write_scene(store, folder, "S2B_2", FARM.bbox, FARM.crs, date=TODAY, seed=2, cloud=50.0)
        second = wait_for(
            lambda: queued([r for r in runs_of(instance) if r.run_id != first.run_id]), 180, "the second run", daemon
        )[0]
        daemon.stop()
        dagster_home(home, max_concurrent_runs=2)  # room for both: only the per-partition limit can hold one back
        daemon.start()
        done = lambda: all(instance.get_run_by_id(r.run_id).is_finished for r in (first, second))  # noqa: E731
        wait_for(done, 300, "both runs to finish", daemon, every=2)
        records = {
            r.dagster_run.run_id: r
            for r in instance.get_run_records(dg.RunsFilter(run_ids=[first.run_id, second.run_id]))
        }
        runs = sorted(records.values(), key=lambda r: r.start_time)
        assert [r.dagster_run.status for r in runs] == [dg.DagsterRunStatus.SUCCESS] * 2
        assert {r.dagster_run.tags["dagster/partition"] for r in runs} == {f"{TODAY}|arrival-farm"}
        assert runs[1].start_time >= runs[0].end_time  # queued behind, not beside
        manifest = pick_imagery(store, "arrival-farm", TODAY)[1]
        assert [i["id"] for i in manifest["scene"]["items"]] == ["S2A_1", "S2B_2"]  # both scenes, in mosaic order
        assert manifest["scene"]["arrivals"]["folder"] == folder

        # S2A_1 archived out of the folder: the removal moves the folder's ctime, so S2B_2 is offered again,
        # alone (a run key never asked for), but it was asked for before, and a run of what is left would
        # mosaic one scene of two: no run.
        for key in [*store.list(f"{folder}/S2A_1"), f"{folder}/S2A_1.json"]:
            store.delete(key)
        ticks = len(finished_ticks(instance))
        wait_for(
            lambda: len(finished_ticks(instance)) >= ticks + 4, 120, "four more ticks, past the settle time", daemon
        )
        assert {r.run_id for r in runs_of(instance)} == {first.run_id, second.run_id}
        said = tick_log_lines(instance, finished_ticks(instance)[: len(finished_ticks(instance)) - ticks])
        assert any("0 new item version(s) and 1 asked for before (their folder changed)" in line for line in said), said
    finally:
        daemon.stop()
