"""The compute settings of the profiles: the thread pool by default, Dask when asked, every value
bounded and checked with one message naming its variable."""

import pytest

from resources.compute import LocalPoolCompute
from resources.dask_compute import DaskCompute
from resources.profiles import resource_defs

DASK_VARS = [
    "GEO_ASSETS_COMPUTE",
    "GEO_ASSETS_WORKERS",
    "GEO_ASSETS_TILES_PER_BATCH",
    "GEO_ASSETS_DASK_ADDRESS",
    "GEO_ASSETS_DASK_CLUSTER",
    "GEO_ASSETS_DASK_WORKERS",
    "GEO_ASSETS_DASK_THREADS",
    "GEO_ASSETS_DASK_MIN_WORKERS",
    "GEO_ASSETS_DASK_MAX_WORKERS",
    "GEO_ASSETS_DASK_IMAGE",
    "GEO_ASSETS_DASK_CLUSTER_OPTIONS",
    "GEO_ASSETS_DASK_CONNECT_TIMEOUT",
    "GEO_ASSETS_DASK_WORKER_TIMEOUT",
]


@pytest.fixture
def env(monkeypatch):
    for name in DASK_VARS:
        monkeypatch.delenv(name, raising=False)

    def set_env(**values):
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        return resource_defs("local")["compute"]

    return set_env


def test_thread_pool_by_default(env):
    compute = env()
    assert type(compute) is LocalPoolCompute and compute.workers == 0 and compute.tiles_per_batch == 0
    assert env(GEO_ASSETS_COMPUTE="threads", GEO_ASSETS_WORKERS="3").workers == 3


def test_dask_settings_from_the_environment(env):
    compute = env(
        GEO_ASSETS_COMPUTE="dask",
        GEO_ASSETS_DASK_CLUSTER="gcp",
        GEO_ASSETS_DASK_IMAGE="img:1",
        GEO_ASSETS_DASK_THREADS="2",
        GEO_ASSETS_DASK_MIN_WORKERS="1",
        GEO_ASSETS_DASK_MAX_WORKERS="16",
        GEO_ASSETS_DASK_CLUSTER_OPTIONS='{"zone": "europe-west1-b", "preemptible": true}',
        GEO_ASSETS_DASK_CONNECT_TIMEOUT="2.5",
        GEO_ASSETS_TILES_PER_BATCH="32",
    )
    assert isinstance(compute, DaskCompute) and compute.kind == "gcp" and compute.adaptive
    assert (compute.threads_per_worker, compute.minimum_workers, compute.maximum_workers) == (2, 1, 16)
    assert compute.cluster_options == {"zone": "europe-west1-b", "preemptible": True}
    assert (compute.connect_timeout, compute.tiles_per_batch) == (2.5, 32)
    remote = env(GEO_ASSETS_DASK_CLUSTER="", GEO_ASSETS_DASK_ADDRESS="tcp://dask-scheduler:8786")
    assert remote.kind == "address" and remote.address == "tcp://dask-scheduler:8786"
    assert env(GEO_ASSETS_DASK_ADDRESS="").kind == "local"  # a LocalCluster of worker processes


@pytest.mark.parametrize(
    "values, message",
    [
        ({"GEO_ASSETS_COMPUTE": "spark"}, "unknown GEO_ASSETS_COMPUTE='spark'; accepted: threads, dask"),
        ({"GEO_ASSETS_WORKERS": "many"}, "GEO_ASSETS_WORKERS='many': must be a whole number from 0 to 1,024"),
        (
            {"GEO_ASSETS_TILES_PER_BATCH": "-1"},
            "GEO_ASSETS_TILES_PER_BATCH='-1': must be a whole number from 0 to 100,000",
        ),
        ({"GEO_ASSETS_DASK_WORKERS": "0"}, "GEO_ASSETS_DASK_WORKERS='0': must be a whole number from 1 to 1,024"),
        ({"GEO_ASSETS_DASK_WORKERS": "5000"}, "GEO_ASSETS_DASK_WORKERS='5000': must be a whole number from 1 to 1,024"),
        ({"GEO_ASSETS_DASK_WORKERS": "1.5"}, "GEO_ASSETS_DASK_WORKERS='1.5': must be a whole number from 1 to 1,024"),
        ({"GEO_ASSETS_DASK_THREADS": "inf"}, "GEO_ASSETS_DASK_THREADS='inf': must be a whole number from 1 to 256"),
        (
            {"GEO_ASSETS_DASK_CONNECT_TIMEOUT": "nan"},
            "GEO_ASSETS_DASK_CONNECT_TIMEOUT='nan': must be a number from 0.1 to 600",
        ),
        (
            {"GEO_ASSETS_DASK_WORKER_TIMEOUT": "inf"},
            "GEO_ASSETS_DASK_WORKER_TIMEOUT='inf': must be a number from 1 to 3,600",
        ),
        (
            {"GEO_ASSETS_DASK_CLUSTER": "yarn"},
            "GEO_ASSETS_DASK_CLUSTER='yarn'; accepted: local, kubernetes, gcp, fargate, ec2",
        ),
        ({"GEO_ASSETS_DASK_CLUSTER_OPTIONS": "{zone: x}"}, "GEO_ASSETS_DASK_CLUSTER_OPTIONS is not JSON"),
        ({"GEO_ASSETS_DASK_CLUSTER_OPTIONS": "[1, 2]"}, "GEO_ASSETS_DASK_CLUSTER_OPTIONS must be a JSON object"),
        (
            {"GEO_ASSETS_DASK_CLUSTER_OPTIONS": '{"n_workers": 8}'},
            "GEO_ASSETS_DASK_CLUSTER_OPTIONS may not set n_workers: use GEO_ASSETS_DASK_WORKERS",
        ),
        (
            {"GEO_ASSETS_DASK_MIN_WORKERS": "4", "GEO_ASSETS_DASK_MAX_WORKERS": "2"},
            "GEO_ASSETS_DASK_MIN_WORKERS=4 exceeds GEO_ASSETS_DASK_MAX_WORKERS=2",
        ),
        (
            {"GEO_ASSETS_DASK_ADDRESS": "tcp://s:8786", "GEO_ASSETS_DASK_CLUSTER": "local"},
            "GEO_ASSETS_DASK_ADDRESS and GEO_ASSETS_DASK_CLUSTER exclude each other",
        ),
        (
            {"GEO_ASSETS_DASK_ADDRESS": "http://scheduler/"},
            "GEO_ASSETS_DASK_ADDRESS='http://scheduler/' is not a scheduler address",
        ),
        ({"GEO_ASSETS_DASK_CLUSTER": "kubernetes"}, "a kubernetes cluster needs GEO_ASSETS_DASK_IMAGE"),
    ],
)
def test_bad_settings_fail_with_one_clear_message(env, values, message):
    values = {"GEO_ASSETS_COMPUTE": "dask", **values}
    with pytest.raises(ValueError) as caught:
        env(**values)
    assert message in str(caught.value)
