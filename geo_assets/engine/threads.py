"""Thread pools for tile work that live as long as the process.

GDAL builds state per thread the first time a thread opens a raster (its configuration and a
PROJ context with its own proj.db connection): about 6 ms of CPU, three times the cost of reading
a 256 px tile (bench.tile_io: open and read 2.1 ms on a reused thread, 8.1 ms on a new one). A
pool made per batch pays it again for every thread of every batch, so tile work runs on pools
made once per process and name, whose threads keep that state.

`map_on` fans a function out over such a pool; called from one of that pool's own threads it runs
the items in the calling thread instead, so work that maps inside mapped work cannot deadlock.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TypeVar

__all__ = ["inside", "map_on", "read_ahead", "shared_pool"]

T = TypeVar("T")
R = TypeVar("R")

_pools: dict[tuple[str, int], ThreadPoolExecutor] = {}
_lock = threading.Lock()
_local = threading.local()


def _forget_after_fork() -> None:
    # A forked child has none of the parent's threads: its pools would never run a task.
    _pools.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


def _mark(name: tuple[str, int]) -> None:
    _local.pool = name


def shared_pool(name: str, threads: int) -> ThreadPoolExecutor:
    """The process's pool of `threads` threads called `name`, made on first use."""
    key = (name, threads)
    with _lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = ThreadPoolExecutor(threads, f"{name}-{threads}", initializer=_mark, initargs=(key,))
    return pool


def inside(name: str, threads: int) -> bool:
    """Whether this thread is one of that pool's."""
    return getattr(_local, "pool", None) == (name, threads)


def map_on(name: str, threads: int, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
    """`fn` over `items` on the shared pool, results in order as they are ready.

    One item, or a call from the pool's own threads, runs here. On a failure the items not yet
    started are dropped and those running are waited for, so nothing of this call runs on after it.
    """
    if len(items) <= 1 or threads <= 1 or inside(name, threads):
        for item in items:
            yield fn(item)
        return
    pool = shared_pool(name, threads)
    futures: list[Future] = [pool.submit(fn, item) for item in items]
    try:
        for future in futures:
            yield future.result()
    except BaseException:
        for future in futures:
            future.cancel()
        wait(futures)
        raise


def read_ahead(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """`fn` over `items` in order, one item ahead: while the caller works on one result, the next is
    made on the process's read-ahead thread. At most two results are alive at once (the one handed
    out, if the caller drops it before asking for the next, and the one being made), however many
    items there are; on a failure or an early stop the pending one is waited for, so nothing of this
    call runs on after it."""
    if inside("read-ahead", 1):  # called from the read-ahead thread itself: no thread to wait on
        yield from map(fn, items)
        return
    pool = shared_pool("read-ahead", 1)
    it = iter(items)
    pending: Future | None = None
    try:
        for item in it:
            pending = pool.submit(fn, item)
            break
        while pending is not None:
            result = pending.result()
            pending = None
            for item in it:
                pending = pool.submit(fn, item)
                break
            yield result
            del result  # the caller's copy is the only one left
    finally:
        if pending is not None:
            pending.cancel()
            wait([pending])
