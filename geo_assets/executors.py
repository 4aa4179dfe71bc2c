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

On the `process` runtime the run worker records itself in a run tag before its first step
(geo_assets/run_launcher.py), so run monitoring can tell a lost worker from a busy one; its step
processes die with it (resources/step_process.py).

When the cluster's API refuses a step's Job or task (a spec it finds invalid, a task definition it
does not know), dagster-k8s and dagster-aws raise in the orchestrator and the whole run fails with
a generic message. Here that step fails instead, with the API's own words in its one message, and
the rest of the run goes on as after any step failure.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import dagster as dg
from dagster._core.events import DagsterEvent
from dagster._core.execution.plan.objects import StepFailureData
from dagster._core.executor.base import Executor
from dagster._core.executor.step_delegating import (
    CheckStepHealthResult,
    StepDelegatingExecutor,
    StepHandler,
    StepHandlerContext,
)
from dagster._utils.error import SerializableErrorInfo

from geo_assets.run_launcher import record_worker
from resources.profiles import get_runtime


class _RefusalFailsTheStep(StepHandler):
    """Delegates to a cluster's step handler; a launch the API refuses becomes that step's failure."""

    def __init__(
        self, inner: StepHandler, refused: tuple[type[BaseException], ...], explain: Callable[[BaseException], str]
    ):
        super().__init__()
        self._inner, self._refused_types, self._explain = inner, refused, explain
        self._refused: set[str] = set()

    @property
    def name(self) -> str:
        return self._inner.name

    def launch_step(self, step_handler_context: StepHandlerContext) -> Iterator[DagsterEvent]:
        (step_key,) = _step_keys(step_handler_context)
        try:
            yield from self._inner.launch_step(step_handler_context)
        except self._refused_types as e:
            self._refused.add(step_key)
            message = f"{self._inner.name} could not start step {step_key}: {self._explain(e)}"
            error = SerializableErrorInfo(message=message, stack=[], cls_name=type(e).__name__)
            yield DagsterEvent.step_failure_event(
                step_handler_context.get_step_context(step_key),
                StepFailureData(error=error, user_failure_data=None),
                message=message,
            )

    def check_step_health(self, step_handler_context: StepHandlerContext) -> CheckStepHealthResult:
        (step_key,) = _step_keys(step_handler_context)
        if step_key in self._refused:  # its failure is already recorded
            return CheckStepHealthResult.healthy()
        return self._inner.check_step_health(step_handler_context)

    def terminate_step(self, step_handler_context: StepHandlerContext):
        return self._inner.terminate_step(step_handler_context)


def _step_keys(step_handler_context: StepHandlerContext) -> Sequence[str]:
    keys = step_handler_context.execute_step_args.step_keys_to_execute
    assert keys is not None  # a step handler is given the step it launches
    return keys


def _kubernetes_reason(e: BaseException) -> str:
    """The API server's message (e.g. `Job.batch "x" is invalid: ...`), else the client's."""
    api: Any = getattr(e, "k8s_api_exception", None) or e  # the Kubernetes client's ApiException (untyped)
    try:
        return json.loads(api.body)["message"]
    except (AttributeError, TypeError, ValueError, KeyError):
        return str(api)


def _creation_fn(executor: dg.ExecutorDefinition) -> Callable:
    creation = executor.executor_creation_fn
    assert creation is not None  # every executor Dagster defines creates its executor
    return creation


def _explaining(
    executor: dg.ExecutorDefinition, refused: tuple[type[BaseException], ...], explain
) -> dg.ExecutorDefinition:
    """`executor` with its step handler wrapped (same name, config and requirements)."""

    def create(init_context):
        created = cast(
            StepDelegatingExecutor, _creation_fn(executor)(init_context)
        )  # a cluster's executor delegates steps
        created._step_handler = _RefusalFailsTheStep(created._step_handler, refused, explain)  # noqa: SLF001
        return created

    return dg.ExecutorDefinition(
        name=executor.name,
        config_schema=executor.config_schema,  # type: ignore[arg-type]  # the definition's processed schema, which it accepts
        requirements=executor.get_requirements,
        executor_creation_fn=create,
        description=executor.description,
    )


class _RecordsItsWorker(Executor):
    """Delegates to `inner`, once the run worker has recorded itself for run monitoring."""

    def __init__(self, inner: Executor):
        self._inner = inner

    @property
    def retries(self):
        return self._inner.retries

    @property
    def step_dependency_config(self):
        return self._inner.step_dependency_config

    def execute(self, plan_context, execution_plan):
        record_worker(plan_context.instance, plan_context.run_id)
        yield from self._inner.execute(plan_context, execution_plan)


def _recording_worker(executor: dg.ExecutorDefinition) -> dg.ExecutorDefinition:
    return dg.ExecutorDefinition(
        name=executor.name,
        config_schema=executor.config_schema,  # type: ignore[arg-type]  # the definition's processed schema, which it accepts
        requirements=executor.get_requirements,
        executor_creation_fn=lambda init_context: _RecordsItsWorker(_creation_fn(executor)(init_context)),
        description=executor.description,
    )


def executor_def(runtime: str | None = None) -> dg.ExecutorDefinition:
    runtime = runtime or get_runtime()
    if runtime == "k8s":
        from dagster_k8s import k8s_job_executor
        from dagster_k8s.client import DagsterK8sAPIRetryLimitExceeded, DagsterK8sUnrecoverableAPIError

        return _explaining(
            k8s_job_executor, (DagsterK8sUnrecoverableAPIError, DagsterK8sAPIRetryLimitExceeded), _kubernetes_reason
        )
    if runtime == "ecs":
        from dagster_aws.ecs import ecs_executor

        # RunTask refusals arrive as botocore's ClientError, tasks ECS could not place as Exception("Task ... failed").
        return _explaining(ecs_executor, (Exception,), str)
    return _recording_worker(dg.multiprocess_executor)
