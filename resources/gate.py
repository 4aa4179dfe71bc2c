"""The quality gate: a deployment setting, never run config, so no run can lower the bar it is judged by.

A `ConfigurableResource`'s fields are run config: any run could pass
`{"resources": {"gate": {"config": {"min_miou": 0.0}}}}` from the launchpad, GraphQL, the CLI, a
sensor or a schedule. So the gate is a resource definition with an empty config schema: Dagster
refuses any `config` for it before a run starts, and the threshold comes from GEO_ASSETS_MIN_MIOU,
read when the code location loads. Assets take it as `dg.ResourceParam[ModelGate]`.
"""

import math
import os

import dagster as dg

MIN_MIOU_ENV = "GEO_ASSETS_MIN_MIOU"
DEFAULT_MIN_MIOU = 0.90


class ModelGate(dg.ResourceDefinition):
    """A model version serves predictions only once an evaluation on its registered held-out set reached
    `min_miou`. The definition is its own resource value, so a step sees the threshold it was built with."""

    def __init__(self, min_miou: float = DEFAULT_MIN_MIOU):
        if not (isinstance(min_miou, (int, float)) and math.isfinite(min_miou) and 0.0 <= min_miou <= 1.0):
            raise ValueError(f"min_miou must be a number between 0 and 1, got {min_miou!r}")
        self.min_miou = float(min_miou)
        super().__init__(
            resource_fn=lambda _: self,
            config_schema={},  # no fields: a run that passes any is refused before it starts
            description=f"quality gate: min mIoU {self.min_miou} (set by {MIN_MIOU_ENV} where the code location "
                        "loads; no run can change it)",
        )


def gate_from_env() -> ModelGate:
    raw = os.environ.get(MIN_MIOU_ENV)
    if not raw:
        return ModelGate()
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:  # also refuses nan and inf
        raise ValueError(f"{MIN_MIOU_ENV}={raw!r}: must be a number between 0 and 1")
    return ModelGate(min_miou=value)
