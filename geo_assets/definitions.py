"""The code location: one Definitions, its resources and executor chosen by the GEO_ASSETS_PROFILE profile."""

import dagster as dg

from geo_assets.assets.imagery import imagery_tiles
from geo_assets.assets.labels import labels
from geo_assets.assets.models import evaluation_set, model_evaluation, trained_model, training_set
from geo_assets.assets.predictions import predictions
from geo_assets.assets.reports import region_report
from geo_assets.executors import executor_def
from geo_assets.jobs import JOBS
from geo_assets.map.links import map_base_url
from geo_assets.triggers.automation import AUTOMATION
from geo_assets.triggers.schedules import SCHEDULES
from geo_assets.triggers.sensors import SENSORS
from resources.profiles import resource_defs

__all__ = ["ASSETS", "defs"]

map_base_url()  # a bad GEO_ASSETS_MAP_URL stops the load, naming it, not every run at its end

ASSETS = [
    imagery_tiles,
    labels,
    training_set,
    evaluation_set,
    trained_model,
    model_evaluation,
    predictions,
    region_report,
]

defs = dg.Definitions(
    assets=ASSETS,
    jobs=JOBS,
    sensors=[*SENSORS, *AUTOMATION],
    schedules=SCHEDULES,
    resources=resource_defs(),
    executor=executor_def(),
)
