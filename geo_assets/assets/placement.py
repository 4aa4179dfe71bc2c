"""What each asset's step asks of the cluster when steps get pods or tasks of their own
(GEO_ASSETS_RUNTIME=k8s or ecs, geo_assets/executors.py): CPU and memory for every step, and a GPU
node for the GPU steps. The multiprocess and in-process executors ignore these tags.

Kubernetes (`dagster-k8s/config`): requests for CPU and memory, a memory limit (no CPU limit, so a
step is never throttled below what the node has spare), a node selector on the label
`geo-assets/pool` (`cpu` or `gpu`: put it on the node pools), and for GPU steps one
`nvidia.com/gpu`, the toleration of the GPU nodes' taint and, when GEO_ASSETS_GPU_IMAGE is set, the
CUDA image. ECS (`ecs/cpu`, `ecs/memory`, in CPU units and MiB; each pair is a valid Fargate size):
GPU steps go to the task definition named by GEO_ASSETS_ECS_GPU_TASK_DEFINITION, launched on the
cluster's EC2 GPU instances with one GPU; without it they run on Fargate without a GPU.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from geo_assets.settings import by_name
from resources.training import remote_training_chosen

POOL_LABEL = "geo-assets/pool"
GPU_TAINT = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


@dataclass(frozen=True)
class Needs:
    vcpu: float
    memory_gib: int
    gpus: int = 0


# Tile work fans out over threads inside a step; training and inference want the GPU.
NEEDS = {
    "imagery_tiles": Needs(vcpu=2, memory_gib=8),
    "labels": Needs(vcpu=1, memory_gib=4),
    "training_set": Needs(vcpu=0.5, memory_gib=1),
    "evaluation_set": Needs(vcpu=0.5, memory_gib=1),
    "trained_model": Needs(vcpu=4, memory_gib=16, gpus=1),
    "model_evaluation": Needs(vcpu=4, memory_gib=16, gpus=1),
    "predictions": Needs(vcpu=4, memory_gib=16, gpus=1),
    "region_report": Needs(vcpu=1, memory_gib=4),
}


# trained_model's step when its training runs as a remote job (GEO_ASSETS_TRAINING=vertex|ecs): it waits.
WAITING = Needs(vcpu=0.5, memory_gib=1)


def step_needs(asset: str) -> Needs:
    return WAITING if asset == "trained_model" and remote_training_chosen() else NEEDS[asset]


def gpu_pool(asset: str) -> str | None:
    """The `gpu` concurrency pool for the steps that use a GPU of the deployment's own nodes."""
    return "gpu" if step_needs(asset).gpus else None


def _k8s(needs: Needs) -> dict:
    cpu = f"{int(needs.vcpu * 1000)}m"
    memory = f"{needs.memory_gib}Gi"
    resources: dict = {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}}
    container: dict = {"resources": resources}
    pod: dict = {"node_selector": {POOL_LABEL: "gpu" if needs.gpus else "cpu"}}
    if needs.gpus:
        resources["limits"]["nvidia.com/gpu"] = str(needs.gpus)
        pod["tolerations"] = [GPU_TAINT]
        if image := by_name("GEO_ASSETS_GPU_IMAGE").get():
            container["image"] = image
    return {"container_config": container, "pod_spec_config": pod}


def _ecs(needs: Needs) -> dict[str, str]:
    tags = {"ecs/cpu": str(int(needs.vcpu * 1024)), "ecs/memory": str(needs.memory_gib * 1024)}
    if needs.gpus and (task_definition := by_name("GEO_ASSETS_ECS_GPU_TASK_DEFINITION").get()):
        tags["ecs/run_task_kwargs"] = json.dumps({"taskDefinition": task_definition, "launchType": "EC2"})
        tags["ecs/container_overrides"] = json.dumps(
            {"resourceRequirements": [{"type": "GPU", "value": str(needs.gpus)}]}
        )
    return tags


def op_tags(asset: str) -> dict[str, str]:
    """The op tags of `asset`'s step for both cluster runtimes (each executor reads its own)."""
    needs = step_needs(asset)
    return {"dagster-k8s/config": json.dumps(_k8s(needs)), **_ecs(needs)}
