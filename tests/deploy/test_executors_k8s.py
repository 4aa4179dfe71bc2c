"""Steps as Kubernetes Jobs (GEO_ASSETS_RUNTIME=k8s), end to end through dagster-k8s's own code.

`dagster dev` serves the code location on the gcp profile with an instance whose K8sRunLauncher is
configured as the Helm chart configures it from deploy/helm/values-gke.yaml (namespace, service
account, instance ConfigMap, PostgreSQL secret), pointed by a kubeconfig at a stand-in Kubernetes
API (devtools/clusters.py: no API server can run here). A run launched over GraphQL becomes a run
Job; its container (`dagster api execute_run`) runs locally, and its k8s_job_executor creates one
Job per step from the steps' op tags (geo_assets/assets/placement.py), whose containers run locally
too, against a GCS API (fake-gcs-server). Every Job is validated against the Kubernetes 1.33
OpenAPI schema before it is accepted; a Job the API refuses fails its step with the API's cause.
"""

from __future__ import annotations

import json
import os

import dagster as dg
import pytest
import yaml

from devtools.clusters import kubernetes_api
from devtools.dagster_dev import BIN, ROOT, dagster_dev, graphql, launch, wait
from devtools.emulators.gcs import fake_gcs

PARTITION = "2024-06-01|synth-holdout"
BUCKET = "geo-assets-data"
IMAGE = "registry.invalid/geo-assets:0123abc"
GPU_TAINT = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
EVENTS = """query Events($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events {
  __typename ... on MessageEvent { message stepKey } ... on RunFailureEvent { error { message causes { message } } }
  ... on ExecutionStepFailureEvent { error { message } } } } } }"""


