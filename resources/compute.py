"""The compute interface for tile work inside a step, and its local implementation.

Two methods, for two kinds of work:

- `map(fn, items)`: in this process, over a thread pool, results in order. For reads whose results
  are arrays (training chips) and as the mapper that a batch of tile work hands its tiles to. GDAL
  and numpy release the GIL, so threads keep the cores busy without pickling rasters.
- `map_tiles(context, work, items, label=..., ledger=...)`: tile work that reads and writes the
  store and returns small manifest entries, in batches (`geo_assets.geo.tilework`). Here the batches
  run one after another in this process, each parallel inside over the pool; `DaskCompute`
  (resources/dask_compute.py) sends them to a cluster. Either way batches are sized from a
  measurement, the work's log records and per-batch progress reach the step's Dagster log, a failure
  fails the step with the tile's key and its traceback, and a re-execution of the run skips the tiles
  already done for the same input (`TileLedger`).

Assets name one resource type and never change with the profile: the profile picks the instance.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, cast

import dagster as dg
from pydantic import Field

from geo_assets.geo.threads import map_on
from geo_assets.geo.tilework import BatchOutcome, Mapper, TileLedger, fingerprint, item_key, run_batch
from geo_assets.settings import by_name

PROGRESS_SECONDS = 5.0  # long work reports progress this often; short work once, at the end
MAX_TILES_PER_BATCH = int(cast(float, by_name("GEO_ASSETS_TILES_PER_BATCH").high))  # a bounded setting: its high is set

# Batch sizing (BatchSizer): batches as large as balance and progress allow, never so small that
# their fixed cost matters.
OVERHEAD_SHARE = 0.05  # a batch's fixed cost (round trip, completion record) at most 5% of its work
BATCH_SECONDS = 10.0  # at most ~10 s of work per batch: progress in the log, little to redo after a failure
WAVES = 4  # at least 4 batches per worker thread, so that workers finish together

T = TypeVar("T")
R = TypeVar("R")


class TileWorkError(RuntimeError):
    """Tile work failed: the message names the tile (or batch), where it ran, and the traceback there."""


@dataclass
class BatchSizer:
    """Tiles per batch from measurements: the fixed cost of a batch (an empty task's round trip plus
    what the batch itself spends besides its tiles) and the cost of a tile (the work's own time per
    tile, reported by the batches).

    Batches are as large as progress and balance allow (at most BATCH_SECONDS of work, at least WAVES
    batches per slot over what remains, so they shrink towards the end), and never so small that their
    fixed cost passes OVERHEAD_SHARE of their work. Before any batch has reported: a probe of the work's
    own minimum (a forward pass's batch), smaller when there are few tiles per slot.
    """

    slots: int  # batches that run at once (worker threads; 1 when batches run one after another)
    overhead: float  # seconds: an empty task's round trip
    min_items: int = 1
    fixed_size: int = 0  # tiles per batch set by the user (0: measured)
    costs: list[float] = field(default_factory=list)
    fixed: list[float] = field(default_factory=list)

    def observe(self, outcome: BatchOutcome) -> None:
        if outcome.results:
            self.costs.append(outcome.seconds / len(outcome.results))
            self.fixed.append(outcome.fixed)

    @property
    def cost(self) -> float | None:
        return max(statistics.median(self.costs), 1e-6) if self.costs else None

    @property
    def per_batch(self) -> float:
        return self.overhead + (statistics.median(self.fixed) if self.fixed else 0.0)

    def size(self, remaining: int) -> int:
        balanced = math.ceil(remaining / (WAVES * self.slots)) if self.slots > 1 else remaining
        cost = self.cost
        if self.fixed_size:
            size = self.fixed_size
        elif cost is None:
            size = max(1, min(self.min_items, balanced))
        else:
            amortised = math.ceil(self.per_batch / (OVERHEAD_SHARE * cost))
            size = max(amortised, min(balanced, max(1, int(BATCH_SECONDS / cost))))
        return min(size, remaining)

    def describe(self) -> str:
        cost = self.cost
        return (
            f"{cost * 1000:.1f} ms per tile, {self.per_batch * 1000:.1f} ms per batch, {self.slots} at once"
            if cost is not None
            else f"{self.per_batch * 1000:.1f} ms per batch, {self.slots} at once"
        )


class TileJob:
    """The bookkeeping of one `map_tiles` call that every backend shares: which tiles are left, batch
    arguments, results in order, logs and progress forwarded to the step's log, failures raised."""

    def __init__(self, label: str, work, items: Sequence, ledger: TileLedger | None, log: logging.Logger):
        self.label, self.work, self.items, self.ledger, self.log = label, work, items, ledger, log
        self.keys = [item_key(i) or str(n) for n, i in enumerate(items)]
        self.digests = [fingerprint(i) for i in items]
        self.position = {k: n for n, k in enumerate(self.keys)}
        self.results: list = [None] * len(items)
        done = ledger.completed() if ledger is not None else {}
        self.todo = [n for n, k in enumerate(self.keys) if done.get(k, (None,))[0] != self.digests[n]]
        for n in set(range(len(items))) - set(self.todo):
            self.results[n] = done[self.keys[n]][1]
        if len(self.todo) < len(items):
            log.info(
                f"{label}: {len(items) - len(self.todo)} of {len(items)} tiles already done by an earlier "
                f"attempt of this run (same input digests); computing the other {len(self.todo)}"
            )
        self.taken = 0
        self.batches = 0
        self.finished = 0
        self.started = 0.0  # when the first batch is handed out

    @property
    def remaining(self) -> int:
        return len(self.todo) - self.taken

    def take(
        self, size: int
    ) -> tuple[Callable[[Sequence, Mapper], list], list, list[str], list[str], TileLedger | None, int]:
        """The next batch's `run_batch` arguments (work, items, keys, digests, ledger, index)."""
        if not self.taken:
            self.started = time.perf_counter()
        positions = self.todo[self.taken : self.taken + size]
        self.taken += len(positions)
        self.batches += 1
        return (
            self.work,
            [self.items[p] for p in positions],
            [self.keys[p] for p in positions],
            [self.digests[p] for p in positions],
            self.ledger,
            self.batches,
        )

    def accept(self, outcome: BatchOutcome) -> None:
        for record in outcome.logs:
            self.log.log(record["level"], f"[{outcome.origin}] {record['message']}")
        if outcome.error is not None:
            raise TileWorkError(self.failure(outcome))
        assert outcome.results is not None  # a batch without an error holds its results
        for key, result in zip(outcome.keys, outcome.results):
            self.results[self.position[key]] = result
        self.finished += len(outcome.keys)
        elapsed = time.perf_counter() - self.started
        self.log.info(
            f"{self.label}: batch {outcome.index} done on {outcome.origin} ({len(outcome.keys)} tiles in "
            f"{outcome.seconds:.2f} s); {self.finished}/{len(self.todo)} tiles, {self.finished / max(elapsed, 1e-9):.1f}/s"
        )

    def planned(self, sizer: BatchSizer) -> None:
        self.log.info(f"{self.label}: measured {sizer.describe()}; tiles per batch: {sizer.size(self.remaining)}")

    def failure(self, outcome: BatchOutcome) -> str:
        error = outcome.error
        assert error is not None  # only a failed batch is described
        keys = outcome.keys
        which = (
            f"tile {error['key']}"
            if error["key"] is not None
            else f"batch {outcome.index} (tiles {keys[0]} to {keys[-1]}, {len(keys)} tiles)"
        )
        return (
            f"{self.label}: {which} failed on {outcome.origin}: {error['type']}: {error['message']}\n"
            f"Traceback on {outcome.origin}:\n{error['traceback']}"
        )


class LocalPoolCompute(dg.ConfigurableResource):
    """Fan tile work out over a local thread pool (the default on every profile)."""

    workers: int = Field(default=0, ge=0, le=1024)  # 0: one per CPU core
    tiles_per_batch: int = Field(default=0, ge=0, le=MAX_TILES_PER_BATCH)  # 0: sized from a measurement

    def map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        label: str = "tiles",
        log: Callable[[str], None] | None = None,
    ) -> list[R]:
        workers = self.workers or os.cpu_count() or 1
        total = len(items)
        results: list[R] = []
        start = time.perf_counter()
        last = start
        # The process's pool, not one per call: its threads keep GDAL's per-thread state (geo.threads).
        for i, result in enumerate(map_on("compute", workers, fn, items), start=1):
            results.append(result)
            now = time.perf_counter()
            if log and (now - last >= PROGRESS_SECONDS or i == total):
                last = now
                log(f"{label}: {i}/{total} done ({i / max(now - start, 1e-9):.1f}/s)")
        return results

    def map_tiles(
        self,
        context: dg.AssetExecutionContext,
        work: Callable[[Sequence, Callable], list],
        items: Sequence,
        *,
        label: str,
        ledger: TileLedger | None = None,
    ) -> list[dict]:
        """Run `work` over `items` in batches (see the module's docstring); the results, in order."""
        run = context.run
        ledger = ledger.for_run(run.root_run_id or run.run_id) if ledger is not None else None
        job = TileJob(label, work, items, ledger, context.log)
        if job.todo:
            self._execute(job)
        # The records stay until the IO manager has published the step's manifest (resources/storage.py):
        # a failure on the way there (the mosaic, the manifest write) re-executes without recomputing a tile.
        return job.results

    def _sizer(self, job: TileJob, slots: int, overhead: float) -> BatchSizer:
        return BatchSizer(slots, overhead, getattr(job.work, "min_items", 1), self.tiles_per_batch)

    def _execute(self, job: TileJob) -> None:
        """Batches one after another in this process, each mapped over the pool."""
        sizer = self._sizer(job, slots=1, overhead=0.0)
        while job.remaining:
            outcome = run_batch(*job.take(sizer.size(job.remaining)), mapper=self.map)
            job.accept(outcome)
            sizer.observe(outcome)
            if job.batches == 1 and job.remaining:
                job.planned(sizer)
