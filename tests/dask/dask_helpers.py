"""Shared by the Dask tests: a Dask cluster started with the `dask` command line, as on a remote
machine (the step only knows the scheduler's address); the tiny world is tests/tiny_world.py.
A module of its own: `conftest` is not importable by name when several exist."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from devtools.emulators import free_port, running

HERE = Path(__file__).resolve().parent


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
        stack.enter_context(
            running(
                [dask, "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"],
                log_dir / "scheduler.log",
                env,
            )
        )
        proc = None
        if workers:
            proc = stack.enter_context(
                running(
                    [
                        dask,
                        "worker",
                        address,
                        "--host",
                        "127.0.0.1",
                        "--nworkers",
                        workers,
                        "--nthreads",
                        1,
                        "--no-dashboard",
                        "--memory-limit",
                        "2GiB",
                    ],
                    log_dir / "workers.log",
                    env,
                )
            )
        with Client(address, timeout=30, set_as_default=False) as client:
            if workers:
                client.wait_for_workers(workers, timeout=60)
        yield address, proc
