"""The daemon's whole process tree killed (SIGKILL, as a lost machine leaves it) while a range backfill of
20 partitions runs, then started again: the backfill ends COMPLETED_SUCCESS, the `geo-assets backfill
--wait` that launched it returns 0, and the event log holds exactly one materialisation of each of the
20 partitions, each naming the manifest the store holds.

The path a user takes: the deployment's webserver and `dagster-daemon run` on the embedded default's
instance yaml, `geo-assets backfill` through GraphQL. The range runs in one run (BackfillPolicy.single_run);
the kill takes its run worker with the daemon, run monitoring marks the lost run failed after the
restart, run retries run the range again, and the backfill waits for the retry."""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import time

import dagster as dg
import psutil
import pytest
from reliability import record

from devtools.dagster_dev import BIN, ROOT, free_port, stop_group
from geo_assets.assets.common import digest
from geo_assets.cli.commands import register
from geo_assets.cli.graphql import DagsterClient, LaunchError
from geo_assets.geo.regions import Region, load_catalogue, save_catalogue
from geo_assets.geo.store import Store, local_root
from tests.triggers.daemon_process import Daemon, dagster_home, wait_for

pytestmark = pytest.mark.slow  # a webserver, a daemon started twice and two runs of 20 partitions: minutes

MEASURES = [
    "geo_assets/run_launcher.py",
    "geo_assets/assets/common.py",
    "geo_assets/cli/commands.py",
    "geo_assets/cli/graphql.py",
    "dagster.yaml",
    "tests/faults/test_backfill_daemon_killed.py",
]
# A few tiles of 256 px per date: each partition takes a moment, so the kill lands mid-range.
REGION = Region("backfill-field", (400000.0, 5120000.0, 405120.0, 5122560.0), "EPSG:32631", "synthetic", "synthetic")
DATES = [f"2024-05-{day:02d}" for day in range(1, 21)]
PARTITIONS = [f"{date}|{REGION.name}" for date in DATES]
KILL_AT = 4  # dates whose tiles are in the store when the daemon's tree is killed


