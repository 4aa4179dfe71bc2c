"""Where steps run (geo_assets/executors.py) and what they ask for (geo_assets/assets/placement.py).

- The runtime is chosen per profile: `process` (multiprocess executor) by default everywhere, `k8s`
  on gcp and aws, `ecs` on aws; anything else is refused with the accepted values.
- On the local profile the multiprocess executor runs the graph on tiny regions with a step per
  process, steps of one run and of concurrent runs in parallel, while the `gpu` pool (limit 1) keeps
  any two GPU steps from overlapping: read from the steps' start and end events.
- Every asset carries its Kubernetes and ECS placement as op tags (tests/deploy/test_executors_k8s.py
  and test_executors_ecs.py build and send them through dagster-k8s and dagster-aws).
"""

from __future__ import annotations

import json
import subprocess
from itertools import combinations

import dagster as dg
import pytest
import yaml

from devtools.dagster_dev import BIN, LAUNCH, REPO, ROOT, dagster_dev, graphql, wait
from geo_assets.assets.placement import NEEDS, POOL_LABEL, op_tags
from geo_assets.executors import executor_def
from geo_assets.geo.regions import Region, load_catalogue, save_catalogue
from geo_assets.geo.store import Store
from resources.profiles import get_runtime

DATE = "2024-06-01"
# 2 x 2 tiles of 64 px at 10 m; the held-out region's ground does not touch the training region's.
TRAIN_REGION = Region(
    "exec-train", (400000.0, 5120000.0, 401280.0, 5121280.0), "EPSG:32631", "synthetic", "synthetic", (DATE,)
)
HOLDOUT_REGION = Region(
    "exec-holdout", (440320.0, 5120000.0, 441600.0, 5121280.0), "EPSG:32631", "synthetic", "synthetic", (DATE,)
)
TILES64 = {"config": {"tile_size": 64}}
TRAIN = {"architecture": "fcn", "epochs": 1, "chips_per_epoch": 16, "chip_size": 64, "batch_size": 8}
GPU_STEPS = {"trained_model", "model_evaluation", "predictions"}


@pytest.mark.parametrize(
    ("profile", "runtime", "executor"),
    [
        ("local", None, "multiprocess"),
        ("gcp", None, "multiprocess"),
        ("aws", None, "multiprocess"),
        ("gcp", "k8s", "k8s"),
        ("aws", "k8s", "k8s"),
        ("aws", "ecs", "ecs"),
        ("aws", "process", "multiprocess"),
    ],
)
def test_runtime_per_profile(profile, runtime, executor, monkeypatch):
    monkeypatch.setenv("GEO_ASSETS_PROFILE", profile)
    if runtime:
        monkeypatch.setenv("GEO_ASSETS_RUNTIME", runtime)
    else:
        monkeypatch.delenv("GEO_ASSETS_RUNTIME", raising=False)
    assert executor_def().name == executor


@pytest.mark.parametrize(
    ("profile", "runtime", "accepted"),
    [
        ("local", "k8s", "process"),
        ("local", "ecs", "process"),
        ("gcp", "ecs", "process, k8s"),
        ("aws", "lambda", "process, ecs, k8s"),
    ],
)
def test_a_runtime_the_profile_cannot_use_is_refused(profile, runtime, accepted, monkeypatch):
    monkeypatch.setenv("GEO_ASSETS_PROFILE", profile)
    monkeypatch.setenv("GEO_ASSETS_RUNTIME", runtime)
    with pytest.raises(
        ValueError, match=f"GEO_ASSETS_RUNTIME='{runtime}' is not available on profile {profile}; accepted: {accepted}$"
    ):
        get_runtime()


