"""Source datasets kept open by long-lived threads never outlive their scene plan: an object rewritten
at the same path between two plans is read as it is now, by the same thread and by another one."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from affine import Affine

from geo_assets.geo import stac
from geo_assets.geo.cog import write_cog

CRS = "EPSG:32631"
BOUNDS = (500000.0, 5199360.0, 500640.0, 5200000.0)  # 64 x 64 px at 10 m


def _deliver(path, value: int) -> None:
    """(Re)write the COG at `path` atomically, as a store publishes an object."""
    tmp = f"{path}.tmp"
    write_cog(tmp, np.full((64, 64), value, np.uint16), CRS, Affine(10, 0, 500000, 0, -10, 5200000), 0)
    os.replace(tmp, path)


def _read(path, plan: str) -> int:
    window = stac.read_window(str(path), str(path), CRS, BOUNDS, (64, 64), CRS, 10.0, 0, plan=plan)
    assert (window == window[0, 0]).all()
    return int(window[0, 0])


def test_the_same_thread_reads_a_rewritten_object_anew_for_a_new_plan(tmp_path):
    path = tmp_path / "B04.tif"
    _deliver(path, 100)
    with ThreadPoolExecutor(1) as thread:  # one thread that lives on between reads, as the pools' do
        assert thread.submit(_read, path, "plan-1").result() == 100
        assert thread.submit(_read, path, "plan-1").result() == 100  # kept open within the plan
        _deliver(path, 200)
        assert thread.submit(_read, path, "plan-2").result() == 200


def test_a_new_plan_closes_the_idle_datasets_other_threads_keep_for_older_plans(tmp_path):
    path = tmp_path / "B04.tif"
    _deliver(path, 100)
    with ThreadPoolExecutor(1) as first, ThreadPoolExecutor(1) as second:
        assert first.submit(_read, path, "plan-1").result() == 100
        [kept] = [d for d in list(stac.reads._ALL_THREADS) if d.plan == "plan-1"]
        assert len(kept.open) == 1
        _deliver(path, 200)
        assert second.submit(_read, path, "plan-2").result() == 200
        assert kept.plan is None and not kept.open  # the first thread's plan-1 dataset is closed
        assert first.submit(_read, path, "plan-2").result() == 200
