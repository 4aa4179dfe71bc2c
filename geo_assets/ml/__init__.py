"""Pure machine-learning code: models, training, inference, metrics. Never imports dagster."""
