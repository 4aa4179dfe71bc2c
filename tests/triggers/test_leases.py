"""One writer per partition, through real runs: a range backfill run by the daemon and a
`dagster asset materialize` run (which bypasses the run queue) on the same partition never write it at
once; a step dies with its run worker; a step whose run was marked failed while it was stopped cannot
publish.

A writer is held mid-write by stopping its processes (SIGSTOP) once its first tile is in the store:
a long pause, as a preempted or swapped-out machine gives, at a point the test knows. What the tests
judge needs no knowledge of the lease: each run writes a different tile size, so the tile files tell
when each run wrote, and the materialisation events when each published.
"""

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import dagster as dg
import psutil
import pytest
from paused_runs import (  # tests/triggers is on sys.path
    kill as _kill,
)
from paused_runs import (
    materialize,
    pause_when,
    published,
    resume,
    step_failures,
)
from paused_runs import (
    run_of as _run_of,
)
from paused_runs import (
    wait_for as _wait_for,
)

from devtools.dagster_dev import BIN, ROOT
from geo_assets.assets.common import digest
from geo_assets.geo import acquisitions
from geo_assets.geo.sources import DEFAULT_BANDS


def imagery_key(region: str, date: str, tile_size: int) -> str:
    """The manifest of the synthetic source's default-band variant at this tile size."""
    return acquisitions.imagery_key(region, date, acquisitions.variant("synthetic", tile_size, list(DEFAULT_BANDS)))


@pytest.fixture
def instance(world, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", world.env["DAGSTER_HOME"])  # dagster.yaml reads it
    with dg.DagsterInstance.from_config(world.env["DAGSTER_HOME"]) as served:
        yield served


def _materialize(world, partition: str, tile_size: int, log: Path) -> subprocess.Popen:
    """`dagster asset materialize` of imagery_tiles[partition] at `tile_size` px, in a process of its own."""
    return materialize(world, "imagery_tiles", partition, {"imagery_tiles": {"config": {"tile_size": tile_size}}}, log)


def _tiles(world, region: str, date: str, tile_size: int) -> list[str]:
    return [
        k
        for k in world.store.list(f"imagery/{region}/{date}")
        if f"-{tile_size}px-" in k and k.endswith(".tif") and not k.endswith(".cloud.tif")
    ]


def _pause_mid_write(
    world, proc: subprocess.Popen, region: str, date: str, tile_size: int, log: Path
) -> list[psutil.Process]:
    """Stop the run's processes (the run worker and its step processes) once its first tile is stored."""
    return pause_when(world, proc, lambda: bool(_tiles(world, region, date, tile_size)), "writing a tile", log)


def _published(instance, partition: str) -> dict[str, float]:
    """Run id -> when it published imagery_tiles[partition]."""
    return published(instance, "imagery_tiles", partition)


def _first_write(world, region: str, date: str, tile_size: int) -> float:
    return min(os.stat(world.store.path(k)).st_ctime for k in _tiles(world, region, date, tile_size))


def test_a_range_backfill_never_writes_a_partition_while_a_materialize_run_does(world, server, instance, tmp_path):
    region, dates = "tiny-field", ["2024-09-11", "2024-09-12", "2024-09-13"]
    partition = f"{dates[1]}|{region}"
    before = {r.run_id for r in instance.get_runs()}
    a_log, b_log = tmp_path / "materialize.log", tmp_path / "backfill.log"
    a = _materialize(world, partition, 16, a_log)  # 64 tiles: the writer is paused among them
    paused = _pause_mid_write(world, a, region, dates[1], 16, a_log)
    b = None
    try:
        a_run = _run_of(instance, partition, before)
        assert a_run.run_id not in _published(instance, partition), "the writer published before it could be paused"

        # The range run of the daemon: no dagster/partition tag, so the run queue does not hold it back.
        with open(b_log, "w") as out:
            b = subprocess.Popen(
                [
                    BIN / "geo-assets",
                    "backfill",
                    "--region",
                    region,
                    "--from",
                    dates[0],
                    "--to",
                    dates[-1],
                    "--wait",
                    "--url",
                    server,
                ],
                cwd=ROOT,
                env=world.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        backfill = _wait_for(
            "the backfill's id", lambda: re.search(r"launched backfill (\S+) of 3", b_log.read_text()), 120
        )

        def b_runs():
            return instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill.group(1)}))

        def b_is_done_or_waits():  # done: it wrote meanwhile; or it waits for the partition, naming run A
            if b.poll() is not None:
                return True
            return any(
                f"run {a_run.run_id} is writing this partition" in (e.message or "")
                for run in b_runs()
                for e in instance.all_logs(run.run_id)
            )

        _wait_for("the backfill's run to end or to wait for the partition", b_is_done_or_waits, 600, poll=1)
    finally:
        resume(paused)
    try:
        assert a.wait(timeout=300) == 0, a_log.read_text()[-3000:]
        assert b.wait(timeout=600) == 0, b_log.read_text()[-3000:]
    finally:
        _kill([psutil.Process(p.pid) for p in (a, b) if p is not None and p.poll() is None])
    assert b_log.read_text().strip().endswith("COMPLETED_SUCCESS")
    (b_run,) = b_runs()

    # Each run's writing of the partition: from its first tile stored to its manifest published.
    published = _published(instance, partition)
    a_writes = (_first_write(world, region, dates[1], 16), published[a_run.run_id])
    b_writes = (_first_write(world, region, dates[1], 256), published[b_run.run_id])
    assert a_writes[1] <= b_writes[0], (
        f"two writers at once: run {a_run.run_id} wrote {partition} over {a_writes}, "
        f"range run {b_run.run_id} over {b_writes}"
    )

    # The output is whole: the manifest is the last publisher's, and every tile it lists is stored.
    manifest = world.store.read_json(imagery_key(region, dates[1], 256))
    assert manifest["tile_size"] == 256 and all(world.store.exists(t["path"]) for t in manifest["tiles"])
    events = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("imagery_tiles"), asset_partitions=[partition]), limit=1
    ).records
    assert events[0].run_id == b_run.run_id
    assert events[0].asset_materialization.metadata["manifest_digest"].value == digest(manifest)
    # Every step released the leases it took when it published (imagery, predictions and reports).
    held = [k for k in world.store.list("leases") if f"region={region}/date=2024-09-1" in k]
    assert not held, held


