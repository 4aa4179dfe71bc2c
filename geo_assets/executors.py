"""Where a run's steps execute, per profile (GEO_ASSETS_RUNTIME, checked by resources/profiles.py).

    process  each step in a process of its own beside the run worker (`multiprocess_executor`): the
             default on every profile; needs no cluster (a laptop, a VM, the pod or task of a run)
    k8s      each step a Kubernetes Job (`k8s_job_executor`), on GKE (gcp) or EKS (aws); the instance
             launches runs with the K8sRunLauncher, whose namespace, service account and environment
             the steps inherit
    ecs      each step an ECS task (`ecs_executor`) on aws; the instance launches runs with the
             EcsRunLauncher, whose task definition and network the steps inherit

What each step asks of the cluster (CPU, memory, a GPU node) is in the op tags of
geo_assets/assets/placement.py. The `gpu` pool of the GPU steps caps them on every runtime.
`execute_in_process` (the demo, the tests) runs in one process whatever is chosen here.
"""

import dagster as dg

from resources.profiles import get_runtime


def executor_def(runtime: str | None = None) -> dg.ExecutorDefinition:
    runtime = runtime or get_runtime()
    if runtime == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    if runtime == "ecs":
        from dagster_aws.ecs import ecs_executor

        return ecs_executor
    return dg.multiprocess_executor