def _worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The run worker's pid, from Dagster's own "Started process for run (pid: N)." event."""
    for event in instance.all_logs(run_id):
        found = re.fullmatch(r"Started process for run \(pid: (\d+)\)\.", event.message or "")
        if found:
            return int(found.group(1))
    return None


def _dates_with_tiles(store: Store) -> list[str]:
    return [d for d in DATES if any(k.endswith(".tif") for k in store.list(f"imagery/{REGION.name}/{d}"))]


def _materialisations(instance: dg.DagsterInstance) -> list:
    return instance.fetch_materializations(dg.AssetKey("imagery_tiles"), limit=1000).records


@pytest.fixture
def deployment(tmp_path, monkeypatch):
    """The deployment's webserver on the embedded default's instance (SQLite, ProcessRunLauncher, run
    monitoring and retries as dagster.yaml sets them), the daemon not yet started; yields (url, env, store)."""
    home = dagster_home(tmp_path / "home", max_concurrent_runs=2)
    store = Store(local_root(tmp_path / "storage"))
    catalogue = load_catalogue(store)
    catalogue.add(REGION)
    save_catalogue(store, catalogue)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "GEO_ASSETS_STORAGE_ROOT": store.root,
    }
    env.pop("GEO_ASSETS_PROFILE", None)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        register(instance, regions=[REGION.name])
    port = free_port()
    log = tmp_path / "webserver.log"
    web = subprocess.Popen(
        [BIN / "python", "-m", "geo_assets.webserver", "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
        cwd=ROOT,
        env=env,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                DagsterClient(url).ready()
                break
            except LaunchError as exc:
                assert time.monotonic() < deadline and web.poll() is None, f"{exc}\n{log.read_text()[-3000:]}"
                time.sleep(1)
        yield url, env, store, home
    finally:
        stop_group(web, grace=30)


def test_a_backfill_whose_daemon_tree_was_killed_materialises_each_partition_exactly_once(deployment, tmp_path):
    url, env, store, home = deployment
    daemon = Daemon(env, tmp_path / "daemon.log")
    out = tmp_path / "backfill.out"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        daemon.start()
        cli = subprocess.Popen(
            [BIN / "geo-assets", "backfill", "--region", REGION.name, "--from", DATES[0], "--to", DATES[-1]]
            + ["--select", "imagery_tiles", "--wait", "--url", url],
            cwd=ROOT,
            env=env,
            stdout=open(out, "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            found = wait_for(
                lambda: re.search(r"launched backfill (\S+) of 20 partitions", out.read_text()), 120, "the launch"
            )
            backfill_id = found.group(1)

            def runs() -> list[dg.DagsterRun]:
                return instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))

            (run,) = wait_for(runs, 120, "the backfill's run", daemon)
            wait_for(
                lambda: len(_dates_with_tiles(store)) >= KILL_AT, 300, f"{KILL_AT} dates' tiles", daemon, every=0.05
            )
            worker = psutil.Process(
                wait_for(lambda: _worker_pid(instance, run.run_id), 30, "the run worker", every=0.05)
            )
            daemon.stop(signal.SIGKILL)  # the daemon's process group: its code server, the run worker, its step
            killed = time.monotonic()
            psutil.wait_procs([worker], timeout=30)
            assert not worker.is_running()
            cut = _dates_with_tiles(store)
            assert len(cut) < len(DATES), "the range was done before the kill"
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED  # nothing ended it
            assert _materialisations(instance) == []  # a range run publishes its partitions together, at its end

            daemon.start()
            try:
                code = cli.wait(timeout=420)  # `--wait` follows the backfill to its end, through the restart
            except subprocess.TimeoutExpired:
                raise AssertionError(f"the backfill did not end: {out.read_text()[-2000:]}") from None
            recovered = time.monotonic() - killed
            said = out.read_text()
            assert code == 0, said[-3000:] + daemon.log.read_text()[-3000:]
            assert said.strip().endswith(f"backfill {backfill_id}: COMPLETED_SUCCESS (1 failed run(s) retried)"), said[
                -2000:
            ]

            # Exactly once: one materialisation of each of the 20 partitions, and of no other.
            records = _materialisations(instance)
            counted = collections.Counter(r.partition_key for r in records)
            assert counted == dict.fromkeys(PARTITIONS, 1), counted
            # The lost run failed (run monitoring), its one retry ran the range to the end.
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
            retries = [r for r in runs() if r.run_id != run.run_id]
            messages = [e.message or "" for e in instance.all_logs(run.run_id)]
            assert any("ended without ending the run" in m for m in messages), messages[-5:]
            assert [(r.status, r.tags.get("dagster/parent_run_id")) for r in retries] == [
                (dg.DagsterRunStatus.SUCCESS, run.run_id)
            ]
            assert {r.run_id for r in records} == {retries[0].run_id}
            # Nothing lost: each partition's manifest in the store is the one its materialisation names.
            manifests = [k for k in store.list("manifests/imagery_tiles") if f"region={REGION.name}/" in k]
            assert len(manifests) == len(DATES)
            by_key = {r.partition_key: r.asset_materialization.metadata for r in records}
            for date in DATES:
                (key,) = [k for k in manifests if f"date={date}/" in k]
                manifest = store.read_json(key)
                assert manifest["date"] == date and manifest["tiles"]
                assert all(store.exists(t["path"]) for t in manifest["tiles"])
                assert by_key[f"{date}|{REGION.name}"]["manifest_digest"].value == digest(manifest)
        finally:
            if cli.poll() is None:
                stop_group(cli, grace=5)
            daemon.stop()

    record(
        "daemon-killed-mid-backfill",
        "Daemon killed mid-backfill of 20 partitions, restarted",
        "tests/faults/test_backfill_daemon_killed.py",
        MEASURES,
        injected=(
            f"SIGKILL of `dagster-daemon run`'s whole process tree (its code server, the range run's worker and step) "
            f"once {len(cut)} of {len(DATES)} dates of a `geo-assets backfill --select imagery_tiles --wait` "
            "(one run of the range) had tiles in the store; then the daemon started again, on the embedded default's "
            "instance yaml."
        ),
        observed={
            "backfill": "COMPLETED_SUCCESS; `geo-assets backfill --wait` returned 0",
            "runs": "2: the lost run marked failed by run monitoring, its one retry succeeded",
            "materialisations per partition": f"1 for each of {len(counted)} (event log), none from the lost run",
            "manifests compared with their materialisations": f"{len(manifests)}, each digest equal; every tile present",
            "time to recover (kill to backfill done)": f"{recovered:.1f} s",
        },
    )
