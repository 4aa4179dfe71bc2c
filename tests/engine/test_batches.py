"""Batch sizes from measurements, and completion records (pure: no cluster)."""

import logging

from geo_assets.engine.batches import BatchOutcome, fingerprint
from geo_assets.engine.jobs import BATCH_SECONDS, BatchSizer, TileJob
from geo_assets.engine.ledger import TileLedger
from geo_assets.geo.store import Store, local_root


def observed(sizer: BatchSizer, seconds_per_tile: float, fixed: float = 0.0) -> BatchSizer:
    sizer.observe(BatchOutcome(1, ["a", "b"], "here", results=[{}, {}], seconds=2 * seconds_per_tile, fixed=fixed))
    return sizer


def plan(sizer: BatchSizer, total: int) -> list[int]:
    sizes, remaining = [], total
    while remaining:
        sizes.append(sizer.size(remaining))
        remaining -= sizes[-1]
    return sizes


def test_a_probe_first_then_sizes_from_the_measured_costs():
    sizer = BatchSizer(slots=2, overhead=0.005, min_items=16)
    assert sizer.size(1000) == 16  # nothing measured yet: a probe of the work's minimum
    assert sizer.size(40) == 5  # ... unless that leaves fewer than 4 batches per worker
    observed(sizer, 0.05)
    # 4 batches per worker thread at least (1000 / 8), then smaller ones towards the end
    sizes = plan(sizer, 1000)
    assert sizes[0] == 125 and sizes == sorted(sizes, reverse=True) and sum(sizes) == 1000
    # never so small that 5 ms per batch passes 5 % of a batch's 50 ms tiles
    assert min(sizes[:-1]) == 2


def test_batches_hold_at_most_a_few_seconds_of_work():
    sizer = observed(BatchSizer(slots=1, overhead=0.0), 0.05)
    assert sizer.size(100_000) == int(BATCH_SECONDS / 0.05)


def test_a_costly_round_trip_makes_batches_larger():
    sizer = observed(BatchSizer(slots=256, overhead=0.05), 0.01, fixed=0.05)
    # 100 ms per batch against 10 ms per tile: 200 tiles keep the fixed cost at 5 %, balance or not
    assert sizer.size(1024) == 200


def test_a_size_set_by_the_user_wins():
    assert plan(observed(BatchSizer(slots=2, overhead=1.0, fixed_size=3), 0.001), 10) == [3, 3, 3, 1]


def test_completion_records_count_only_for_this_run_and_the_same_input(tmp_path):
    store = Store(local_root(tmp_path))
    tiles = [{"key": f"t{i}", "digest": f"d{i}"} for i in range(4)]
    earlier = TileLedger(store, "out").for_run("run-1")
    earlier.record(["t0", "t1"], [fingerprint(t) for t in tiles[:2]], [{"key": "t0"}, {"key": "t1"}])
    other = TileLedger(store, "out").for_run("run-0")
    other.record(["t2"], [fingerprint(tiles[2])], [{"key": "t2"}])

    changed = [{**tiles[0], "digest": "new"}] + tiles[1:]  # t0's input changed since
    job = TileJob("tiles", None, changed, earlier, logging.getLogger("test"))
    assert [changed[i]["key"] for i in job.todo] == ["t0", "t2", "t3"]
    assert job.results[1] == {"key": "t1"}
    kept = store.list("out.done")
    assert kept and all(k.startswith("out.done/run-1/") for k in kept)  # run-0's can never count: removed
