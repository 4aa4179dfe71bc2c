"""PostgreSQL restarted under a running deployment: the deployment's shape on this host (tests/ui/host_stack.py:
code server, the deployment's webserver and `dagster-daemon run`, the instance's storage from
deploy/compose/dagster.yaml, run monitoring and retries as dagster.yaml sets them) with four
`geo-assets launch` runs, two in flight and two in the queue, when its database stops (fast shutdown:
every session cut) and starts again seconds later.

What holds: the daemon and the webserver outlive the restart; every run in flight ends (succeeds, or fails
and its partition runs again to success), none stays STARTED; every run queued before the restart runs
after it and succeeds; and the event log loses nothing: each partition's materialisations name the manifest
the store holds, and each successful run recorded its partition's materialisation."""

from __future__ import annotations

import re
import subprocess
import time

import dagster as dg
import pytest
from reliability import record

from devtools.dagster_dev import BIN, ROOT
from devtools.postgres import postgres_server
from geo_assets.assets.common import digest
from geo_assets.geo.acquisitions import pick_imagery
from geo_assets.geo.store import Store, local_root
from tests.triggers.daemon_process import wait_for
from tests.ui.host_stack import host_stack

pytestmark = pytest.mark.slow  # a deployment started, four runs, a database restarted: minutes

MEASURES = [
    "deploy/compose/dagster.yaml",
    "dagster.yaml",
    "geo_assets/run_launcher.py",
    "geo_assets/cli/graphql.py",
    "tests/faults/test_database_restarted.py",
]
REGION = "synth-holdout"  # 16 tiles of 256 px a date: a run takes a while
DATES = ["2024-06-01", "2024-06-02", "2024-06-03", "2024-06-04"]  # two in flight, two queued (2 runs at once)
DOWN_S = 5.0  # the database away: longer than one query's retries by dagster-postgres (about 6 s in all) take


def _launch(stack, date: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BIN / "geo-assets", "launch", "--url", stack.graphql, "--region", REGION, "--date", date]
        + ["--select", "imagery_tiles", *args],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _settled(instance: dg.DagsterInstance) -> list[dg.DagsterRun] | None:
    """Every run, once all have ended and each failed run that will be retried has its retry ended too."""
    runs = instance.get_runs()
    if not runs or any(not r.is_finished for r in runs):
        return None
    parents = {r.tags.get("dagster/parent_run_id") for r in runs}
    pending = [r for r in runs if r.tags.get("dagster/will_retry") == "true" and r.run_id not in parents]
    return None if pending else runs


def test_a_database_restarted_under_a_deployment_loses_no_run_and_no_event(tmp_path, monkeypatch):
    with postgres_server() as pg, host_stack(tmp_path, pg) as stack:
        for name in ("DAGSTER_HOME", *pg.env()):  # what the instance yaml reads, for this process's instance
            monkeypatch.setenv(name, stack.env[name])
        home = stack.env["DAGSTER_HOME"]
        store = Store(local_root(tmp_path / "storage"))
        launched = {}
        for date in DATES:
            proc = _launch(stack, date)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            launched[date] = re.search(r"launched run (\S+) ", proc.stdout).group(1)

        with dg.DagsterInstance.from_config(home) as instance:

            def in_flight_and_queued():
                runs = {d: instance.get_run_by_id(r) for d, r in launched.items()}
                writing = [
                    d
                    for d, r in runs.items()
                    if r.status == dg.DagsterRunStatus.STARTED
                    and any(k.endswith(".tif") for k in store.list(f"imagery/{REGION}/{d}"))
                ]
                queued = [d for d, r in runs.items() if r.status == dg.DagsterRunStatus.QUEUED]
                return (writing, queued) if writing and queued else None

            writing, queued = wait_for(in_flight_and_queued, 300, "a run writing tiles beside a queued one", every=0.1)
        pg.stop()  # a fast shutdown: every session is cut, as a database host going down
        stopped, stopped_at = time.monotonic(), time.time()
        time.sleep(DOWN_S)
        pg.start()
        back = time.monotonic()
        down = back - stopped

        with dg.DagsterInstance.from_config(home) as instance:
            runs = wait_for(lambda: _settled(instance), 420, "every run and retry to end")
            settled = time.monotonic() - back
            for name, proc in stack.procs.items():  # the services outlived the restart
                assert proc.poll() is None, f"{name} exited: " + (tmp_path / f"{name}.log").read_text()[-3000:]

            by_id = {r.run_id: r for r in runs}
            assert set(launched.values()) <= set(by_id)  # no run lost
            statuses = {d: by_id[launched[d]].status for d in DATES}
            # Queued before the restart: each ran after it, to success.
            for date in queued:
                run = by_id[launched[date]]
                assert run.status == dg.DagsterRunStatus.SUCCESS, (date, statuses)
                assert instance.get_run_record_by_id(run.run_id).start_time > stopped_at, date
            retried = [r for r in runs if r.tags.get("dagster/parent_run_id")]
            # In flight: ended either way; a partition whose run failed runs again to success (its retry, or a
            # launch now: the failure left nothing that stops it).
            relaunched = []
            for date in DATES:
                ok = [
                    r
                    for r in runs
                    if r.tags.get("dagster/partition") == f"{date}|{REGION}" and r.status == dg.DagsterRunStatus.SUCCESS
                ]
                if not ok:
                    proc = _launch(stack, date, "--wait")
                    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
                    relaunched.append(date)
            runs = instance.get_runs()

            # The event log lost nothing: each partition's materialisations name the stored manifest, and each
            # successful run recorded one.
            compared = 0
            for date in DATES:
                partition = f"{date}|{REGION}"
                manifest = pick_imagery(store, REGION, date)[1]
                records = [
                    r
                    for r in instance.fetch_materializations(dg.AssetKey("imagery_tiles"), limit=1000).records
                    if r.partition_key == partition
                ]
                assert records and all(
                    r.asset_materialization.metadata["manifest_digest"].value == digest(manifest) for r in records
                ), (partition, len(records))
                succeeded = {
                    r.run_id
                    for r in runs
                    if r.tags.get("dagster/partition") == partition and r.status == dg.DagsterRunStatus.SUCCESS
                }
                assert succeeded <= {r.run_id for r in records}, (partition, succeeded)
                assert all(store.exists(t["path"]) for t in manifest["tiles"])
                compared += len(records)

    record(
        "database-restarted",
        "PostgreSQL restarted under a running deployment",
        "tests/faults/test_database_restarted.py",
        MEASURES,
        injected=(
            f"the deployment's PostgreSQL (deploy/compose/dagster.yaml's storage) stopped with a fast shutdown, every "
            f"session cut, and started {down:.1f} s later, while {len(writing)} `geo-assets launch` run(s) of "
            f"imagery_tiles wrote tiles and {len(queued)} waited in the queue."
        ),
        observed={
            "runs in flight at the restart": ", ".join(f"{statuses[d].value.lower()}" for d in writing),
            "runs queued at the restart": f"{len(queued)}, each ran after it and succeeded",
            "retries by run retries": len(retried),
            "partitions launched again by hand": len(relaunched),
            "services": "code server, webserver and daemon all outlived the restart",
            "materialisations compared with the stored manifests": f"{compared}, all equal; every successful run recorded its own",
            "time from the database back to every run ended": f"{settled:.1f} s",
        },
    )
