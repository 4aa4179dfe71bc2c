"""region_report: class areas, a preview and a short summary of one model version's predictions.

Areas and shares count only what lies inside the region's footprint (edge tiles overhang it),
measured on the ground (the ellipsoid of the region's CRS, not projected metres), and leave no-data
pixels out. Beside the model's class shares stands a spectral-index reference
(geo.indices, thresholds stated in the report), and where the region's labels hold polygons
held out from training, the model's IoU on them.
"""

import base64

import dagster as dg

from geo_assets.assets.common import catalogue, digest, each_partition, labels_key, materialised_in_run, output, tag_run
from geo_assets.assets.placement import op_tags
from geo_assets.assets.predictions import choose_imagery
from geo_assets.config import DEFAULT_MODEL, ReportConfig
from geo_assets.geo import indices
from geo_assets.geo.footprint import tally
from geo_assets.geo.landcover import CLASSES
from geo_assets.geo.margins import default_margin
from geo_assets.geo.preview import class_colours, side_by_side_png, true_colour
from geo_assets.geo.store import ObjectNotFoundError
from geo_assets.map.links import map_url
from geo_assets.ml import registry
from geo_assets.ml.metrics import scores
from geo_assets.partitions import region_date_partitions
from resources import leases
from resources.gate import ModelGate
from resources.storage import KEYED_BY_MODEL_VERSION, StorageResource, dims_path, model_manifest_key

CODE_VERSION = "3"  # 2: footprint-only areas, index reference, held-out IoU; 3: ground areas, not res²


def _which_predictions(in_run: dict | None, config: ReportConfig, store, min_miou: float) -> tuple[str, str]:
    if in_run is not None:
        model, version = in_run["model"], in_run["version"]
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
    # Not IO-manager inputs: which predictions (model version, imagery variant, margin) is resolved below.
    deps=["predictions", "imagery_tiles"],
    metadata={KEYED_BY_MODEL_VERSION: True},
    backfill_policy=dg.BackfillPolicy.single_run(),  # the same policy as predictions, so both share a backfill's runs
)
def region_report(
    context: dg.AssetExecutionContext,
    config: ReportConfig,
    storage: StorageResource,
    gate: dg.ResourceParam[ModelGate],
) -> dg.Output[dict]:
    """Area per class in km², imagery beside prediction as a PNG, and a markdown summary."""
    predicted = materialised_in_run(context, "predictions")
    return each_partition(
        context, lambda region, date, _: _region_report(context, config, storage, gate, predicted, region, date)
    )


def _stored_predictions(
    store, model: str, version: str, region: str, date: str, config: ReportConfig, min_miou: float
) -> str:
    """The key of the version's predictions to report, when this run did not predict: those of the
    variant and margin asked for; of several, those predictions would make by default."""
    partition = dims_path({"region": region, "date": date})
    folder = f"manifests/predictions/{model}/{version}/{partition}/"
    keys = [k for k in store.list(folder.rstrip("/")) if k.startswith(folder)]
    if not keys and store.exists(f"{folder.rstrip('/')}.json"):
        raise FileNotFoundError(
            f"the predictions of model {model} version {version} for {date}|{region} were stored before outputs were "
            "keyed by imagery variant and margin: materialise predictions again to report them"
        )
    found = {k: store.read_json(k) for k in keys}
    found = {k: p for k, p in found.items() if (config.margin is None or p["margin"] == config.margin)}
    fits = {k: p for k, p in found.items() if _imagery_fits(store, p, config)}
    if len(fits) > 1:  # as predictions would choose: the model's imagery variant, at its default margin
        record = registry.resolve_version(store, model, version, min_miou)
        key, imagery = choose_imagery(store, region, date, record["bands"], None, config.tile_size, config.source)
        margin = default_margin(imagery["tile_size"]) if config.margin is None else config.margin
        fits = {k: p for k, p in fits.items() if p["imagery"] == key and p["margin"] == margin}
    asked = ", ".join(
        f"{f} {getattr(config, f)}" for f in ("margin", "tile_size", "source") if getattr(config, f) is not None
    )
    what = f"predictions of model {model} version {version} for {date}|{region}{' with ' + asked if asked else ''}"
    if not fits:
        raise FileNotFoundError(
            f"no {what}: materialise predictions with config {{model: {model}, version: {version}}} first"
        )
    if len(fits) > 1:
        raise ValueError(
            f"{len(fits)} stored {what} fit ({', '.join(sorted(fits))}): choose one with region_report "
            "config margin, tile_size or source"
        )
    return next(iter(fits))


def _imagery_fits(store, predictions: dict, config: ReportConfig) -> bool:
    if config.tile_size is None and config.source is None:
        return True
    imagery = store.read_json(predictions["imagery"])
    return config.tile_size in (None, imagery["tile_size"]) and config.source in (None, imagery["source"])


