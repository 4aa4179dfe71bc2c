"""region_report: class areas, a preview and a short summary of one model version's predictions."""


import base64

import dagster as dg

from geo_assets.assets.common import digest, each_partition, output, tag_run
from geo_assets.config import DEFAULT_MODEL, ReportConfig
from geo_assets.geo.preview import class_colours, side_by_side_png, true_colour
from geo_assets.geo.store import ObjectNotFoundError
from geo_assets.ml import registry
from geo_assets.partitions import region_date_partitions
from resources.gate import ModelGate
from resources.storage import KEYED_BY_MODEL_VERSION, StorageResource, dims_path, model_manifest_key

CODE_VERSION = "1"


def _predicted_in_this_run(context: dg.AssetExecutionContext) -> dict[str, tuple[str, str]]:
    """Partition key -> (model, version) of the predictions this run materialised (read once per step)."""
    records = context.instance.get_records_for_run(
        context.run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    found = {}
    for record in records:
        event = record.event_log_entry.asset_materialization
        if event and event.asset_key == dg.AssetKey("predictions") and event.partition:
            found[str(event.partition)] = event.metadata["model"].value, event.metadata["version"].value
    return found


def _which_predictions(in_run: tuple[str, str] | None, config: ReportConfig, store, min_miou: float) -> tuple[str, str]:
    if in_run is not None:
        model, version = in_run
        found = {"model": model, "version": version}
        asked = {"model": config.model, "version": config.version}
        clash = {k: v for k, v in asked.items() if v is not None and v != found[k]}
        if clash:
            raise ValueError(
                f"region_report config asks for {clash}, but this run predicted with model {model} version {version}; "
                "report that version, or report another one in a run without predictions"
            )
        return model, version
    model = config.model or DEFAULT_MODEL
    version = config.version or registry.serving_version(store, model, min_miou)["version"]
    return model, version


@dg.asset(
    partitions_def=region_date_partitions,
    group_name="predictions",
    kinds={"python", "markdown"},
    code_version=CODE_VERSION,
    # Not an IO-manager input: which predictions to read depends on the model version, resolved below.
    deps=["predictions"],
    metadata={KEYED_BY_MODEL_VERSION: True},
    backfill_policy=dg.BackfillPolicy.single_run(),  # the same policy as predictions, so both share a backfill's runs
)
def region_report(
    context: dg.AssetExecutionContext,
    config: ReportConfig,
    storage: StorageResource,
    gate: ModelGate,
    imagery_tiles: dict,
) -> dg.Output[dict]:
    """Area per class in km², imagery beside prediction as a PNG, and a markdown summary."""
    predicted = _predicted_in_this_run(context)
    return each_partition(
        context,
        lambda region, date, imagery: _region_report(context, config, storage, gate, imagery, predicted, region, date),
        imagery_tiles,
    )


def _region_report(context, config: ReportConfig, storage, gate, imagery_tiles: dict, predicted: dict, region: str, date: str) -> dg.Output[dict]:
    store = storage.store()
    model, version = _which_predictions(predicted.get(f"{date}|{region}"), config, store, gate.min_miou)
    key = model_manifest_key("predictions", model, version, dims_path({"region": region, "date": date}))
    try:
        predictions = store.read_json(key)
    except ObjectNotFoundError:
        raise FileNotFoundError(
            f"no predictions of model {model} version {version} for {date}|{region}: materialise predictions "
            f"with config {{model: {model}, version: {version}}} first"
        ) from None
    tag_run(context, region=region, date=date, source=predictions["source"], model=model, model_version=version)
    pixel_km2 = predictions["resolution"] ** 2 / 1e6
    areas = {c: round(n * pixel_km2, 4) for c, n in predictions["class_counts"].items()}
    with store.env():
        rgb = true_colour([(store.path(t["path"]), t["bounds"]) for t in imagery_tiles["tiles"]], imagery_tiles["bands"])
        classes = class_colours(store.path(predictions["mosaic"]), rgb.shape[:2])
    png = side_by_side_png(rgb, classes)
    prefix = f"reports/{model}/{version}/{region}/{date}"
    store.write_bytes(f"{prefix}/preview.png", png)
    rows = "\n".join(f"| {c} | {a:.3f} |" for c, a in areas.items())
    summary = (
        f"# {region}, {date}\n\n"
        f"Model `{model}` version `{version}` on `{predictions['source']}` imagery, "
        f"{len(predictions['tiles'])} tiles, {imagery_tiles['crs']} at {predictions['resolution']:g} m.\n\n"
        f"| class | area (km²) |\n|---|---|\n{rows}\n"
    )
    store.write_bytes(f"{prefix}/report.md", summary.encode())
    image = f"![imagery and prediction](data:image/png;base64,{base64.b64encode(png).decode()})"
    manifest = {
        "region": region, "date": date, "model": model, "version": version, "predictions": key,
        "predictions_digest": digest(predictions),
        "areas_km2": areas, "preview": f"{prefix}/preview.png", "report": f"{prefix}/report.md",
    }
    return output(
        manifest,
        {
            "model": model,
            "version": version,
            "areas_km2": dg.MetadataValue.json(areas),
            "preview": dg.MetadataValue.md(summary + "\n" + image),
            "report": dg.MetadataValue.path(store.uri(f"{prefix}/report.md")),
        },
    )