def _launcher_config(kubeconfig) -> dict:
    """The K8sRunLauncher the chart renders from values-gke.yaml; the kubeconfig stands in for in-cluster config."""
    values = yaml.safe_load((ROOT / "deploy/helm/values-gke.yaml").read_text())
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher" and launcher["loadInclusterConfig"] is True
    return {
        "module": "dagster_k8s",
        "class": "K8sRunLauncher",
        "config": {
            "load_incluster_config": False,
            "kubeconfig_file": str(kubeconfig),
            "job_namespace": "geo-assets",
            "service_account_name": values["global"]["serviceAccountName"],
            "instance_config_map": "dagster-instance",
            "dagster_home": "/opt/dagster/dagster_home",
            "postgres_password_secret": values["global"]["postgresqlSecretName"],
            "image_pull_policy": launcher["imagePullPolicy"],
            "fail_pod_on_run_failure": launcher["failPodOnRunFailure"],
        },
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("k8s")
    home = tmp / "home"
    home.mkdir()
    with fake_gcs(tmp / "gcs", [BUCKET]) as gcs:
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "GEO_ASSETS_PROFILE": "gcp",
            "GEO_ASSETS_RUNTIME": "k8s",
            "GEO_ASSETS_STORAGE_ROOT": f"gs://{BUCKET}/geo-assets",
            "STORAGE_EMULATOR_HOST": gcs,
            "GOOGLE_CLOUD_PROJECT": "test-project",
            "DAGSTER_CURRENT_IMAGE": IMAGE,
            "GEO_ASSETS_GPU_IMAGE": f"{IMAGE}-gpu",
            "GEO_ASSETS_WORKERS": "1",
        }
        with kubernetes_api(env, str(home), tmp) as (kubeconfig, jobs):
            (home / "dagster.yaml").write_text(
                yaml.safe_dump(
                    {
                        "storage": {"sqlite": {"base_dir": str(home)}},
                        "run_launcher": _launcher_config(kubeconfig),
                        "telemetry": {"enabled": False},
                    }
                )
            )
            import subprocess

            init = subprocess.run(
                [BIN / "geo-assets", "init"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
            )
            assert init.returncode == 0, init.stderr[-3000:]
            with dagster_dev(env, tmp / "dev.log") as url:
                yield url, jobs, env


def _pod(job: dict) -> dict:
    return job["spec"]["template"]["spec"]


def _step_jobs(jobs, run_id: str) -> dict[str, dict]:
    return {
        j.spec["metadata"]["labels"]["dagster/op"]: j.spec
        for j in jobs.jobs.values()
        if j.spec["metadata"]["labels"].get("dagster/run-id") == run_id and "dagster/op" in j.spec["metadata"]["labels"]
    }


def _failure(url: str, run_id: str) -> str:
    events = graphql(url, EVENTS, {"id": run_id})["logsForRun"]["events"]
    failures = [e for e in events if e["__typename"] in ("RunFailureEvent", "ExecutionStepFailureEvent")]
    return "\n".join(json.dumps(e) for e in failures)


def test_each_step_is_a_valid_job_placed_by_its_op_tags(cluster):
    url, jobs, _ = cluster
    run_id = launch(url, "imagery_job", PARTITION, {"imagery_tiles": {"config": {"tile_size": 256}}})
    run = wait(url, run_id, timeout=420)
    assert run["status"] == "SUCCESS", _failure(url, run_id)

    # The run's own Job (K8sRunLauncher), then one Job for its one step (k8s_job_executor).
    run_jobs = [
        j.spec
        for j in jobs.jobs.values()
        if j.spec["metadata"]["labels"].get("app.kubernetes.io/component") == "run_worker"
        and run_id in json.dumps(j.spec)
    ]
    assert len(run_jobs) == 1
    run_container = _pod(run_jobs[0])["containers"][0]
    assert run_container["args"][:3] == ["dagster", "api", "execute_run"]
    (step,) = _step_jobs(jobs, run_id).values()
    pod = _pod(step)
    (container,) = pod["containers"]
    assert container["args"][:3] == ["dagster", "api", "execute_step"]
    assert container["image"] == IMAGE  # the code location's image
    assert container["resources"] == {"requests": {"cpu": "2000m", "memory": "8Gi"}, "limits": {"memory": "8Gi"}}
    assert pod["nodeSelector"] == {"geo-assets/pool": "cpu"}
    assert "tolerations" not in pod
    # Inherited from the run launcher: namespace, service account, the instance and its password secret.
    assert step["metadata"]["namespace"] == "geo-assets"
    assert pod["serviceAccountName"] == "geo-assets"
    env = {e["name"]: e for e in container["env"]}
    assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "geo-assets-postgresql"
    assert env["DAGSTER_HOME"]["value"] == "/opt/dagster/dagster_home"
    assert not jobs.refused


def test_gpu_steps_ask_for_a_gpu_node_with_the_cuda_image(cluster):
    url, jobs, _ = cluster
    # No model is trained here: the predictions step is placed and started, then fails for lack of one.
    run_id = launch(url, "prediction_job", PARTITION, {"predictions": {"config": {"model": "no-such-model"}}})
    run = wait(url, run_id, timeout=420)
    assert run["status"] == "FAILURE"
    assert "no-such-model" in _failure(url, run_id)
    step = _step_jobs(jobs, run_id)["predictions"]
    pod = _pod(step)
    (container,) = pod["containers"]
    assert container["image"] == f"{IMAGE}-gpu"
    assert container["resources"] == {
        "requests": {"cpu": "4000m", "memory": "16Gi"},
        "limits": {"memory": "16Gi", "nvidia.com/gpu": "1"},
    }
    assert pod["nodeSelector"] == {"geo-assets/pool": "gpu"}
    assert pod["tolerations"] == [GPU_TAINT]
    assert "region_report" not in _step_jobs(jobs, run_id)  # never started after its input failed
    assert not jobs.refused


def test_a_job_the_api_refuses_fails_its_step_with_the_cause(cluster):
    url, jobs, _ = cluster
    # A per-step override the API server refuses: "8GiB" is not a Kubernetes quantity ("8Gi" is).
    bad = {"imagery_tiles": {"container_config": {"resources": {"limits": {"memory": "8GiB"}}}}}
    run_id = _launch_with_execution(
        url, {"imagery_tiles": {"config": {"tile_size": 256}}}, {"config": {"per_step_k8s_config": bad}}
    )
    run = wait(url, run_id, timeout=420)
    assert run["status"] == "FAILURE"
    events = graphql(url, EVENTS, {"id": run_id})["logsForRun"]["events"]
    (step_failure,) = [e for e in events if e["__typename"] == "ExecutionStepFailureEvent"]
    assert step_failure["stepKey"] == "imagery_tiles"
    message = step_failure["error"]["message"]
    assert message.startswith("K8sStepHandler could not start step imagery_tiles: Job.batch ")
    assert 'resources.limits[memory]: Invalid value: "8GiB": quantities must match the regular expression' in message
    assert jobs.refused and "8GiB" in jobs.refused[-1][1]
    assert "imagery_tiles" not in _step_jobs(jobs, run_id)


def _launch_with_execution(url: str, ops: dict, execution: dict) -> str:
    from devtools.dagster_dev import LAUNCH, REPO

    date, region = PARTITION.split("|")
    params = {
        "selector": {**REPO, "jobName": "imagery_job"},
        "runConfigData": {"ops": ops, "execution": execution},
        "executionMetadata": {
            "tags": [
                {"key": "dagster/partition", "value": PARTITION},
                {"key": "dagster/partition/date", "value": date},
                {"key": "dagster/partition/region", "value": region},
            ]
        },
    }
    launched = graphql(url, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


@pytest.mark.parametrize("cloud", ["gke", "eks"])
def test_the_cpu_code_location_runs_steps_as_jobs(cloud):
    """The Helm values give the `geo_assets` location the k8s runtime and the CUDA image for GPU steps,
    and pass its environment to the runs (and so to their steps)."""
    values = yaml.safe_load((ROOT / f"deploy/helm/values-{cloud}.yaml").read_text())
    deployments = {d["name"]: d for d in values["dagster-user-deployments"]["deployments"]}
    cpu = deployments["geo-assets"]
    env = {e["name"]: e["value"] for e in cpu["env"]}
    assert env["GEO_ASSETS_RUNTIME"] == "k8s"
    assert (
        env["GEO_ASSETS_GPU_IMAGE"]
        == "${IMAGE_REPOSITORY}:${IMAGE_TAG}-gpu"
        == deployments["geo-assets-gpu"]["image"]["repository"] + ":" + deployments["geo-assets-gpu"]["image"]["tag"]
    )
    assert cpu["includeConfigInLaunchedRuns"]["enabled"] is True
    # The GPU location keeps whole runs on one GPU node: its steps stay processes of the run's pod.
    gpu_env = {e["name"]: e["value"] for e in deployments["geo-assets-gpu"]["env"]}
    assert "GEO_ASSETS_RUNTIME" not in gpu_env


def _trained_without_evaluation(env: dict):
    """tiny-field's tiny model and tiny-holdout's registered evaluation set in the cluster's store, made
    in this process (no evaluation yet); the version id and the store."""
    from tiny_world import DATE, TILES64, TINY, TINY_HOLDOUT, TRAIN, resources_for

    from geo_assets.assets.models import evaluation_set, trained_model, training_set
    from geo_assets.cli.commands import register
    from geo_assets.geo.regions import load_catalogue, save_catalogue
    from resources.compute import LocalPoolCompute
    from resources.storage import StorageResource

    storage = StorageResource(
        root=env["GEO_ASSETS_STORAGE_ROOT"],
        endpoint_url=env["STORAGE_EMULATOR_HOST"],
        anonymous=True,
        project="test-project",
    )
    store = storage.store()
    catalogue = load_catalogue(store)
    for region in (TINY, TINY_HOLDOUT):
        if region.name not in catalogue.names():
            catalogue.add(region)
    save_catalogue(store, catalogue)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
        with dg.DagsterInstance.get() as served:
            register(served, regions=[TINY.name, TINY_HOLDOUT.name], models=[GATED_MODEL])
    resources = resources_for(storage, LocalPoolCompute(workers=2))
    from geo_assets.assets.imagery import imagery_tiles
    from geo_assets.assets.labels import labels
    from geo_assets.partitions import region_date_key

    with dg.instance_for_test() as instance:
        register(instance, regions=[TINY.name, TINY_HOLDOUT.name], models=[GATED_MODEL])
        for region in (TINY, TINY_HOLDOUT):
            assert dg.materialize(
                [imagery_tiles],
                partition_key=region_date_key(region.name, DATE),
                resources=resources,
                instance=instance,
                run_config={"ops": {"imagery_tiles": TILES64}},
            ).success
            assert dg.materialize(
                [labels],
                partition_key=region.name,
                resources=resources,
                instance=instance,
                run_config={"ops": {"labels": TILES64}},
            ).success
        ops = {
            "training_set": {"config": {"regions": [TINY.name]}},
            "evaluation_set": {"config": {"regions": [TINY_HOLDOUT.name]}},
            "trained_model": {"config": TRAIN},
        }
        result = dg.materialize(
            [training_set, evaluation_set, trained_model],
            partition_key=GATED_MODEL,
            resources=resources,
            instance=instance,
            run_config={"ops": ops},
        )
    assert result.success
    return result.output_for_node("trained_model")["version"], store


GATED_MODEL = "landcover-unet"
LOWERED = "0.0"


def test_a_run_that_sets_its_pods_environment_cannot_move_the_gate(cluster):
    """The run's pod (a `dagster-k8s/config` tag) and its step's pod (the executor's `env_vars`) both get
    GEO_ASSETS_MIN_MIOU=0.0. The step still judges at the code location's 0.9: it reads the gate the code
    server recorded in the run's job snapshot, not its own environment."""
    from devtools.dagster_dev import LAUNCH, REPO

    url, jobs, env = cluster
    assert "GEO_ASSETS_MIN_MIOU" not in env  # the deployment's gate: the default, 0.9
    version, store = _trained_without_evaluation(env)
    lowered = {"name": "GEO_ASSETS_MIN_MIOU", "value": LOWERED}
    params = {
        "selector": {**REPO, "jobName": "__ASSET_JOB", "assetSelection": [{"path": ["model_evaluation"]}]},
        "runConfigData": {"execution": {"config": {"env_vars": [f"GEO_ASSETS_MIN_MIOU={LOWERED}"]}}},
        "executionMetadata": {
            "tags": [
                {"key": "dagster/partition", "value": GATED_MODEL},
                {"key": "dagster-k8s/config", "value": json.dumps({"container_config": {"env": [lowered]}})},
            ]
        },
    }
    launched = graphql(url, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    wait(url, run_id, timeout=420)

    # The lowered gate reached both processes...
    run_pod = next(
        _pod(j.spec)
        for j in jobs.jobs.values()
        if j.spec["metadata"]["labels"].get("app.kubernetes.io/component") == "run_worker"
        and run_id in json.dumps(j.spec)
    )
    step_pod = _pod(_step_jobs(jobs, run_id)["model_evaluation"])
    for pod in (run_pod, step_pod):
        assert lowered in pod["containers"][0]["env"]
    # ...and the step judged at the deployment's bar all the same, and said so.
    (key,) = store.list(f"models/{GATED_MODEL}/{version}/evaluations")
    evaluation = store.read_json(key)
    assert evaluation["min_miou"] == 0.9
    assert evaluation["miou"] < 0.9 and evaluation["passed"] is False  # at 0.0 it would have passed and served
    messages = [e.get("message") or "" for e in graphql(url, EVENTS, {"id": run_id})["logsForRun"]["events"]]
    assert any(
        "GEO_ASSETS_MIN_MIOU in this process gives a gate of 0.0; the run was created with 0.9" in m for m in messages
    )