def _region_report(
    context, config: ReportConfig, storage, gate, predicted: dict, region: str, date: str
) -> dg.Output[dict]:
    store = storage.store()
    in_run = predicted.get(f"{date}|{region}")
    model, version = _which_predictions(in_run, config, store, gate.min_miou)
    if in_run is not None:  # the predictions this run made: their variant and margin
        key = model_manifest_key(
            "predictions",
            model,
            version,
            dims_path({"region": region, "date": date}),
            in_run["variant"],
            in_run["margin_px"],
        )
    else:
        key = _stored_predictions(store, model, version, region, date, config, gate.min_miou)
    predictions = store.read_json(key)
    try:  # the very imagery these predictions were made from
        imagery_tiles = store.read_json(predictions["imagery"])
    except ObjectNotFoundError:
        raise FileNotFoundError(
            f"the imagery of {key} is gone ({predictions['imagery']}): materialise it and predict again"
        ) from None
    if digest(imagery_tiles) != predictions["imagery_version"]:
        raise ValueError(
            f"imagery_tiles {predictions['imagery']} changed after {key} was predicted from it: predict again, then report"
        )
    tag_run(context, region=region, date=date, source=predictions["source"], model=model, model_version=version)
    bbox = catalogue(store).get(region).bbox
    held_out, unscored = _held_out_tiles(store, imagery_tiles)
    if unscored:
        context.log.warning(unscored)
    counted = _tally(store, imagery_tiles, predictions, bbox, held_out)  # ground areas in m²
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
        holdout = {
            "miou": result["miou"],
            "per_class": {c: v for c, v in result["per_class"].items() if v["support"]},
            "pixels": int(counted.holdout.sum()),
        }
    with store.env():
        rgb = true_colour(
            [(store.path(t["path"]), t["bounds"]) for t in imagery_tiles["tiles"]], imagery_tiles["bands"]
        )
        classes = class_colours(store.path(predictions["mosaic"]), rgb.shape[:2])
    png = side_by_side_png(rgb, classes)
    prefix = f"reports/{model}/{version}/{region}/{date}/{predictions['variant']}/margin-{predictions['margin']}px"
    # The files are published under a path that does not name the predictions' data: an orphaned step
    # (its run marked failed) must not replace those of the report another run has published since.
    leases.check_held(context, store, dims_path({"region": region, "date": date}))
    store.write_bytes(f"{prefix}/preview.png", png)
    summary = _summary(
        region, date, model, version, predictions, imagery_tiles, areas, shares, reference, holdout, nodata_km2
    )
    if unscored:
        summary += f"\n{unscored[0].upper()}{unscored[1:]}.\n"
    store.write_bytes(f"{prefix}/report.md", summary.encode())
    image = f"![imagery and prediction](data:image/png;base64,{base64.b64encode(png).decode()})"
    manifest = {
        "region": region,
        "date": date,
        "model": model,
        "version": version,
        "predictions": key,
        "variant": predictions["variant"],
        "margin": predictions["margin"],  # with model and version: the key
        "predictions_digest": digest(predictions),
        "areas_km2": areas,
        "nodata_km2": nodata_km2,
        "shares": shares,
        "index_reference": reference,
        **({"holdout": holdout} if holdout else {}),
        **({"holdout_unscored": unscored} if unscored else {}),
        "preview": f"{prefix}/preview.png",
        "report": f"{prefix}/report.md",
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
            "map": dg.MetadataValue.url(map_url(region, date, model, version)),
        },
    )


def _held_out_tiles(store, imagery: dict) -> tuple[dict, str | None]:
    """Tile key -> held-out label tile of the region's labels, where they are cut like `imagery`. Labels cut
    otherwise (one labels manifest a region: the last cut replaced it) are never mixed in: then none, and
    why, where they hold held-out polygons."""
    try:
        labels = store.read_json(labels_key(imagery["region"]))
    except ObjectNotFoundError:  # a region without labels: no held-out score
        return {}, None
    holdout = {t["key"]: t["holdout_path"] for t in labels["tiles"] if "holdout_path" in t}
    if (
        labels.get("origin", [0.0, 0.0]) == imagery.get("origin", [0.0, 0.0])
        and labels["tile_size"] == imagery["tile_size"]
    ):
        return holdout, None
    if not holdout:
        return {}, None
    return {}, (
        f"held-out polygons not scored: the labels of {imagery['region']} are now cut at {labels['tile_size']} px "
        f"from {labels.get('source', '?')} (origin {labels.get('origin', [0.0, 0.0])}), these predictions' imagery at "
        f"{imagery['tile_size']} px (origin {imagery.get('origin', [0.0, 0.0])}): materialise labels[{imagery['region']}] "
        f"at {imagery['tile_size']} px to score them"
    )


def _tally(store, imagery: dict, predictions: dict, bbox, holdout: dict):
    """Read tile by tile: predictions, imagery and the held-out labels of the same grid cell."""
    by_key = {t["key"]: t for t in imagery["tiles"]}
    with store.env():
        tiles = [
            {
                "bounds": by_key[p["key"]]["bounds"],
                "prediction": store.path(p["path"]),
                "imagery": store.path(by_key[p["key"]]["path"]),
                "holdout": store.path(holdout[p["key"]]) if p["key"] in holdout else None,
            }
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
        per_class = "\n".join(
            f"| {c} | {s['iou']:.3f} | {s['support']} |"
            for c, s in holdout["per_class"].items()
            if s["iou"] is not None
        )
        text += (
            f"\nHeld-out polygons (never trained on): mIoU {holdout['miou'] or 0:.3f} over {holdout['pixels']} labelled pixels.\n\n"
            f"| class | IoU | pixels |\n|---|---|---|\n{per_class}\n"
        )
    return text
