"""The quality gate: a deployment setting, never run config, so no run can lower the bar it is judged by.

A `ConfigurableResource`'s fields are run config: any run could pass
`{"resources": {"gate": {"config": {"min_miou": 0.0}}}}` from the launchpad, GraphQL, the CLI, a
sensor or a schedule. So the gate is a resource definition with an empty config schema: Dagster
refuses any `config` for it before a run starts, and the threshold comes from GEO_ASSETS_MIN_MIOU,
read when the code location loads. Assets take it as `dg.ResourceParam[ModelGate]`.

Where runs or steps get processes of their own (the K8sRunLauncher or EcsRunLauncher, the `k8s` or
`ecs` runtimes), each process loads the code location again, and run config (`env_vars`,
`per_step_k8s_config`, `task_overrides`) or launcher tags (`dagster-k8s/config`,
`ecs/container_overrides`) can set its environment. So a step does not trust its own environment:
it takes the threshold the code server recorded in the run's job snapshot when the run was created
(the snapshot comes from the code location, never from the launch request), and warns when its own
environment says otherwise. This holds against a run's environment, not against a run allowed to
change its pod's image or command (deploy/README, "Access and threat model").
"""

import math
import re

import dagster as dg

from geo_assets.settings import by_name

MIN_MIOU = by_name("GEO_ASSETS_MIN_MIOU")
MIN_MIOU_ENV, DEFAULT_MIN_MIOU = MIN_MIOU.name, MIN_MIOU.default
# The resource's description carries the threshold into every job snapshot (ResourceDefSnap holds only a
# name, a description and a config schema); `recorded_min_miou` reads it back.
_DESCRIPTION = (
    "quality gate: min mIoU {!r} (set by " + MIN_MIOU_ENV + " where the code location loads; no run can change it)"
)
_RECORDED = re.compile(r"^quality gate: min mIoU ([0-9.eE+-]+) \(set by ")


def _check(min_miou) -> float:
    if not (isinstance(min_miou, (int, float)) and math.isfinite(min_miou) and 0.0 <= min_miou <= 1.0):
        raise ValueError(f"min_miou must be a number between 0 and 1, got {min_miou!r}")
    return float(min_miou)


class ModelGate(dg.ResourceDefinition):
    """A model version serves predictions only once an evaluation on its registered held-out set reached
    `min_miou`. In a run, the resource's value is the gate recorded with the run (see the module's doc)."""

    def __init__(self, min_miou: float = DEFAULT_MIN_MIOU):
        self.min_miou = _check(min_miou)
        super().__init__(
            resource_fn=self._for_run,
            config_schema={},  # no fields: a run that passes any is refused before it starts
            description=_DESCRIPTION.format(self.min_miou),
        )

    def _for_run(self, context: dg.InitResourceContext) -> "ModelGate":
        recorded = recorded_min_miou(context.instance, context.run)
        if recorded is None or recorded == self.min_miou:
            return self
        assert context.log is not None  # Dagster gives every run's resources its log
        context.log.warning(
            f"{MIN_MIOU_ENV} in this process gives a gate of {self.min_miou}; the run was created with "
            f"{recorded} by the code location, and that is the gate this step applies"
        )
        return ModelGate(recorded)


def recorded_min_miou(instance: dg.DagsterInstance | None, run: dg.DagsterRun | None) -> float | None:
    """The gate the code location recorded in `run`'s job snapshot; None without a run or a recorded gate
    (a run created before the gate was recorded keeps the process's own)."""
    if instance is None or run is None or not run.job_snapshot_id or not instance.has_job_snapshot(run.job_snapshot_id):
        return None
    snapshot = instance.get_job_snapshot(run.job_snapshot_id)
    found = {
        float(m.group(1))
        for mode in snapshot.mode_def_snaps
        for resource in mode.resource_def_snaps
        if (m := _RECORDED.match(resource.description or ""))
    }
    if len(found) > 1:  # one gate per code location; two would mean a snapshot this code did not make
        raise ValueError(f"run {run.run_id}'s job snapshot records more than one gate: {sorted(found)}")
    return _check(found.pop()) if found else None


def gate_from_env() -> ModelGate:
    return ModelGate(min_miou=MIN_MIOU.get())
