"""One writer per partition: a lease object in the store, whatever launched the writer.

`leases/<asset>/<partition>.json` names the run that holds the partition and a token unique to this
taking of it. It is created only where absent (a local folder lock, S3 `If-None-Match: *`, GCS
`ifGenerationMatch=0`), so of two writers racing for a free partition one wins. A lease whose holder
is no longer active (its run finished, failed, was canceled or is unknown: `is_active` says) is taken
over by a conditional replace of the version read (local folder lock, S3 `If-Match`, GCS
`ifGenerationMatch`), so of two writers taking over the same stale lease one wins too.

Publishing is fenced: `check` reads the lease just before the output becomes visible and refuses when
it no longer holds this run's token. A writer that outlived its run (an orphaned step process) finds
its lease taken over as soon as another writer wanted the partition, and cannot publish.

The store is the only shared state: the lease works for runs in any process or machine that share the
storage root and ask the same Dagster instance about runs. Pure: no Dagster here.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from geo_assets.geo.store import Store, validate_key

__all__ = [
    "LOG_EVERY_S",
    "Lease",
    "LeaseLostError",
    "PartitionBusyError",
    "check",
    "holds",
    "lease_key",
    "release",
    "take",
]

LOG_EVERY_S = 10.0  # a waiting writer reports progress this often


class PartitionBusyError(RuntimeError):
    """Another active run held the partition for longer than the writer may wait."""


class LeaseLostError(RuntimeError):
    """This writer's lease was taken over: its output must not be published."""


def lease_key(asset: str, partition: str) -> str:
    return validate_key(f"leases/{asset}/{partition}.json")


@dataclass(frozen=True)
class Lease:
    key: str
    run: str
    token: str  # unique to one taking: a later taking by the same run is another lease

    def describe(self) -> str:
        return f"{self.key} (run {self.run}, token {self.token})"


def _holder(data: bytes, key: str) -> dict:
    try:
        holder = json.loads(data)
        if isinstance(holder, dict) and isinstance(holder.get("run"), str) and isinstance(holder.get("token"), str):
            return holder
    except ValueError:
        pass
    # Never taken over silently: something other than a lease writer wrote there.
    raise ValueError(f"{key} is not a lease (expected JSON with 'run' and 'token'): remove it if no run is writing")


def take(
    store: Store,
    key: str,
    run: str,
    is_active: Callable[[str], bool],
    wait_s: float,
    log: Callable[[str], None] = lambda message: None,
    poll_s: float = 1.0,
) -> Lease:
    """Take the lease at `key` for `run`: at once where it is free or its holder is not active, else
    after waiting (at most `wait_s`, logging progress) for the holder to release it or to end."""
    lease = Lease(key, run, uuid.uuid4().hex)
    body = json.dumps({"run": run, "token": lease.token, "taken": datetime.now(UTC).isoformat()}).encode()
    start = time.monotonic()
    logged = start - LOG_EVERY_S  # the first wait is reported at once
    while True:
        if store.create(key, body):
            return lease
        found = store.read_versioned(key)
        if found is None:  # released meanwhile
            continue
        data, version = found
        holder = _holder(data, key)
        # The same run again (a retried step of it) or a holder that ended: this writer supersedes it.
        if holder["run"] == run or not is_active(holder["run"]):
            if store.replace(key, body, version):
                log(f"took over the lease {key} from run {holder['run']}, which is no longer writing")
                return lease
            continue  # another writer changed it first: look again
        waited = time.monotonic() - start
        if waited >= wait_s:
            raise PartitionBusyError(
                f"{key}: run {holder['run']} is writing this partition (lease taken {holder.get('taken', '?')}); "
                f"waited {waited:.0f} s, the most allowed (GEO_ASSETS_LEASE_WAIT_S): launch again once that run has ended"
            )
        if time.monotonic() - logged >= LOG_EVERY_S:
            logged = time.monotonic()
            log(
                f"waiting for {key}: run {holder['run']} is writing this partition ({waited:.0f} s of at most {wait_s:.0f} s)"
            )
        time.sleep(min(poll_s, max(0.0, wait_s - waited)))


def holds(store: Store, lease: Lease) -> bool:
    found = store.read_versioned(lease.key)
    if found is None:
        return False
    holder = _holder(found[0], lease.key)
    return (holder["run"], holder["token"]) == (lease.run, lease.token)


def check(store: Store, lease: Lease) -> None:
    """Raise unless `lease` is still the partition's: call it right before publishing."""
    found = store.read_versioned(lease.key)
    if found is None:
        raise LeaseLostError(
            f"{lease.describe()} is gone: this writer no longer holds the partition, so it publishes nothing"
        )
    holder = _holder(found[0], lease.key)
    if (holder["run"], holder["token"]) != (lease.run, lease.token):
        raise LeaseLostError(
            f"{lease.describe()} was taken over by run {holder['run']}: this writer's run had ended, "
            "so it publishes nothing"
        )


def release(store: Store, lease: Lease) -> None:
    """Remove the lease if it is still this writer's (a lease taken over is left to its new holder)."""
    if holds(store, lease):
        store.delete(lease.key)