def test_a_step_process_dies_with_its_run_worker(world, instance, tmp_path):
    """A run worker killed (SIGKILL) mid-step takes its step processes with it at once: none goes on
    writing beside the run's retry (resources/step_process.py)."""
    region, date = "tiny-holdout", "2024-09-26"  # a partition of its own: test_lost_worker.py has 09-23
    log = tmp_path / "killed.log"
    a = _materialize(world, f"{date}|{region}", 16, log)
    paused = _pause_mid_write(world, a, region, date, 16, log)
    try:
        steps = [p for p in paused[1:] if "spawn_main" in " ".join(p.cmdline())]  # multiprocessing's step processes
        assert steps, f"no step process under the run worker: {[p.cmdline() for p in paused]}"
        os.kill(a.pid, signal.SIGKILL)
        a.wait(timeout=60)
        gone, alive = psutil.wait_procs(steps, timeout=10)
        assert not alive, f"step processes outlived their run worker: {[p.pid for p in alive]}"
    finally:
        _kill(paused)
    written = len(_tiles(world, region, date, 16))
    assert 0 < written < 64, f"{written} of 64 tiles: the step was not stopped mid-write"


def test_an_orphaned_step_whose_run_was_marked_failed_cannot_publish(world, instance, tmp_path):
    """The fence behind the tie above, for a worker run monitoring cannot see (a frozen or partitioned
    machine, a step on another host): the run is marked failed while its worker and step are stopped,
    another run publishes the partition, and then the stopped step goes on."""
    region, date = "tiny-holdout", "2024-09-22"
    partition = f"{date}|{region}"
    before = {r.run_id for r in instance.get_runs()}
    a_log = tmp_path / "orphan.log"
    a = _materialize(world, partition, 16, a_log)
    paused = _pause_mid_write(world, a, region, date, 16, a_log)
    try:
        a_run = _run_of(instance, partition, before)
        assert a_run.run_id not in _published(instance, partition), "the writer published before it could be paused"
        # The run worker is frozen with its step; the instance marks the run failed (as run monitoring
        # does when it loses a worker).
        orphans = [p for p in paused[1:] if p.is_running()]
        assert orphans, "no step process under the run worker"
        instance.report_run_failed(instance.get_run_by_id(a_run.run_id), "the run worker was lost")

        # Another run of the partition writes and publishes it.
        proc = subprocess.run(
            [
                BIN / "dagster",
                "asset",
                "materialize",
                "-m",
                "geo_assets.definitions",
                "--select",
                "imagery_tiles",
                "--partition",
                partition,
                "--config-json",
                json.dumps({"ops": {"imagery_tiles": {"config": {"tile_size": 32}}}}),
            ],
            cwd=ROOT,
            env=world.env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        b_run = _run_of(instance, partition, before | {a_run.run_id})
        published = world.store.read_json(imagery_key(region, date, 32))
        assert published["tile_size"] == 32

        # The orphan and its worker go on to the end of the step.
        resume(paused)
        gone, alive = psutil.wait_procs(paused, timeout=300)
        assert not alive, f"the orphaned step still runs: {alive}"
    finally:
        _kill(paused)

    # It wrote its tiles, but the published output is still the other run's, whole.
    assert len(_tiles(world, region, date, 16)) == 64
    manifest = world.store.read_json(imagery_key(region, date, 32))
    assert manifest == published, f"the orphaned step of run {a_run.run_id} published over run {b_run.run_id}"
    assert not world.store.exists(imagery_key(region, date, 16)), (
        f"the orphaned step of run {a_run.run_id} published its variant"
    )
    assert all(world.store.exists(t["path"]) for t in manifest["tiles"])
    assert a_run.run_id not in _published(instance, partition)
    assert instance.get_run_by_id(a_run.run_id).status == dg.DagsterRunStatus.FAILURE
    (failure,) = step_failures(instance, a_run.run_id)
    assert f"run is {dg.DagsterRunStatus.FAILURE.value}, so it publishes nothing" in failure, failure


def test_a_run_that_waited_its_limit_fails_naming_the_writer(world, instance, tmp_path):
    region, date = "tiny-field", "2024-09-25"
    partition = f"{date}|{region}"
    before = {r.run_id for r in instance.get_runs()}
    a_log = tmp_path / "writer.log"
    a = _materialize(world, partition, 16, a_log)
    paused = _pause_mid_write(world, a, region, date, 16, a_log)
    try:
        a_run = _run_of(instance, partition, before)
        config = json.dumps({"ops": {"imagery_tiles": {"config": {"tile_size": 32}}}})
        second = subprocess.run(
            [
                BIN / "dagster",
                "asset",
                "materialize",
                "-m",
                "geo_assets.definitions",
                "--select",
                "imagery_tiles",
                "--partition",
                partition,
                "--config-json",
                config,
            ],
            cwd=ROOT,
            env={**world.env, "GEO_ASSETS_LEASE_WAIT_S": "3"},
            capture_output=True,
            text=True,
            timeout=600,
        )
        for p in paused:
            p.resume()
        assert a.wait(timeout=300) == 0, a_log.read_text()[-3000:]
    finally:
        _kill(paused)
    assert second.returncode != 0, "the second run wrote the partition while the first was writing it"
    assert f"run {a_run.run_id} is writing this partition" in second.stdout + second.stderr
    assert not _tiles(world, region, date, 32)  # it wrote nothing
    manifest = world.store.read_json(imagery_key(region, date, 16))
    assert manifest["tile_size"] == 16 and all(world.store.exists(t["path"]) for t in manifest["tiles"])
