"""Load: 50 concurrent GraphQL launches and 20 concurrent range backfills against one deployment (code server,
webserver and daemon, the shape deploy/compose runs, runs as processes of the daemon), on the embedded
default's SQLite and on PostgreSQL. Nothing is lost or made twice: each launch returns a run of its own and
each backfill an id of its own; every run and backfill ends in success; each partition holds exactly one
materialisation per run that wrote it, the latest naming the manifest the store holds, whose tiles are stored;
two single-partition runs of one partition never ran at once (the queue's per-partition limit; a range run
holds no partition tag and waits on each partition's lease instead, as tests/triggers/test_leases.py's
test_a_range_backfill_never_writes_a_partition_while_a_materialize_run_does proves). The launch latency's
median and p95 go to RELIABILITY.md.

The requests are the CLI's (`launches.plan`, the tags of `geo-assets launch` and `backfill`), sent through
the same GraphQL client, from threads rather than 70 processes: 70 imports of the CLI on 2 cores would
measure the imports."""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from contextlib import nullcontext
from functools import partial

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus
from reliability import record

from devtools.postgres import postgres_server
from geo_assets.assets.common import digest
from geo_assets.cli.commands import register
from geo_assets.cli.graphql import DagsterClient
from geo_assets.cli.launches import date_range, plan
from geo_assets.geo.acquisitions import pick_imagery
from geo_assets.geo.regions import Region, load_catalogue, save_catalogue
from geo_assets.geo.store import Store
from tests.triggers.daemon_process import wait_for
from tests.ui.host_stack import host_stack

# 70 runs through the queue, on each database (each in RELIABILITY.md with its time), so behind the soak marker:
# `.venv/bin/python -m tests.faults.reliability tests/faults/test_load.py -m soak` (or pytest -m soak).
pytestmark = pytest.mark.soak

MEASURES = [
    "geo_assets/cli/graphql.py",
    "geo_assets/cli/launches.py",
    "geo_assets/run_launcher.py",
    "geo_assets/webserver",
    "resources/leases.py",
    "geo_assets/geo/leases.py",
    "dagster.yaml",
    "deploy/compose/dagster.yaml",
    "tests/faults/test_load.py",
]
# One 256 px tile a date: a run costs its fixed price, which is what a load of launches is made of.
REGION = Region("load-field", (400000.0, 5120000.0, 402560.0, 5122560.0), "EPSG:32631", "synthetic", "synthetic")
DATES = [f"2024-04-{day:02d}" for day in range(1, 11)]
LAUNCHES = 50  # 5 a date
BACKFILLS = 20  # 3 dates each, overlapping one another and the launches
RANGE = 3


def _ranges() -> list[tuple[str, str]]:
    starts = [DATES[i % (len(DATES) - RANGE + 1)] for i in range(BACKFILLS)]
    return [(s, DATES[DATES.index(s) + RANGE - 1]) for s in starts]


def _concurrently(calls: list) -> tuple[list, list[float]]:
    """Run each call in a thread of its own, released together; (results, seconds each took)."""
    results: list = [None] * len(calls)
    seconds = [0.0] * len(calls)
    go = threading.Barrier(len(calls))

    def one(i: int) -> None:
        go.wait()
        begin = time.monotonic()
        try:
            results[i] = calls[i]()
        except Exception as exc:  # reported with the others below
            results[i] = exc
        seconds[i] = time.monotonic() - begin

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, seconds


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


