"""Runs held mid-write for the one-writer tests: `dagster asset materialize` in a process of its own,
its processes (the run worker and its step processes) stopped with SIGSTOP at a point the test knows,
as a preempted or swapped-out machine would stop them."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import psutil

from devtools.dagster_dev import BIN, ROOT


def materialize(world, asset: str, partition: str, ops: dict, log: Path, env: dict | None = None) -> subprocess.Popen:
    """`dagster asset materialize` of asset[partition] with `ops` as run config, in a process of its own."""
    with open(log, "w") as out:
        return subprocess.Popen(
            [
                BIN / "dagster",
                "asset",
                "materialize",
                "-m",
                "geo_assets.definitions",
                "--select",
                asset,
                "--partition",
                partition,
                "--config-json",
                json.dumps({"ops": ops}),
            ],
            cwd=ROOT,
            env={**world.env, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for(what: str, done: Callable, timeout: float, poll: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = done()
        if found:
            return found
        time.sleep(poll)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")


def pause_when(world, proc: subprocess.Popen, ready: Callable[[], bool], what: str, log: Path) -> list[psutil.Process]:
    """Stop the run's processes as soon as `ready()` (polled every 5 ms) says they reached `what`."""
    deadline = time.monotonic() + 300
    while not ready():
        assert proc.poll() is None, f"the run ended before {what}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"not {what} within 300 s:\n{log.read_text()[-3000:]}"
        time.sleep(0.005)
    worker = psutil.Process(proc.pid)
    processes = [worker, *worker.children(recursive=True)]
    # SQLite instance: a process stopped inside a write transaction would hold the instance's database
    # for everyone. Stop again, a moment later, until the stopped processes hold no write lock.
    databases = sorted(Path(world.env["DAGSTER_HOME"], "history").rglob("*.db"))
    for _ in range(200):
        for p in processes:
            p.suspend()
        if not any(_locked(db) for db in databases):
            return processes
        for p in processes:
            p.resume()
        time.sleep(0.01)
    raise AssertionError("the run's processes held the instance's database at every pause")


def _locked(db: Path) -> bool:
    connection = sqlite3.connect(db, timeout=0.05, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        connection.close()


def run_of(instance, partition: str, exclude: set[str]) -> dg.DagsterRun:
    runs = [
        r
        for r in instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": partition}))
        if r.run_id not in exclude
    ]
    assert len(runs) == 1, [r.run_id for r in runs]
    return runs[0]


def published(instance, asset: str, partition: str) -> dict[str, float]:
    """Run id -> when it published asset[partition]."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=100
    ).records
    return {r.run_id: r.timestamp for r in records}


def step_failures(instance, run_id: str) -> list[str]:
    return [
        e.dagster_event.step_failure_data.error.to_string()
        for e in instance.all_logs(run_id)
        if e.dagster_event is not None and e.dagster_event.is_step_failure
    ]


def resume(processes: list[psutil.Process]) -> None:
    for p in processes:
        try:
            p.resume()
        except psutil.NoSuchProcess:
            pass


def kill(processes: list[psutil.Process]) -> None:
    for p in processes:
        try:
            p.resume()
            p.kill()
        except psutil.NoSuchProcess:
            pass
