"""region_report: class areas, a preview and a short summary of one model version's predictions.

Areas and shares count only what lies inside the region's footprint (edge tiles overhang it),
measured on the ground (the ellipsoid of the region's CRS, not projected metres), and leave no-data
pixels out. Beside the model's class shares stands a spectral-index reference
(geo.indices, thresholds stated in the report), and where the region's labels hold polygons
held out from training, the model's IoU on them.
"""


import base64

import dagster as dg

from geo_assets.assets.common import catalogue, digest, each_partition, labels_key, output, tag_run
from geo_assets.assets.placement import op_tags
from geo_assets.config import DEFAULT_MODEL, ReportConfig
from geo_assets.geo import indices
from geo_assets.geo.footprint import tally
from geo_assets.geo.landcover import CLASSES
from geo_assets.geo.preview import class_colours, side_by_side_png, true_colour
from geo_assets.geo.store import ObjectNotFoundError
from geo_assets.ml import registry
from geo_assets.ml.metrics import scores
from geo_assets.partitions import region_date_partitions
from resources.gate import ModelGate
from resources.storage import KEYED_BY_MODEL_VERSION, StorageResource, dims_path, model_manifest_key

CODE_VERSION = "3"  # 2: footprint-only areas, index reference, held-out IoU; 3: ground areas, not res²


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
    op_tags=op_tags("region_report"),
    # Not an IO-manager input: which predictions to read depends on the model version, resolved below.
    deps=["predictions"],
    metadata={KEYED_BY_MODEL_VERSION: True},
    backfill_policy=dg.BackfillPolicy.single_run(),  # the same policy as predictions, so both share a backfill's runs
)
def region_report(
    context: dg.AssetExecutionContext,
    config: ReportConfig,
    storage: StorageResource,
    gate: dg.ResourceParam[ModelGate],
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
    bbox = catalogue(store).get(region).bbox
    counted = _tally(store, imagery_tiles, predictions, bbox)  # ground areas in m²
    areas = {c: round(float(m2) / 1e6, 4) for c, m2 in zip(CLASSES, counted.classes)}
    nodata_km2 = round(counted.nodata / 1e6, 4)
    shares = _shares(dict(zip(CLASSES, counted.classes)))
    reference = {
        "rules": indices.describe(imagery_tiles["bands"]),
        "shares": _shares(dict(zip(indices.REFERENCE_CLASSES, counted.reference))),
    }
    holdout = None
    if counted.holdout is not None:
        result = scores(counted.holdout, list(CLASSES))
        holdout = {"miou": result["miou"], "per_class": {c: v for c, v in result["per_class"].items() if v["support"]},
                   "pixels": int(counted.holdout.sum())}
    with store.env():
        rgb = true_colour([(store.path(t["path"]), t["bounds"]) for t in imagery_tiles["tiles"]], imagery_tiles["bands"])
        classes = class_colours(store.path(predictions["mosaic"]), rgb.shape[:2])
    png = side_by_side_png(rgb, classes)
    prefix = f"reports/{model}/{version}/{region}/{date}"
    store.write_bytes(f"{prefix}/preview.png", png)
    summary = _summary(region, date, model, version, predictions, imagery_tiles, areas, shares, reference, holdout, nodata_km2)
    store.write_bytes(f"{prefix}/report.md", summary.encode())
    image = f"![imagery and prediction](data:image/png;base64,{base64.b64encode(png).decode()})"
    manifest = {
        "region": region, "date": date, "model": model, "version": version, "predictions": key,
        "predictions_digest": digest(predictions),
        "areas_km2": areas, "nodata_km2": nodata_km2, "shares": shares,
        "index_reference": reference, **({"holdout": holdout} if holdout else {}),
        "preview": f"{prefix}/preview.png", "report": f"{prefix}/report.md",
    }
    return output(
        manifest,
        {
            "model": model,
            "version": version,
            "areas_km2": dg.MetadataValue.json(areas),
            "index_reference": dg.MetadataValue.json(reference),
            **({"holdout_miou": holdout["miou"]} if holdout else {}),
            "preview": dg.MetadataValue.md(summary + "\n" + image),
            "report": dg.MetadataValue.path(store.uri(f"{prefix}/report.md")),
        },
    )


def _tally(store, imagery: dict, predictions: dict, bbox):
    """Read tile by tile: predictions, imagery and any held-out labels of the same grid cell."""
    holdout = {}
    try:
        labels = store.read_json(labels_key(imagery["region"]))
        if labels.get("origin", [0.0, 0.0]) == imagery.get("origin", [0.0, 0.0]) and labels["tile_size"] == imagery["tile_size"]:
            holdout = {t["key"]: t["holdout_path"] for t in labels["tiles"] if "holdout_path" in t}
    except ObjectNotFoundError:  # a region without labels: no held-out score
        pass
    by_key = {t["key"]: t for t in imagery["tiles"]}
    with store.env():
        tiles = [
            {"bounds": by_key[p["key"]]["bounds"], "prediction": store.path(p["path"]),
             "imagery": store.path(by_key[p["key"]]["path"]),
             "holdout": store.path(holdout[p["key"]]) if p["key"] in holdout else None}
            for p in predictions["tiles"]
        ]
        return tally(tiles, bbox, imagery["crs"], imagery["bands"], len(CLASSES))


def _shares(counts: dict) -> dict:
    total = float(sum(counts.values()))
    return {k: round(float(v) / total, 4) if total else None for k, v in counts.items()}


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def _summary(region, date, model, version, predictions, imagery, areas, shares, reference, holdout, nodata_km2) -> str:
    rows = "\n".join(
        f"| {c} | {a:.3f} | {_pct(shares[c])} | {_pct(reference['shares'].get(c))} |" for c, a in areas.items()
    )
    other = reference["shares"].get("other")
    text = (
        f"# {region}, {date}\n\n"
        f"Model `{model}` version `{version}` on `{predictions['source']}` imagery, "
        f"{len(predictions['tiles'])} tiles, {imagery['crs']} at {predictions['resolution']:g} m. "
        f"Areas on the ground (ellipsoidal, not projected) inside the region's footprint; no data: {nodata_km2:.3f} km², in no share.\n\n"
        f"| class | area (km²) | share | index reference |\n|---|---|---|---|\n{rows}\n"
        f"| other (index reference only) | | | {_pct(other)} |\n\n"
        f"Index reference, first rule that holds: {reference['rules']}.\n"
    )
    if holdout:
        per_class = "\n".join(f"| {c} | {s['iou']:.3f} | {s['support']} |" for c, s in holdout["per_class"].items()
                               if s["iou"] is not None)
        text += (
            f"\nHeld-out polygons (never trained on): mIoU {holdout['miou'] or 0:.3f} over {holdout['pixels']} labelled pixels.\n\n"
            f"| class | IoU | pixels |\n|---|---|---|\n{per_class}\n"
        )
    return text
