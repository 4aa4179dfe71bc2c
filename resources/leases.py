"""Partition leases in a run: taken by a step before it writes (`writing`: every asset that writes
partitions, region x date, region and model), checked and released by the IO manager when it publishes
the manifest (resources/storage.py). A step that publishes a record of its own before its manifest (a
model version's model.json, an evaluation) checks its lease first (`check_held`).

A lease's holder is active while the Dagster instance says its run has not finished: a run that
failed, was canceled, succeeded or is unknown to the instance holds nothing, whatever its processes
still do. The leases this process took are kept here, by storage root and lease key, so that the
publish in the same step checks the very token it took. A step that takes a lease first ties its process
to its run worker's life (resources/step_process.py), so an orphan rarely gets as far as the check.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import dagster as dg

from geo_assets.geo import leases
from geo_assets.geo.store import Store
from geo_assets.limits import lease_wait_s
from resources.step_process import die_with_run_worker, recorded_worker

_held: dict[tuple[str, str], leases.Lease] = {}
_lock = threading.Lock()


def run_is_active(instance: dg.DagsterInstance):
    def active(run_id: str) -> bool:
        run = instance.get_run_by_id(run_id)
        return run is not None and not run.is_finished

    return active


def take_all(context: dg.AssetExecutionContext, store: Store, partitions: Iterable[str]) -> list[leases.Lease]:
    """Take this step's lease of each partition (`region=x/date=y`), in key order so that two ranges
    never wait on each other crosswise. On failure, the leases taken so far are released."""
    asset = "/".join(context.asset_key.path)
    # Before anything is written. The run's tags as stored: the worker recorded itself after the run began.
    run = context.instance.get_run_by_id(context.run.run_id)
    die_with_run_worker(recorded_worker(run.tags, run.run_id) if run is not None else None)
    active, wait = run_is_active(context.instance), lease_wait_s()
    taken: list[leases.Lease] = []
    try:
        for partition in sorted(set(partitions)):
            lease = leases.take(
                store, leases.lease_key(asset, partition), context.run.run_id, active, wait, context.log.info
            )
            taken.append(lease)
            with _lock:
                _held[(store.root, lease.key)] = lease
    except BaseException:
        release_all(store, taken)
        raise
    return taken


@contextmanager
def writing(context: dg.AssetExecutionContext, store: Store, partitions: Iterable[str]) -> Iterator[list[leases.Lease]]:
    """Hold this step's leases of `partitions` while it writes them: the IO manager checks and releases
    each one when it publishes its manifest; a failed step releases them here."""
    taken = take_all(context, store, partitions)
    try:
        yield taken
    except BaseException:
        release_all(store, taken)
        raise


def check_held(context: dg.AssetExecutionContext, store: Store, partition: str) -> None:
    """Refuse unless this step still holds its lease of `partition` and its run is active: right before
    it writes a record that others read as published."""
    asset = "/".join(context.asset_key.path)
    lease = held(store, asset, partition)
    if lease is None:
        raise leases.LeaseLostError(
            f"{asset}[{partition}]: this step holds no lease of the partition, so it publishes nothing"
        )
    check_publish(store, lease, context.instance)


def check_publish(store: Store, lease: leases.Lease, instance: dg.DagsterInstance) -> None:
    """Refuse to publish unless this writer's run is still active and its lease still the partition's."""
    if not run_is_active(instance)(lease.run):
        run = instance.get_run_by_id(lease.run)
        status = run.status.value if run is not None else "unknown to the instance"
        raise leases.LeaseLostError(
            f"{lease.describe()}: this writer's run is {status}, so it publishes nothing (an orphaned step)"
        )
    leases.check(store, lease)


def release_all(store: Store, taken: Iterable[leases.Lease]) -> None:
    for lease in taken:
        with _lock:
            if _held.get((store.root, lease.key)) == lease:
                del _held[(store.root, lease.key)]
        leases.release(store, lease)


def held(store: Store, asset: str, partition: str) -> leases.Lease | None:
    """The lease this process holds on the partition, if it took one."""
    with _lock:
        return _held.get((store.root, leases.lease_key(asset, partition)))