@pytest.mark.timeout(1500)
@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_concurrent_launches_and_backfills_lose_nothing_and_make_nothing_twice(database, tmp_path, monkeypatch):
    with postgres_server() if database == "postgres" else nullcontext() as pg, host_stack(tmp_path, pg) as stack:
        for name in ("DAGSTER_HOME", *(pg.env() if pg else {})):  # what the instance yaml reads, for this process
            monkeypatch.setenv(name, stack.env[name])
        store = Store(stack.env["GEO_ASSETS_STORAGE_ROOT"])
        catalogue = load_catalogue(store)
        catalogue.add(REGION)
        save_catalogue(store, catalogue)
        home = stack.env["DAGSTER_HOME"]
        with dg.DagsterInstance.from_config(home) as instance:
            register(instance, regions=[REGION.name])
        DagsterClient(stack.graphql).ready()

        def launch(date: str):
            request = plan(store, REGION.name, [date], min_miou=0.0, assets=("imagery_tiles",))
            tags = {**request.tags, "geo-assets/trigger": "cli-launch"}
            client = DagsterClient(stack.graphql)
            return client.launch_run(list(request.assets), request.partitions[0], request.run_config, tags)

        def backfill(start: str, end: str):
            request = plan(store, REGION.name, date_range(start, end, 100), min_miou=0.0, assets=("imagery_tiles",))
            tags = {**request.tags, "geo-assets/dates": f"{start}...{end}", "geo-assets/trigger": "cli-backfill"}
            client = DagsterClient(stack.graphql)
            title = f"{REGION.name} {start} to {end}"
            return client.launch_backfill(
                list(request.assets), list(request.partitions), request.run_config, tags, title
            )

        began = time.monotonic()
        calls = [partial(launch, DATES[i % len(DATES)]) for i in range(LAUNCHES)]
        calls += [partial(backfill, *r) for r in _ranges()]
        results, seconds = _concurrently(calls)
        errors = [r for r in results if isinstance(r, Exception)]
        assert not errors, errors[:3]
        run_ids, backfill_ids = results[:LAUNCHES], results[LAUNCHES:]
        assert len(set(run_ids)) == LAUNCHES and len(set(backfill_ids)) == BACKFILLS  # none made twice

        with dg.DagsterInstance.from_config(home) as instance:

            def all_ended():
                backfills = [instance.get_backfill(b) for b in backfill_ids]
                if any(b.status == BulkActionStatus.REQUESTED for b in backfills):
                    return None
                runs = instance.get_runs()
                return (runs, backfills) if all(r.is_finished for r in runs) else None

            runs, backfills = wait_for(all_ended, 1200, "every run and backfill to end", every=2)
            ended = time.monotonic() - began
            for name, proc in stack.procs.items():
                assert proc.poll() is None, f"{name} exited: {stack.logs()}"

            by_id = {r.run_id: r for r in runs}
            assert set(run_ids) <= set(by_id), "a launched run is missing"  # none lost
            assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), Counter(r.status.value for r in runs)
            assert [b.status for b in backfills] == [BulkActionStatus.COMPLETED_SUCCESS] * BACKFILLS
            backfill_runs = [r for r in runs if r.tags.get("dagster/backfill") in backfill_ids]
            assert len(runs) == LAUNCHES + len(backfill_runs)  # nothing else ran, no run retried
            assert len(backfill_runs) == BACKFILLS  # a range is one run (BackfillPolicy.single_run)

            # Each partition: one materialisation per run that wrote it, the latest naming the stored manifest.
            records = instance.fetch_materializations(dg.AssetKey("imagery_tiles"), limit=10_000).records
            expected = Counter(f"{d}|{REGION.name}" for d in DATES for _ in range(LAUNCHES // len(DATES)))
            for start, end in _ranges():
                expected.update(f"{d}|{REGION.name}" for d in date_range(start, end, 100))
            assert Counter(r.partition_key for r in records) == expected
            for date in DATES:
                manifest = pick_imagery(store, REGION.name, date)[1]
                latest = max(
                    (r for r in records if r.partition_key == f"{date}|{REGION.name}"), key=lambda r: r.storage_id
                )
                assert latest.asset_materialization.metadata["manifest_digest"].value == digest(manifest), date
                assert manifest["tiles"] and all(store.exists(t["path"]) for t in manifest["tiles"])

            # The queue ran one run of a partition at a time.
            spans: dict[str, list[tuple[float, float]]] = {}
            for run_id in run_ids:
                rec = instance.get_run_record_by_id(run_id)
                spans.setdefault(rec.dagster_run.tags["dagster/partition"], []).append((rec.start_time, rec.end_time))
            overlaps = sum(1 for s in spans.values() for a, b in zip(sorted(s), sorted(s)[1:]) if b[0] < a[1])
            assert overlaps == 0, spans

    launch_s, backfill_s = seconds[:LAUNCHES], seconds[LAUNCHES:]
    record(
        f"load-{database}",
        f"50 launches and 20 backfills at once, on {'PostgreSQL' if database == 'postgres' else 'SQLite (the embedded default)'}",
        "tests/faults/test_load.py",
        MEASURES,
        injected=(
            f"{LAUNCHES} `launchRun` and {BACKFILLS} `launchPartitionBackfill` GraphQL requests sent at once from "
            f"threads to the deployment's webserver (code server, webserver, daemon; "
            f"{'PostgreSQL' if database == 'postgres' else 'SQLite'} storage; the queue's limits of dagster.yaml: 2 runs, "
            f"1 a partition): imagery_tiles of one 256 px tile for {len(DATES)} dates, {LAUNCHES // len(DATES)} launches a date, and "
            f"ranges of {RANGE} dates overlapping them."
        ),
        observed={
            "launches answered": f"{LAUNCHES}, {LAUNCHES} distinct runs; {BACKFILLS} distinct backfills",
            "launch latency": f"median {statistics.median(launch_s):.2f} s, p95 {_p95(launch_s):.2f} s",
            "backfill launch latency": f"median {statistics.median(backfill_s):.2f} s, p95 {_p95(backfill_s):.2f} s",
            "runs": f"{len(runs)}, all succeeded, none retried; every backfill completed",
            "materialisations": f"{len(records)}, one per run and partition written; each partition's latest names its stored manifest",
            "two of the 50 single-partition runs of one partition at once": "never (0 overlaps); the ranges wait on leases",
            "time from the first request to every run ended": f"{ended:.0f} s",
        },
    )
