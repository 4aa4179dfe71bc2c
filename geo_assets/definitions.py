"""The code location: one Definitions, its resources chosen by the GEO_ASSETS_PROFILE profile."""

import dagster as dg

from geo_assets.assets.imagery import imagery_tiles
from geo_assets.assets.labels import labels
from geo_assets.assets.models import model_evaluation, trained_model
from geo_assets.assets.predictions import predictions
from geo_assets.assets.reports import region_report
from geo_assets.jobs import JOBS
from resources.profiles import resource_defs

ASSETS = [imagery_tiles, labels, trained_model, model_evaluation, predictions, region_report]

defs = dg.Definitions(assets=ASSETS, jobs=JOBS, resources=resource_defs())
