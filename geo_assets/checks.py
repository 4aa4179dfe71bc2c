"""Asset checks. The model quality gate runs inside model_evaluation, which yields its result."""

import dagster as dg

QUALITY_GATE = dg.AssetCheckSpec(
    "quality_gate",
    asset="model_evaluation",
    blocking=True,
    description="mIoU on held-out regions must reach the configured min_miou before a version serves predictions",
)
