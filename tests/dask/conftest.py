"""Real Dask clusters for the compute tests, torn down by their fixtures:

- `local_cluster`: a `LocalCluster` of 2 worker processes with 1 thread each;
- `cli_cluster`: a scheduler and 2 worker processes started with the `dask` command line on
  127.0.0.1 and free ports (the remote-cluster path: the step only knows the scheduler's address).

Plus a Dagster instance, a store in a temporary folder with tiny regions (those of tests/dagster), and
a small model trained once per session on the thread pool.
"""

from __future__ import annotations

import dagster as dg
import pytest

from dask_helpers import dask_cli_cluster
from tiny_world import MODEL, TINY, TINY_HOLDOUT, train_tiny
from geo_assets.cli import register
from geo_assets.geo.regions import load_catalogue, save_catalogue
from geo_assets.geo.store import Store, local_root

@pytest.fixture(scope="session")
def local_cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="session")
def cli_cluster(tmp_path_factory):
    with dask_cli_cluster(tmp_path_factory.mktemp("dask-cli")) as (address, _):
        yield address


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    s = Store(local_root(tmp_path_factory.mktemp("dask-store") / "storage"))
    catalogue = load_catalogue(s)
    catalogue.add(TINY)
    catalogue.add(TINY_HOLDOUT)
    save_catalogue(s, catalogue)
    return s


@pytest.fixture(scope="module")
def registered(instance, store):
    register(instance, regions=load_catalogue(store).names(), models=[MODEL])
    return instance


@pytest.fixture(scope="module")
def trained(registered, store) -> str:
    """A small model trained on tiny-field with the thread pool; its version id."""
    return train_tiny(registered, store)
