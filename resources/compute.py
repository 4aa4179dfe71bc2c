"""The compute interface for tile work inside a step (`TileCompute`), and its local implementation.

Two methods, for two kinds of work:

- `map(fn, items)`: in this process, over a thread pool, results in order. For reads whose results
  are arrays (training chips) and as the mapper that a batch of tile work hands its tiles to. GDAL
  and numpy release the GIL, so threads keep the cores busy without pickling rasters.
- `map_tiles(context, work, items, label=..., ledger=...)`: tile work that reads and writes the
  store and returns small manifest entries, in batches (the tile engine, `geo_assets.engine`).
  `LocalPoolCompute` runs the batches one after another in this process, each parallel inside over
  the pool; `DaskCompute` (resources/dask_compute.py) sends them to a cluster. Either way batches are
  sized from a measurement, the work's log records and per-batch progress reach the step's Dagster
  log, a failure fails the step with the tile's key and its traceback, and a re-execution of the run
  skips the tiles already done for the same input (`engine.ledger`).

Assets annotate `TileCompute` and never change with the profile: the profile picks the implementation.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import TypeVar, cast

import dagster as dg
from pydantic import Field

from geo_assets.engine.batches import run_batch
from geo_assets.engine.jobs import BatchSizer, TileJob
from geo_assets.engine.ledger import TileLedger
from geo_assets.engine.threads import map_on
from geo_assets.settings import by_name

PROGRESS_SECONDS = 5.0  # long work reports progress this often; short work once, at the end
MAX_TILES_PER_BATCH = int(cast(float, by_name("GEO_ASSETS_TILES_PER_BATCH").high))  # a bounded setting: its high is set

T = TypeVar("T")
R = TypeVar("R")


class TileCompute(dg.ConfigurableResource):
    """The compute interface of tile work (the module's docstring): `map` on this process's pool,
    `map_tiles` in batches, which an implementation runs in `_execute`."""

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
        # The process's pool, not one per call: its threads keep GDAL's per-thread state (engine.threads).
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
        """Run `job`'s batches to the end, passing each outcome to `job.accept`."""
        raise NotImplementedError(f"{type(self).__name__} runs no tile batches")


class LocalPoolCompute(TileCompute):
    """Tile work over a local thread pool (the default on every profile)."""

    def _execute(self, job: TileJob) -> None:
        """Batches one after another in this process, each mapped over the pool."""
        sizer = self._sizer(job, slots=1, overhead=0.0)
        while job.remaining:
            outcome = run_batch(*job.take(sizer.size(job.remaining)), mapper=self.map)
            job.accept(outcome)
            sizer.observe(outcome)
            if job.batches == 1 and job.remaining:
                job.planned(sizer)
