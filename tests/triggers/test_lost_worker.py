"""A lost run worker does not block its partition. On the embedded default a run is a process beside
the daemon's code server; `kill -9` of the daemon's whole process tree mid-step (as a lost machine
leaves it) takes the code server and the run worker with it, so nothing is left to end the run.
After the daemon restarts, run monitoring finds the worker gone (geo_assets/run_launcher.py), marks
the run failed, and run retries run it again to the end. Before, the run stayed STARTED for good
and every later run of its partition queued behind it."""

import json
import re
import signal

import dagster as dg
import psutil
from daemon_process import Daemon, dagster_home, wait_for
from test_leases import _tiles, imagery_key

from geo_assets.cli.commands import register

REGION, DATE, TILE = "tiny-holdout", "2024-09-23", 16
PARTITION = f"{DATE}|{REGION}"


def _worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The run worker's pid, from Dagster's own "Started process for run (pid: N)." event."""
    for event in instance.all_logs(run_id):
        found = re.fullmatch(r"Started process for run \(pid: (\d+)\)\.", event.message or "")
        if found:
            return int(found.group(1))
    return None


def _run(instance: dg.DagsterInstance, **tags) -> dg.DagsterRun | None:
    runs = instance.get_runs(dg.RunsFilter(tags=tags))
    return runs[0] if runs else None


def test_a_run_whose_daemon_tree_was_killed_fails_and_is_retried_to_the_end(world, tmp_path, monkeypatch):
    home = dagster_home(tmp_path / "home", max_concurrent_runs=2)
    env = {**world.env, "DAGSTER_HOME": str(home)}
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    daemon = Daemon(env, tmp_path / "daemon.log")
    with dg.DagsterInstance.get() as instance:
        register(instance, regions=[REGION])
        daemon.start()
        try:
            tags = {"dagster/partition": PARTITION, "dagster/partition/date": DATE, "dagster/partition/region": REGION}
            daemon.cli(
                "dagster",
                "job",
                "launch",
                "-w",
                "workspace.yaml",
                "-l",
                "geo_assets",
                "-j",
                "imagery_job",
                "--tags",
                json.dumps(tags),
                "--config-json",
                json.dumps({"ops": {"imagery_tiles": {"config": {"tile_size": TILE}}}}),
            )
            run = wait_for(lambda: _run(instance, **tags), 60, "the launched run")
            wait_for(lambda: _tiles(world, REGION, DATE, TILE), 300, "the run's first tile", daemon, every=0.005)
            worker = psutil.Process(
                wait_for(lambda: _worker_pid(instance, run.run_id), 30, "the run worker", every=0.05)
            )
            daemon.stop(signal.SIGKILL)  # the daemon's process group: its code server, the run worker, its steps
            psutil.wait_procs([worker], timeout=30)
            assert not worker.is_running()
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED  # nothing ended it
            assert not world.store.exists(imagery_key(REGION, DATE, TILE))

            daemon.start()
            wait_for(
                lambda: instance.get_run_by_id(run.run_id).is_finished,
                300,
                "run monitoring to end the lost run",
                daemon,
            )
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
            messages = [e.message or "" for e in instance.all_logs(run.run_id)]
            assert any("ended without ending the run" in m for m in messages), messages[-5:]
            retry = wait_for(lambda: _run(instance, **{"dagster/parent_run_id": run.run_id}), 120, "the retry", daemon)
            wait_for(lambda: instance.get_run_by_id(retry.run_id).is_finished, 300, "the retry to end", daemon)
            assert instance.get_run_by_id(retry.run_id).status == dg.DagsterRunStatus.SUCCESS, daemon.log.read_text()[
                -3000:
            ]
        finally:
            daemon.stop()
    manifest = world.store.read_json(imagery_key(REGION, DATE, TILE))
    assert manifest["tile_size"] == TILE and all(world.store.exists(t["path"]) for t in manifest["tiles"])
