"""Process-wide pools for tile work: threads reused across calls, no deadlock when nested,
nothing of a failed call running on after it, fresh pools after a fork."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest

from geo_assets.engine.threads import inside, map_on, shared_pool


def _thread(_item) -> int:
    time.sleep(0.01)  # long enough that the pool's threads all take items
    return threading.get_ident()


def test_calls_reuse_the_same_threads():
    first = set(map_on("reuse", 2, _thread, range(8)))
    second = set(map_on("reuse", 2, _thread, range(8)))
    assert len(first) == 2 and second == first  # the same two threads: GDAL's per-thread state survives
    assert threading.get_ident() not in first


def test_results_are_in_order():
    assert list(map_on("order", 3, lambda x: (time.sleep(0.02 * (5 - x)), x * x)[1], range(5))) == [0, 1, 4, 9, 16]


def test_one_item_runs_in_the_calling_thread():
    assert list(map_on("single", 4, _thread, [0])) == [threading.get_ident()]


def test_a_map_inside_mapped_work_runs_inline_instead_of_deadlocking():
    def outer(x):
        assert inside("nested", 2)
        return sum(map_on("nested", 2, lambda y: y + x, range(3)))

    done = []
    worker = threading.Thread(target=lambda: done.append(list(map_on("nested", 2, outer, range(4)))), daemon=True)
    worker.start()
    worker.join(10)  # both pool threads run `outer`: a nested submit to the same pool would wait forever
    assert done == [[3, 6, 9, 12]]
    assert not inside("nested", 2)


def test_a_failure_drops_the_items_not_started_and_waits_for_the_running_ones():
    started, finished = [], []

    def work(x):
        started.append(x)
        if x == 0:
            raise ValueError("tile 0 is corrupt")
        time.sleep(0.2)
        finished.append(x)
        return x

    with pytest.raises(ValueError, match="tile 0 is corrupt"):
        list(map_on("failing", 2, work, range(20)))
    assert sorted(finished) == sorted(x for x in started if x != 0)  # whatever started has finished
    snapshot = list(started)
    time.sleep(0.4)
    assert started == snapshot and len(started) < 20  # and nothing starts after the call returned


def _child_map(queue) -> None:
    queue.put(sorted(map_on("forked", 2, lambda x: x + 1, range(4))))


def test_a_forked_child_gets_fresh_pools():
    shared_pool("forked", 2).submit(lambda: None).result()  # the parent's pool has live threads
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_map, args=(queue,))
    child.start()
    child.join(30)
    assert child.exitcode == 0 and queue.get(timeout=5) == [1, 2, 3, 4]


def test_read_ahead_makes_one_item_ahead_in_order_and_stops_with_its_caller():
    from geo_assets.engine.threads import read_ahead

    made = []

    def make(x):
        made.append(x)
        return x * x

    results = read_ahead(make, range(10))
    assert next(results) == 0
    time.sleep(0.1)
    assert made == [0, 1]  # the next one is made while the caller works; no further
    assert next(results) == 1 and next(results) == 4
    results.close()  # an early stop: the pending one is cancelled or waited for, nothing more is made
    stopped = list(made)
    time.sleep(0.1)
    assert made == stopped and stopped in ([0, 1, 2], [0, 1, 2, 3])
    with pytest.raises(ValueError, match="item 2"):
        list(read_ahead(lambda x: x if x != 2 else (_ for _ in ()).throw(ValueError("item 2")), range(5)))
