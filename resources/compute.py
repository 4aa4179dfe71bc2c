"""The compute interface for tile work inside a step.

Assets hand it a work function and a list of items; it returns results in order and reports
progress. Only a local thread pool exists now: GDAL and numpy release the GIL, so threads keep
both cores busy without pickling rasters. A Dask-backed resource can implement the same `map`.
"""


import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence, TypeVar

import dagster as dg

PROGRESS_SECONDS = 5.0  # long work reports progress this often; short work once, at the end

T = TypeVar("T")
R = TypeVar("R")


class LocalPoolCompute(dg.ConfigurableResource):
    """Fan tile work out over a local thread pool."""

    workers: int = 0  # 0: one per CPU core

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
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for i, result in enumerate(pool.map(fn, items), start=1):
                results.append(result)
                now = time.perf_counter()
                if log and (now - last >= PROGRESS_SECONDS or i == total):
                    last = now
                    log(f"{label}: {i}/{total} done ({i / max(now - start, 1e-9):.1f}/s)")
        return results
