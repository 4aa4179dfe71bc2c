"""trained_model as a Vertex AI custom job through Dagster Pipes.

The control plane is a local stand-in (tests/pipes/fake_vertex.py) that records the exact REST
requests and runs the job's container command as a local process; everything else is real: the
Pipes context and messages travel through a GCS API server (fake-gcs-server), the job runs
`python -m geo_assets.remote_training` and reads and writes the data bucket itself.
"""

import os
import signal
import threading
import time

import pytest
from dagster_pipes import decode_param
from fake_vertex import running_fake_vertex
from pipes_support import MODEL, PIPES_BUCKET, job_env, train, train_twice_and_compare

from geo_assets.cli.demo import failure_message
from resources.training import VertexTraining

PROJECT, REGION = "geo-assets-test", "europe-west4"
SERVICE_ACCOUNT = "geo-assets-training@geo-assets-test.iam.gserviceaccount.com"
IMAGE = "europe-west4-docker.pkg.dev/geo-assets-test/geo-assets/geo-assets-gpu:0123abc"


@pytest.fixture
def vertex(tmp_path):
    with running_fake_vertex(tmp_path, job_env()) as fake:
        yield fake


def _vertex(fake, **overrides) -> VertexTraining:
    settings = dict(
        project=PROJECT,
        region=REGION,
        image=IMAGE,
        machine_type="g2-standard-8",
        accelerator_type="NVIDIA_L4",
        accelerator_count=1,
        service_account=SERVICE_ACCOUNT,
        pipes_bucket=PIPES_BUCKET,
        api_endpoint=fake.url,
        anonymous=True,
        poll_interval=0.2,
        message_interval=1.0,
    )
    return VertexTraining(**{**settings, **overrides})


