"""The manifests' types (geo_assets.geo.manifests) as Dagster types: an asset that annotates its output
or input with one has it checked on the way out and in (a dict holding every required key), and the UI
names the type. Import the types from here, so the Dagster types are registered before an asset uses them.

Why a registration: Dagster makes a Python annotation a type check with `isinstance`, which a TypedDict
refuses; `make_python_type_usable_as_dagster_type` gives each manifest type its own check instead.
"""

import dagster as dg

from geo_assets.geo.manifests import DatasetManifest, ImageryManifest, LabelsManifest, PredictionsManifest

__all__ = ["DatasetManifest", "ImageryManifest", "LabelsManifest", "PredictionsManifest"]


def _dagster_type(manifest: type) -> dg.DagsterType:
    required = sorted(manifest.__required_keys__)  # type: ignore[attr-defined]  # every TypedDict has it

    def check(_context, value) -> dg.TypeCheck:
        if not isinstance(value, dict):
            return dg.TypeCheck(False, f"a {manifest.__name__} is a JSON object, got {type(value).__name__}")
        missing = [k for k in required if k not in value]
        if missing:
            return dg.TypeCheck(False, f"the {manifest.__name__} lacks {', '.join(missing)}")
        return dg.TypeCheck(True)

    return dg.DagsterType(
        type_check_fn=check,
        name=manifest.__name__,
        description=f"{(manifest.__doc__ or '').strip() or manifest.__name__} Keys: {', '.join(required)}.",
        typing_type=dict,
    )


for _manifest in (DatasetManifest, ImageryManifest, LabelsManifest, PredictionsManifest):
    dg.make_python_type_usable_as_dagster_type(_manifest, _dagster_type(_manifest))
