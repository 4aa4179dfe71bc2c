"""Shared by the Dask tests: the tiny regions and model settings, the resources of a step, and a Dask
cluster started with the `dask` command line, as on a remote machine (the step only knows the
scheduler's address). A module of its own: `conftest` is not importable by name when several exist."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from devtools.emulators import free_port, running
from geo_assets.geo.regions import Region
from geo_assets.geo.store import Store
from resources.compute import LocalPoolCompute
from resources.gate import ModelGate
from resources.imagery import ImageryResource
from resources.storage import ManifestIOManager, StorageResource
from resources.training import InProcessTraining

HERE = Path(__file__).resolve().parent

# The regions of tests/dagster: 2 x 2 tiles of 64 px at 10 m (16 tiles of 32 px).
TINY = Region("tiny-field", (400000.0, 5120000.0, 401280.0, 5121280.0), "EPSG:32631", "synthetic", "synthetic", ("2024-06-01",))
TINY_HOLDOUT = Region("tiny-holdout", (440320.0, 5120000.0, 441600.0, 5121280.0), "EPSG:32631", "synthetic", "synthetic", ("2024-06-01",))
DATE = "2024-06-01"
MODEL = "tiny-model"
TRAIN = {"architecture": "fcn", "epochs": 2, "chips_per_epoch": 32, "chip_size": 64, "batch_size": 8,
         "learning_rate": 0.01, "hyperparameters": {"hidden_channels": 8}}


def resources_for(store: Store, compute: LocalPoolCompute) -> dict:
    storage = StorageResource(root=store.root)
    return {"storage": storage, "compute": compute, "io_manager": ManifestIOManager(storage=storage),
            "imagery": ImageryResource(), "gate": ModelGate(min_miou=0.0), "training": InProcessTraining()}


@contextlib.contextmanager
def dask_cli_cluster(log_dir: Path, workers: int = 2):
    """`dask scheduler` and `dask worker` processes on 127.0.0.1; yields (address, the workers' process,
    None when `workers` is 0)."""
    from distributed import Client

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = Path(sys.executable).parent / "dask"
    # The scheduler and workers run this checkout's environment, as deployed ones run the image; the
    # tests' work units (dask_test_work) are importable there too.
    env = {"PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    with contextlib.ExitStack() as stack:
        stack.enter_context(running([dask, "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"],
                                    log_dir / "scheduler.log", env))
        proc = None
        if workers:
            proc = stack.enter_context(running(
                [dask, "worker", address, "--host", "127.0.0.1", "--nworkers", workers, "--nthreads", 1,
                 "--no-dashboard", "--memory-limit", "2GiB"], log_dir / "workers.log", env))
        with Client(address, timeout=30, set_as_default=False) as client:
            if workers:
                client.wait_for_workers(workers, timeout=60)
        yield address, proc
