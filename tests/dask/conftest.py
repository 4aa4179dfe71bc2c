"""Real Dask clusters for the compute tests, torn down by their fixtures:

- `local_cluster`: a `LocalCluster` of 2 worker processes with 1 thread each;
- `cli_cluster`: a scheduler and 2 worker processes started with the `dask` command line on
  127.0.0.1 and free ports (the remote-cluster path: the step only knows the scheduler's address).

Plus a Dagster instance, a store in a temporary folder with tiny regions (those of tests/dagster), and
a small model trained once per session on the thread pool.
"""

from __future__ import annotations

import pytest
from dask_helpers import dask_cli_cluster
from tiny_world import instance, registered, store, trained  # noqa: F401 (the tiny world's fixtures)


@pytest.fixture(scope="session")
def local_cluster():
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="session")
def cli_cluster(tmp_path_factory):
    with dask_cli_cluster(tmp_path_factory.mktemp("dask-cli")) as (address, _):
        yield address
