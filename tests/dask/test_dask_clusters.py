"""Ephemeral clusters: KubeCluster (GKE/EKS), GCPCluster, FargateCluster and EC2Cluster need a cloud
control plane, so only their constructors are replaced, by a recorder that asserts the exact
arguments and hands back a real LocalCluster to run the step on. The cluster is created on the first
tile work only, scaled adaptively when asked, and closed after the step, also when it fails."""

from functools import partial

import dagster as dg
import dask_test_work
import pytest
from distributed import LocalCluster
from distributed.core import Status

from geo_assets.cli.demo import failure_message
from geo_assets.engine.batches import Each
from resources.compute import LocalPoolCompute
from resources.dask_compute import CLUSTERS, DaskCompute

IMAGE = "europe-docker.pkg.dev/acme/geo/geo-assets:1.4.2"


class Recorder:
    """Stands in for a cluster class: records each call's arguments and each `adapt`, returns a real cluster."""

    def __init__(self, kind: str):
        self.kind = kind
        self.calls: list[dict] = []
        self.adapts: list[dict] = []
        self.clusters: list[LocalCluster] = []

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        cluster = LocalCluster(
            n_workers=kwargs["n_workers"], threads_per_worker=1, processes=False, dashboard_address=None
        )
        adapt = cluster.adapt

        def recorded_adapt(**options):
            self.adapts.append(options)
            return adapt(**options)

        cluster.adapt = recorded_adapt
        self.clusters.append(cluster)
        return cluster


@pytest.fixture
def recorder(monkeypatch, request):
    import importlib

    module, name = CLUSTERS[request.param]
    recorder = Recorder(request.param)
    monkeypatch.setattr(importlib.import_module(module), name, recorder)
    yield recorder
    for cluster in recorder.clusters:
        cluster.close()


def materialize(compute, items, instance, use_compute=True):
    @dg.asset(name="tiles")
    def tiles_asset(context: dg.AssetExecutionContext, compute: LocalPoolCompute) -> list:
        if not use_compute:
            return []
        return compute.map_tiles(context, Each(partial(dask_test_work.echo, folder)), items, label="tiles")

    folder = str(instance.root_directory)
    return dg.materialize([tiles_asset], resources={"compute": compute}, instance=instance, raise_on_error=False)


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def expected(kind: str, run_id: str, n: int) -> dict:
    return {
        "kubernetes": {
            "name": f"geo-assets-{run_id[:8]}",
            "image": IMAGE,
            "n_workers": n,
            "worker_command": ["dask", "worker", "--nthreads", "1"],
            "namespace": "geo",
        },
        "gcp": {
            "docker_image": IMAGE,
            "n_workers": n,
            "worker_options": {"nthreads": 1},
            "projectid": "acme-geo",
            "zone": "europe-west1-b",
            "machine_type": "n2-standard-4",
        },
        "fargate": {
            "image": IMAGE,
            "n_workers": n,
            "worker_nthreads": 1,
            "region_name": "eu-west-1",
            "worker_mem": 8192,
        },
        "ec2": {
            "docker_image": IMAGE,
            "n_workers": n,
            "worker_options": {"nthreads": 1},
            "region": "eu-west-1",
            "instance_type": "m6i.large",
        },
    }[kind]


OPTIONS = {
    "kubernetes": {"namespace": "geo"},
    "gcp": {"projectid": "acme-geo", "zone": "europe-west1-b", "machine_type": "n2-standard-4"},
    "fargate": {"region_name": "eu-west-1", "worker_mem": 8192},
    "ec2": {"region": "eu-west-1", "instance_type": "m6i.large"},
}
KINDS = list(OPTIONS)


@pytest.mark.parametrize("recorder", KINDS, indirect=True)
def test_cloud_cluster_built_with_exact_arguments_and_closed(recorder, instance):
    kind = recorder.kind
    compute = DaskCompute(cluster=kind, image=IMAGE, n_workers=2, cluster_options=OPTIONS[kind])
    result = materialize(compute, [{"key": "a", "value": 1}, {"key": "b", "value": 2}], instance)
    assert result.success and result.output_for_node("tiles") == [{"key": "a", "double": 2}, {"key": "b", "double": 4}]
    assert recorder.calls == [expected(kind, result.run_id, 2)]
    assert recorder.adapts == []
    assert recorder.clusters[0].status == Status.closed


@pytest.mark.parametrize("recorder", ["kubernetes"], indirect=True)
def test_adaptive_cluster_starts_at_its_minimum_and_adapts(recorder, instance):
    compute = DaskCompute(
        cluster="kubernetes", image=IMAGE, minimum_workers=1, maximum_workers=3, cluster_options=OPTIONS["kubernetes"]
    )
    result = materialize(compute, [{"key": k, "value": 0} for k in "abcdef"], instance)
    assert result.success
    assert recorder.calls == [expected("kubernetes", result.run_id, 1)]
    assert recorder.adapts == [{"minimum": 1, "maximum": 3}]
    assert recorder.clusters[0].status == Status.closed


@pytest.mark.parametrize("recorder", ["fargate"], indirect=True)
def test_cluster_closed_after_a_failed_step(recorder, instance):
    compute = DaskCompute(cluster="fargate", image=IMAGE, cluster_options=OPTIONS["fargate"])
    result = materialize(compute, [{"key": "a", "value": 1, "fail": True}], instance)
    assert not result.success
    assert len(recorder.calls) == 1 and recorder.clusters[0].status == Status.closed


@pytest.mark.parametrize("recorder", ["gcp"], indirect=True)
def test_no_cluster_for_a_step_without_tile_work(recorder, instance):
    compute = DaskCompute(cluster="gcp", image=IMAGE, cluster_options=OPTIONS["gcp"])
    assert materialize(compute, [], instance, use_compute=False).success
    assert recorder.calls == []


def test_local_cluster_of_worker_processes_closed_after_the_step(instance, monkeypatch):
    import distributed

    made: list[LocalCluster] = []
    real = distributed.LocalCluster

    def local_cluster(**kwargs):
        assert kwargs == {
            "n_workers": 2,
            "threads_per_worker": 1,
            "processes": True,
            "host": "127.0.0.1",
            "dashboard_address": "127.0.0.1:0",
        }
        made.append(real(**kwargs))
        return made[-1]

    monkeypatch.setattr(distributed, "LocalCluster", local_cluster)
    result = materialize(DaskCompute(n_workers=2), [{"key": "a", "value": 1}], instance)
    assert result.success and made[0].status == Status.closed


def test_a_cluster_the_control_plane_refuses_fails_the_step_with_its_cause(instance, monkeypatch):
    import dask_cloudprovider.aws

    def refused(**kwargs):
        raise RuntimeError("ClientException: No Fargate configuration exists for given values: 512 CPU, 999 memory")

    monkeypatch.setattr(dask_cloudprovider.aws, "FargateCluster", refused)
    compute = DaskCompute(cluster="fargate", image=IMAGE, cluster_options={"worker_mem": 999})
    result = materialize(compute, [{"key": "a", "value": 1}], instance)
    assert not result.success
    assert failure_message(result).endswith(
        "could not create the fargate Dask cluster (FargateCluster): ClientException: No Fargate configuration "
        "exists for given values: 512 CPU, 999 memory"
    )