def test_the_code_location_loads_with_the_chosen_executor():
    """The Definitions (every job) take the runtime's executor; a refused runtime stops the load."""
    env = {"GEO_ASSETS_PROFILE": "gcp", "GEO_ASSETS_STORAGE_ROOT": "gs://bucket/prefix", "GEO_ASSETS_RUNTIME": "k8s"}
    code = "from geo_assets.definitions import defs; print({j.executor_def.name for j in defs.get_repository_def().get_all_jobs()})"
    proc = subprocess.run(
        [BIN / "python", "-c", code], cwd=ROOT, env={**_env(), **env}, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "{'k8s'}"
    proc = subprocess.run(
        [BIN / "python", "-c", code],
        cwd=ROOT,
        env={**_env(), "GEO_ASSETS_RUNTIME": "ecs"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode != 0
    assert "GEO_ASSETS_RUNTIME='ecs' is not available on profile local; accepted: process" in proc.stderr


def test_every_asset_carries_its_placement():
    from geo_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        name = key.to_user_string()
        tags = node.assets_def.op.tags
        assert tags == op_tags(name), name
        k8s = json.loads(tags["dagster-k8s/config"])
        resources = k8s["container_config"]["resources"]
        gpu = name in GPU_STEPS
        assert (NEEDS[name].gpus > 0) == gpu
        # GPU steps: one GPU, the GPU pool's nodes and their taint, and the `gpu` concurrency pool.
        assert resources["limits"].get("nvidia.com/gpu") == ("1" if gpu else None), name
        assert k8s["pod_spec_config"]["node_selector"] == {POOL_LABEL: "gpu" if gpu else "cpu"}
        assert ("tolerations" in k8s["pod_spec_config"]) == gpu
        assert (node.pools == {"gpu"}) == gpu, name
        assert resources["requests"]["memory"] == resources["limits"]["memory"]
        assert (
            int(tags["ecs/cpu"]) == NEEDS[name].vcpu * 1024 and int(tags["ecs/memory"]) == NEEDS[name].memory_gib * 1024
        )
        # Without a GPU task definition, no ECS GPU request (Fargate has no GPUs and would refuse it).
        assert "ecs/container_overrides" not in tags


FARGATE_MEMORY_MIB = {256: (512, 2048), 512: (1024, 4096), 1024: (2048, 8192), 2048: (4096, 16384), 4096: (8192, 30720)}


def test_ecs_sizes_are_valid_fargate_sizes():
    """Fargate takes only some CPU and memory pairs (memory in 1 GiB steps within the CPU's range)."""
    for name in NEEDS:
        tags = op_tags(name)
        cpu, memory = int(tags["ecs/cpu"]), int(tags["ecs/memory"])
        low, high = FARGATE_MEMORY_MIB[cpu]
        assert low <= memory <= high and memory % 1024 == 0, (name, cpu, memory)


def test_gpu_image_and_ecs_gpu_task_definition_settings(monkeypatch):
    monkeypatch.setenv("GEO_ASSETS_GPU_IMAGE", "registry.invalid/geo-assets:abc-gpu")
    monkeypatch.setenv("GEO_ASSETS_ECS_GPU_TASK_DEFINITION", "geo-assets-gpu-step")
    gpu, cpu = op_tags("predictions"), op_tags("imagery_tiles")
    assert json.loads(gpu["dagster-k8s/config"])["container_config"]["image"] == "registry.invalid/geo-assets:abc-gpu"
    assert "image" not in json.loads(cpu["dagster-k8s/config"])["container_config"]
    assert json.loads(gpu["ecs/run_task_kwargs"]) == {"taskDefinition": "geo-assets-gpu-step", "launchType": "EC2"}
    assert json.loads(gpu["ecs/container_overrides"]) == {"resourceRequirements": [{"type": "GPU", "value": "1"}]}
    assert "ecs/run_task_kwargs" not in cpu


# --- the multiprocess executor on the local profile -------------------------------------------------


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("GEO_ASSETS_PROFILE", "GEO_ASSETS_RUNTIME")}


def _launch(url: str, job: str, tags: dict[str, str], run_config: dict) -> str:
    params = {
        "selector": {**REPO, "jobName": job},
        "runConfigData": run_config,
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
    }
    launched = graphql(url, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def _region_date(region: str) -> dict[str, str]:
    return {"dagster/partition": f"{DATE}|{region}", "dagster/partition/date": DATE, "dagster/partition/region": region}


def _run_all(url: str, instance: dg.DagsterInstance, launches: list[tuple[str, dict, dict]]) -> list[dg.DagsterRun]:
    """Launch each (job, partition tags, run config) at once through the instance's queue, and wait for all."""
    run_ids = [_launch(url, *launch) for launch in launches]
    for run_id in run_ids:
        wait(url, run_id, timeout=600)
    return [instance.get_run_by_id(r) for r in run_ids]


def _step_spans(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[float, float]]:
    """Each step's span: from the orchestrator starting its process (once it holds any pool slot) to its end."""
    starts, ends = {}, {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or not event.step_key:
            continue
        if event.event_type_value == "STEP_WORKER_STARTING":
            starts[event.step_key] = record.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            ends[event.step_key] = record.timestamp
    assert starts.keys() == ends.keys(), (starts, ends)
    return {k: (starts[k], ends[k]) for k in starts}


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


@pytest.fixture(scope="module")
def local_dev(tmp_path_factory):
    """`dagster dev` on the local profile: the embedded default's instance (dagster.yaml: the run queue,
    two runs at once) with a `gpu` pool of 1 slot, and a store holding two tiny regions."""
    from geo_assets.cli.commands import register

    tmp = tmp_path_factory.mktemp("exec-local")
    home = tmp / "home"
    home.mkdir()
    config = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    config["concurrency"]["pools"] = {"default_limit": 1, "granularity": "op"}
    config["storage"] = {"sqlite": {"base_dir": str(home)}}  # the same home, not read from this process's env
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    root = (tmp / "storage").as_uri()
    store = Store(root)
    catalogue = load_catalogue(store)
    catalogue.add(TRAIN_REGION)
    catalogue.add(HOLDOUT_REGION)
    save_catalogue(store, catalogue)
    env = {
        **_env(),
        "DAGSTER_HOME": str(home),
        "GEO_ASSETS_STORAGE_ROOT": root,
        "GEO_ASSETS_MIN_MIOU": "0",
        "GEO_ASSETS_WORKERS": "1",
    }
    with dg.DagsterInstance.from_config(str(home)) as instance:
        register(instance, regions=[TRAIN_REGION.name, HOLDOUT_REGION.name], models=["exec-a", "exec-b"])
        with dagster_dev(env, tmp / "dev.log") as url:
            yield url, instance


def test_multiprocess_runs_the_graph_with_steps_in_parallel_and_gpu_steps_one_at_a_time(local_dev):
    url, instance = local_dev
    # Both regions' imagery and labels: four one-step runs, two at a time (the queue's limit).
    tiles = {"ops": {"imagery_tiles": TILES64}}
    cut = _run_all(
        url,
        instance,
        [("imagery_job", _region_date(r.name), tiles) for r in (TRAIN_REGION, HOLDOUT_REGION)]
        + [
            ("labels_job", {"dagster/partition": r.name}, {"ops": {"labels": TILES64}})
            for r in (TRAIN_REGION, HOLDOUT_REGION)
        ],
    )
    assert [r.status for r in cut] == [dg.DagsterRunStatus.SUCCESS] * 4

    # Two models trained at once: each run's dataset steps in parallel; the GPU steps wait for the pool.
    training = {
        "ops": {
            "training_set": {"config": {"regions": [TRAIN_REGION.name]}},
            "evaluation_set": {"config": {"regions": [HOLDOUT_REGION.name]}},
            "trained_model": {"config": TRAIN},
        }
    }
    trained = _run_all(
        url, instance, [("training_job", {"dagster/partition": m}, training) for m in ("exec-a", "exec-b")]
    )
    assert [r.status for r in trained] == [dg.DagsterRunStatus.SUCCESS] * 2
    # The rest of the graph: predictions (a GPU step) and the report.
    predict = {
        "ops": {"predictions": {"config": {"model": "exec-a"}}, "region_report": {"config": {"model": "exec-a"}}}
    }
    (predicted,) = _run_all(url, instance, [("prediction_job", _region_date(HOLDOUT_REGION.name), predict)])
    assert predicted.status == dg.DagsterRunStatus.SUCCESS

    runs = [*cut, *trained, predicted]
    # Every step ran in a process of its own, started by the multiprocess executor.
    for run in runs:
        steps = {
            r.dagster_event.step_key
            for r in instance.all_logs(run.run_id)
            if r.dagster_event and r.dagster_event.step_key
        }
        started = {
            r.dagster_event.step_key
            for r in instance.all_logs(run.run_id)
            if r.dagster_event and r.dagster_event.event_type_value == "STEP_WORKER_STARTED"
        }
        assert steps and started == steps, (run.job_name, steps, started)
    spans = {run.run_id: _step_spans(instance, run.run_id) for run in runs}
    # Steps overlapped: the two dataset steps within each training run, and steps of concurrent runs.
    for run in trained:
        assert _overlap(spans[run.run_id]["training_set"], spans[run.run_id]["evaluation_set"]), spans[run.run_id]
    cut_spans = [s for run in cut for s in spans[run.run_id].values()]
    assert any(_overlap(a, b) for a, b in combinations(cut_spans, 2))
    # ... while no two GPU steps did, across all runs.
    gpu = [
        (f"{run_id[:8]}:{k}", s) for run_id, run_spans in spans.items() for k, s in run_spans.items() if k in GPU_STEPS
    ]
    assert len(gpu) == 5
    for (a, sa), (b, sb) in combinations(gpu, 2):
        assert not _overlap(sa, sb), (a, sa, b, sb)
    # ... because steps waited for the pool's one slot.
    blocked = [
        r
        for run in [*trained, predicted]
        for r in instance.all_logs(run.run_id)
        if r.dagster_event and "blocked by limit for pool gpu" in (r.dagster_event.message or "")
    ]
    assert blocked and {r.dagster_event.step_key for r in blocked} <= GPU_STEPS
