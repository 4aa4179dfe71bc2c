"""map_tiles on the thread pool and on real Dask clusters (a LocalCluster and a `dask` CLI cluster):
results in order, worker logs and per-batch progress in the step's Dagster log, failures with the
tile's key and the worker's traceback, an unreachable scheduler, a worker killed mid-step."""

import logging
import os
import signal
import threading
import time
from functools import partial

import dagster as dg
import dask_test_work
import pytest
from dask_helpers import dask_cli_cluster

from devtools.emulators import free_port
from geo_assets.cli.demo import failure_message
from geo_assets.engine.batches import Each
from geo_assets.engine.ledger import TileLedger
from geo_assets.geo.store import Store, local_root
from resources.compute import LocalPoolCompute
from resources.dask_compute import DaskCompute

LABEL = "test tiles"


def tiles(n: int, **marks) -> list[dict]:
    """Tiles t0..t{n-1}; marks such as fail=2 or warn=3 flag one of them."""
    return [{"key": f"t{i}", "value": i, **{m: True for m, at in marks.items() if at == i}} for i in range(n)]


def run(compute, work, items, instance, ledger=None):
    @dg.asset(name="tiles")
    def tiles_asset(context: dg.AssetExecutionContext, compute: LocalPoolCompute) -> list:
        return compute.map_tiles(context, work, items, label=LABEL, ledger=ledger)

    return dg.materialize([tiles_asset], resources={"compute": compute}, instance=instance, raise_on_error=False)


def failure(result) -> str:
    """The step's failure message, without the exception's class name."""
    assert not result.success
    return failure_message(result).split(": ", 1)[1]


def messages(instance, result, level=None) -> list[str]:
    return [
        e.user_message
        for e in instance.all_logs(result.run_id)
        if e.dagster_event is None and (level is None or e.level == level)
    ]


@pytest.fixture(params=["threads", "dask-local", "dask-cli"])
def compute(request):
    if request.param == "threads":
        return LocalPoolCompute(workers=2)
    return DaskCompute(
        address=request.getfixturevalue("local_cluster" if request.param == "dask-local" else "cli_cluster")
    )


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def test_results_in_order_with_worker_logs_and_progress(compute, instance, tmp_path):
    work = Each(partial(dask_test_work.echo, str(tmp_path)))
    result = run(compute, work, tiles(10, warn=3), instance)
    assert result.success
    assert result.output_for_node("tiles") == [{"key": f"t{i}", "double": 2 * i} for i in range(10)]
    assert [dask_test_work.runs(str(tmp_path), f"t{i}") for i in range(10)] == [1] * 10

    info = messages(instance, result)
    forwarded = [m for m in info if "] tile t" in m and " on pid " in m]
    assert len(forwarded) == 10  # one record per tile, from wherever it ran
    (warning,) = messages(instance, result, logging.WARNING)
    assert warning.endswith("tile t3 looks odd")
    progress = [m for m in info if m.startswith(f"{LABEL}: batch ")]
    assert progress[-1].endswith("10/10 tiles, " + progress[-1].rsplit(", ", 1)[1])
    if isinstance(compute, DaskCompute):
        assert all(m.startswith("[tcp://127.0.0.1:") for m in forwarded + [warning])
        assert len({m.split("]")[0] for m in forwarded}) == 2  # both workers took batches
        assert len(progress) >= 3  # a probe wave of one batch per worker, then the planned batches
        assert any(m.startswith(f"{LABEL}: measured ") and "tiles per batch: " in m for m in info)
    else:
        assert all(m.startswith(f"[{os.uname().nodename} pid {os.getpid()}]") for m in forwarded)


def test_failure_names_the_tile_and_the_worker_traceback(compute, instance, tmp_path):
    work = Each(partial(dask_test_work.echo, str(tmp_path)))
    result = run(compute, work, tiles(6, fail=4), instance)
    message = failure(result)
    assert message.startswith(f"{LABEL}: tile t4 failed on ")
    assert "ValueError: cannot read tile t4: corrupt header" in message
    assert "Traceback on " in message and ", in echo\n" in message and "dask_test_work.py" in message
    if isinstance(compute, DaskCompute):
        assert message.startswith(f"{LABEL}: tile t4 failed on tcp://127.0.0.1:")


def test_batch_failure_without_a_tile_names_the_batch(instance):
    def broken(items, mapper):
        raise RuntimeError("forward pass failed")

    result = run(LocalPoolCompute(workers=2, tiles_per_batch=3), broken, tiles(3), instance)
    assert failure(result).startswith(f"{LABEL}: batch 1 (tiles t0 to t2, 3 tiles) failed on ")
    assert "RuntimeError: forward pass failed" in failure(result)


def test_unreachable_scheduler_fails_fast_with_one_message(instance, tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    result = run(
        DaskCompute(address=address, connect_timeout=1),
        Each(partial(dask_test_work.echo, str(tmp_path))),
        tiles(2),
        instance,
    )
    message = failure(result)
    assert message.startswith(f"the Dask scheduler at {address} (GEO_ASSETS_DASK_ADDRESS) did not answer within 1 s")
    assert dask_test_work.runs(str(tmp_path), "t0") == 0


def test_a_cluster_without_workers_fails_after_the_worker_timeout(instance, tmp_path):
    with dask_cli_cluster(tmp_path / "cluster", workers=0) as (address, _):
        compute = DaskCompute(address=address, worker_timeout=2)
        result = run(compute, Each(partial(dask_test_work.echo, str(tmp_path))), tiles(2), instance)
    assert failure(result) == (
        f"no Dask worker in the address cluster for 2 s (GEO_ASSETS_DASK_WORKER_TIMEOUT); the scheduler is {address}"
    )


def test_a_worker_killed_mid_step_fails_it_clearly(instance, tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    store = Store(local_root(tmp_path / "store"))
    with dask_cli_cluster(tmp_path / "cluster") as (address, _):
        killed: list[int] = []

        def kill_first_worker():  # the processes belong to this test's cluster
            deadline = time.monotonic() + 60
            while not killed and time.monotonic() < deadline:
                for marker in folder.glob("*.pid"):
                    pid = int(marker.read_text())
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_first_worker)
        killer.start()
        compute = DaskCompute(address=address, tiles_per_batch=1)
        work = Each(partial(dask_test_work.slow, str(folder), 3.0))
        result = run(compute, work, tiles(4), instance, ledger=TileLedger(store, "out"))
        killer.join()
    assert killed
    message = failure(result)
    assert message.startswith(f"{LABEL}: Dask worker tcp://127.0.0.1:")
    assert "was lost while it ran batch " in message
    assert "re-execute the run from failure to compute only the missing tiles" in message
    # Nothing the killed worker was doing is recorded as done.
    done = TileLedger(store, "out", result.run_id).completed()
    assert all(dask_test_work.runs(str(folder), key) == 1 for key in done)
    assert len(done) < 4