def test_vertex_training_equals_in_process_training(gcs_storage, instance, vertex):
    remote, record, remote_meta = train_twice_and_compare(gcs_storage, _vertex(vertex), instance)
    assert remote_meta["training"] == "vertex"
    (job_name,) = vertex.jobs
    assert remote_meta["vertex_job"] == job_name == f"projects/{PROJECT}/locations/{REGION}/customJobs/1"
    assert (remote_meta["machine_type"], remote_meta["accelerators"]) == ("g2-standard-8", "1 x NVIDIA_L4")

    # The exact CreateCustomJob request.
    create, *polls = vertex.requests
    assert (create.method, create.path) == ("POST", f"/v1/projects/{PROJECT}/locations/{REGION}/customJobs")
    container = create.body["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]
    env = {e["name"]: e["value"] for e in container.pop("env")}
    run = instance.get_run_by_id(remote.run_id)
    assert create.body == {
        "displayName": f"geo-assets-train-{MODEL}-{remote.run_id[:8]}",
        "labels": {
            "geo-assets-model": MODEL,
            "dagster-run-id": remote.run_id,
            "dagster-job": run.job_name.lower(),
            "dagster-partition": MODEL,
        },
        "jobSpec": {
            "workerPoolSpecs": [
                {
                    "machineSpec": {
                        "machineType": "g2-standard-8",
                        "acceleratorType": "NVIDIA_L4",
                        "acceleratorCount": 1,
                    },
                    "replicaCount": "1",
                    "containerSpec": {
                        "imageUri": IMAGE,
                        "args": [],
                        "command": [
                            "python",
                            "-m",
                            "geo_assets.remote_training",
                            "--messages",
                            "gcs",
                            "--interval",
                            "1",
                        ],
                    },
                }
            ],
            "scheduling": {"timeout": "86400s"},
            "serviceAccount": SERVICE_ACCOUNT,
        },
    }
    # The Pipes bootstrap parameters: context and messages in the Pipes bucket, stdout/stderr with the messages.
    assert set(env) == {"DAGSTER_PIPES_CONTEXT", "DAGSTER_PIPES_MESSAGES"}
    context, messages = decode_param(env["DAGSTER_PIPES_CONTEXT"]), decode_param(env["DAGSTER_PIPES_MESSAGES"])
    assert context["bucket"] == PIPES_BUCKET and context["key"].endswith("/context.json")
    assert messages == {"bucket": PIPES_BUCKET, "key_prefix": messages["key_prefix"], "include_stdio_in_messages": True}

    # GetCustomJob polled until a terminal state, then nothing more.
    assert polls and all((p.method, p.path) == ("GET", f"/v1/{job_name}") for p in polls)
    assert vertex.job_body(job_name)["state"] == "JOB_STATE_SUCCEEDED"

    # The job's messages came through the bucket, and its log lines reached the step's log.
    bucket = vertex_bucket_keys(gcs_storage, messages["key_prefix"])
    assert bucket and all(k.endswith(".json") for k in bucket)
    logs = [e.message for e in instance.all_logs(remote.run_id) if e.message]
    assert any(m.startswith("epoch 2/2: loss") for m in logs)
    assert any(m.startswith(f"stored version {record['version']} of {MODEL}") for m in logs)


def vertex_bucket_keys(storage, key_prefix: str) -> list[str]:
    from google.cloud import storage as gcs

    return [b.name for b in gcs.Client(project="test-project").list_blobs(PIPES_BUCKET, prefix=key_prefix)]


def _delete_a_training_tile(store) -> str:
    """Make the job's training fail where only the job sees it: a tile its training set lists is gone."""
    item = store.read_json(f"manifests/training_set/{MODEL}.json")["items"][0]
    tile = store.read_json(item["imagery"])["tiles"][0]["path"]
    store.delete(tile)
    return tile


def test_a_failed_job_fails_the_step_with_vertex_error_and_the_training_exception(gcs_storage, instance, vertex):
    store = gcs_storage.store()
    tile = _delete_a_training_tile(store)
    stored = lambda: [k for top in ("imagery", "labels", "manifests", "models") for k in store.list(top)]  # noqa: E731
    before = stored()
    cpu_only = _vertex(vertex, machine_type="n1-standard-4", accelerator_type=None, accelerator_count=0)
    vertex.get_errors = [503]  # a passing fault while polling is retried
    result = train(gcs_storage, cpu_only, instance)
    assert not result.success
    (job_name,) = vertex.jobs
    assert not vertex.get_errors and [r.method for r in vertex.requests].count("GET") >= 2
    message = failure_message(result)
    assert message.startswith(
        f"resources.training.RemoteTrainingError: remote training on Vertex AI failed: custom job {job_name}: ended JOB_STATE_FAILED: "
        "The replica workerpool0-0 exited with a non-zero status of 1."
    ), message
    assert message.endswith(
        f"; the training raised geo_assets.geo.cog.CorruptRasterError: cannot read raster "
        f"/vsigs/{store.bucket}/{store.prefix}/{tile}: HTTP response code: 404"
    ), message
    assert stored() == before  # nothing stored, nothing lost
    create = vertex.requests[0]
    assert create.body["jobSpec"]["workerPoolSpecs"][0]["machineSpec"] == {"machineType": "n1-standard-4"}
    assert vertex.job_body(job_name)["state"] == "JOB_STATE_FAILED"


def test_an_interrupted_step_cancels_its_job(gcs_storage, instance, vertex):
    def interrupt_once_running():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if any(j.state == "JOB_STATE_RUNNING" for j in list(vertex.jobs.values())):
                os.kill(os.getpid(), signal.SIGINT)  # what `dagster` and the run launchers send a step
                return
            time.sleep(0.05)

    threading.Thread(target=interrupt_once_running, daemon=True).start()
    result = train(gcs_storage, _vertex(vertex), instance)
    assert not result.success
    (job_name,) = vertex.jobs
    assert ("POST", f"/v1/{job_name}:cancel") in [(r.method, r.path) for r in vertex.requests]
    assert vertex.jobs[job_name].process.wait(timeout=30) is not None  # the replica was stopped
    assert vertex.job_body(job_name)["state"] == "JOB_STATE_CANCELLED"
    logs = [e.message for e in instance.all_logs(result.run_id) if e.message]
    assert f"[pipes] step interrupted: cancelling Vertex AI custom job {job_name}" in logs
    assert not gcs_storage.store().list("models")


def test_a_gpu_device_without_accelerators_is_refused_before_any_job(gcs_storage, instance, vertex):
    cpu_only = _vertex(vertex, accelerator_type=None, accelerator_count=0)
    result = train(gcs_storage, cpu_only, instance, device="cuda")
    assert failure_message(result) == (
        "ValueError: trained_model config asks for device 'cuda', but Vertex AI training has 0 GPU(s) "
        "(accelerator_count); use device 'auto' or 'cpu', or give the job GPUs"
    )
    assert vertex.requests == []


def test_the_api_refusing_a_job_is_the_step_error(gcs_storage, instance, vertex):
    result = train(
        gcs_storage, _vertex(vertex, image="registry.invalid/x:1", api_endpoint=vertex.url + "/wrong"), instance
    )
    assert failure_message(result) == (
        f"resources.vertex.VertexApiError: Vertex AI POST projects/{PROJECT}/locations/{REGION}/"
        f"customJobs: HTTP 404: /wrong/v1/projects/{PROJECT}/locations/{REGION}/customJobs not found"
    )
    assert not vertex.jobs


def test_a_job_that_can_no_longer_be_watched_is_cancelled(gcs_storage, instance, vertex):
    vertex.get_errors = [403]  # not a passing fault: the step cannot follow its job any more
    result = train(gcs_storage, _vertex(vertex), instance)
    (job_name,) = vertex.jobs
    assert failure_message(result) == (
        f"resources.vertex.VertexApiError: Vertex AI GET {job_name}: HTTP 403: injected HTTP 403"
    )
    assert ("POST", f"/v1/{job_name}:cancel") in [(r.method, r.path) for r in vertex.requests]
    assert vertex.jobs[job_name].process.wait(timeout=30) is not None
    logs = [e.message for e in instance.all_logs(result.run_id) if e.message]
    assert any(
        m.startswith(f"[pipes] lost track of it (Vertex AI GET {job_name}: HTTP 403")
        and m.endswith(f"cancelling Vertex AI custom job {job_name}")
        for m in logs
    )
