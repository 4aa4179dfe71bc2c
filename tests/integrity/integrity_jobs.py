"""A reconstructable job for re-execution tests: predictions alone, in process, on the local profile's
resources (the storage root and compute from the environment)."""

import dagster as dg


def prediction_job() -> dg.JobDefinition:
    from geo_assets.assets.imagery import imagery_tiles
    from geo_assets.assets.predictions import predictions
    from resources.profiles import resource_defs

    job = dg.define_asset_job("predict", selection=["predictions"], executor_def=dg.in_process_executor)
    defs = dg.Definitions(assets=[imagery_tiles, predictions], resources=resource_defs("local"), jobs=[job])
    return defs.resolve_job_def("predict")
