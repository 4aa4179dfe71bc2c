"""The quality gate: a deployment setting, never run config, so no run can lower the bar it is judged by."""

import os

import dagster as dg
from pydantic import Field

MIN_MIOU_ENV = "GEO_ASSETS_MIN_MIOU"
DEFAULT_MIN_MIOU = 0.90


class ModelGate(dg.ConfigurableResource):
    """A model version serves predictions only once an evaluation on held-out ground reached `min_miou`."""

    min_miou: float = Field(default=DEFAULT_MIN_MIOU, ge=0.0, le=1.0)


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
