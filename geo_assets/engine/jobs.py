"""The plan of one step's tile work, whatever runs its batches: which tiles are left, how many go in
a batch, and what comes back (results in order, the work's log records, progress, the first failure).

`BatchSizer` sizes batches from measurements; `TileJob` is the bookkeeping every compute backend
shares (resources/compute.py runs its batches over a local pool, resources/dask_compute.py on a
cluster).
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from geo_assets.engine.batches import BatchOutcome, Mapper, fingerprint, item_key
from geo_assets.engine.ledger import TileLedger

__all__ = ["BATCH_SECONDS", "BatchSizer", "TileJob", "TileWorkError"]

# Batch sizing (BatchSizer): batches as large as balance and progress allow, never so small that
# their fixed cost matters.
OVERHEAD_SHARE = 0.05  # a batch's fixed cost (round trip, completion record) at most 5% of its work
BATCH_SECONDS = 10.0  # at most ~10 s of work per batch: progress in the log, little to redo after a failure
WAVES = 4  # at least 4 batches per worker thread, so that workers finish together


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
