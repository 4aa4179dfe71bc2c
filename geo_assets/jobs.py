"""Jobs: one per stage, each a selection of the asset graph with one partitions definition."""

import dagster as dg

imagery_job = dg.define_asset_job(
    "imagery_job", selection=["imagery_tiles"], description="Cut a region's imagery for one date."
)
labels_job = dg.define_asset_job("labels_job", selection=["labels"], description="Make a region's training labels.")
training_job = dg.define_asset_job(
    "training_job",
    selection=["training_set", "evaluation_set", "trained_model", "model_evaluation"],
    description="Select the training and held-out sets, train a model version and gate it.",
)
datasets_job = dg.define_asset_job(
    "datasets_job",
    selection=["training_set", "evaluation_set"],
    description="Select training and held-out acquisitions again (the input_changes sensor runs it when they change).",
)
prediction_job = dg.define_asset_job(
    "prediction_job", selection=["predictions", "region_report"], description="Predict a region and date, and report."
)

JOBS = [imagery_job, labels_job, training_job, datasets_job, prediction_job]
