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

from dask_helpers import DATE, MODEL, TINY, TINY_HOLDOUT, TRAIN, dask_cli_cluster, resources_for
from geo_assets.cli import register
from geo_assets.geo.regions import load_catalogue, save_catalogue
from geo_assets.geo.store import Store, local_root
from geo_assets.partitions import region_date_key
from resources.compute import LocalPoolCompute

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
    from geo_assets.assets.imagery import imagery_tiles
    from geo_assets.assets.labels import labels
    from geo_assets.assets.models import trained_model, training_set

    resources = resources_for(store, LocalPoolCompute(workers=2))
    tiles64 = {"config": {"tile_size": 64}}
    key = region_date_key(TINY.name, DATE)
    assert dg.materialize([imagery_tiles], partition_key=key, resources=resources, instance=registered,
                          run_config={"ops": {"imagery_tiles": tiles64}}).success
    assert dg.materialize([labels], partition_key=TINY.name, resources=resources, instance=registered,
                          run_config={"ops": {"labels": tiles64}}).success
    ops = {"training_set": {"config": {"regions": [TINY.name]}}, "trained_model": {"config": TRAIN}}
    result = dg.materialize([training_set, trained_model], partition_key=MODEL, resources=resources,
                            instance=registered, run_config={"ops": ops})
    assert result.success
    return result.output_for_node("trained_model")["version"]
