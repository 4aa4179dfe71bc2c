"""Declarative automation, off until a team turns it on (UI: Automation; or `dagster sensor start`).

- `predictions_follow_serving_model`: predicts again the partitions that have predictions whenever a
  model is newly evaluated, which is when a version that passes the gate becomes the serving one
  (unless a promotion pins another). The condition is set on the predictions asset's decorator, so
  this module imports nothing of the project's: assets may import it.
"""

import dagster as dg

__all__ = ["AUTOMATION", "FOLLOW_SERVING_MODEL", "TRIGGER_TAG", "predictions_follow_serving_model"]

TRIGGER_TAG = "geo-assets/trigger"  # on a run: the schedule or sensor that asked for it

# Partitions that have predictions, whose model evaluations changed since the last tick; not while one runs.
FOLLOW_SERVING_MODEL = (
    dg.AutomationCondition.any_deps_match(dg.AutomationCondition.newly_updated()).allow(
        dg.AssetSelection.assets("model_evaluation")
    )
    & ~dg.AutomationCondition.missing()
    & ~dg.AutomationCondition.in_progress()
).with_label("a model was newly evaluated")

# The condition is set on the predictions asset (its decorator); this sensor, stopped by default, is
# what evaluates it, so nothing happens until a team starts it.
predictions_follow_serving_model = dg.AutomationConditionSensorDefinition(
    "predictions_follow_serving_model",
    target=dg.AssetSelection.assets("predictions"),
    default_status=dg.DefaultSensorStatus.STOPPED,
    run_tags={TRIGGER_TAG: "predictions_follow_serving_model"},
    description="Predict existing partitions again when a model is newly evaluated (a new serving version).",
)

AUTOMATION = [predictions_follow_serving_model]
