"""The manifests' types (geo_assets.geo.manifests) as Dagster types: an asset that annotates its output
or input with one has it checked on the way out and in (a dict holding every required key), and the UI
names the type. Import the types from here, so the Dagster types are registered before an asset uses them.

Why a registration: Dagster makes a Python annotation a type check with `isinstance`, which a TypedDict
refuses; `make_python_type_usable_as_dagster_type` gives each manifest type its own check instead.
"""

import dagster as dg

from geo_assets.geo.manifests import DatasetManifest, ImageryManifest, LabelsManifest, PredictionsManifest
from resources.storage import PartitionManifests

__all__ = ["DatasetManifest", "ImageryManifest", "LabelsManifest", "PredictionsManifest"]


def _dagster_type(manifest: type) -> dg.DagsterType:
    required = sorted(manifest.__required_keys__)  # type: ignore[attr-defined]  # every TypedDict has it

    def lacking(value) -> str | None:
        if not isinstance(value, dict):
            return f"a {manifest.__name__} is a JSON object, got {type(value).__name__}"
        missing = [k for k in required if k not in value]
        return f"the {manifest.__name__} lacks {', '.join(missing)}" if missing else None

    def check(_context, value) -> dg.TypeCheck:
        # A run over a range of partitions outputs one manifest per partition (PartitionManifests).
        each = value.items() if isinstance(value, PartitionManifests) else [(None, value)]
        for partition, one in each:
            problem = lacking(one)
            if problem:
                return dg.TypeCheck(False, f"{problem} (partition {partition})" if partition else problem)
        return dg.TypeCheck(True)

    return dg.DagsterType(
        type_check_fn=check,
        name=manifest.__name__,
        description=f"{(manifest.__doc__ or '').strip() or manifest.__name__} Keys: {', '.join(required)}.",
        typing_type=dict,
    )


for _manifest in (DatasetManifest, ImageryManifest, LabelsManifest, PredictionsManifest):
    dg.make_python_type_usable_as_dagster_type(_manifest, _dagster_type(_manifest))
